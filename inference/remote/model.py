"""A model on a MONAI Label server, run like a local one: ``RemoteModel`` follows the engine's ``Model`` protocol.

What travels: the volume's voxels and its geometry only, as a NIfTI image (the
array in the closest RAS axis order, as the local bundle adapter gives it to a
network, ``inference.bundles.spatial.ras_view``; header description and names
empty). No DICOM header, name, ID, date or UID is sent.

What comes back is checked before it is used: a NIfTI image of exactly the
uploaded grid (shape, and affine within ``AFFINE_TOL_MM``), whose voxel values
are whole non-negative numbers; then it is put back on the source grid by the
same function that places a local bundle's output (``spatial.to_input_grid``).
Label names come from the server's ``/info/``.

What MONAI Label's bundle app does on its side (0.8.5, ``Restored``): it maps the
network's output back to the upload by resizing (nearest) and does not undo a
reorientation. Because the upload is already in RAS order, a bundle that orients
to RAS and keeps the image's spacing gives labels equal to a local run voxel for
voxel (the tests check it); one that resamples can differ at label boundaries
(a resize is not our affine nearest-neighbour lookup); one that orients to
anything but RAS comes back flipped on a grid that looks right, which no check
of the answer can see: serve such bundles only after comparing them with a local run.

``RemoteModels`` is the engine's door to the configured nodes: it resolves
``remote:NODE/MODEL`` ids (nothing is contacted until a run) and lists the
nodes' models (one ``GET /info/`` per node).
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.cancel import CancelToken
from inference.contract import DeviceChoice, ModelOutput, RunContext
from inference.labels import Label, LabelTable, default_color
from inference.remote.client import MonaiLabelClient, RemoteModelInfo, ServerInfo
from inference.remote.errors import RemoteConfigError, RemoteError, RemoteModelUnknownError, RemoteResultError
from inference.remote.nodes import RemoteNode, model_id, split_model_id
from inference.volume import Volume

logger = logging.getLogger(__name__)

AFFINE_TOL_MM = 1e-3
"""How far the returned grid's affine may differ from the uploaded one (NIfTI stores it as float32)."""
_VALUE_TOL = 1e-3


def encode_nifti(volume: Volume) -> tuple[bytes, npt.NDArray[np.float64], tuple[int, int, int]]:
    """The volume as ``.nii.gz`` bytes (voxels and affine only), with the RAS affine and shape it was sent with."""
    import nibabel as nib

    from inference.bundles.spatial import ras_view

    data, affine = ras_view(volume)
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    header = image.header
    header["descrip"] = b""
    header["aux_file"] = b""
    header["db_name"] = b""
    header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    raw = image.to_bytes()
    shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    return gzip.compress(raw, compresslevel=1), np.asarray(affine, dtype=np.float64), shape


def decode_labels(
    payload: bytes, affine: npt.NDArray[np.float64], shape: tuple[int, int, int], where: str
) -> npt.NDArray[np.integer[Any]]:
    """The returned label map as an integer array on the uploaded grid; ``RemoteResultError`` when it is not one."""
    import nibabel as nib

    try:
        raw = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
        image = nib.Nifti1Image.from_stream(io.BytesIO(raw))
        data = np.asarray(image.dataobj)
        got_affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many kinds on a damaged file
        raise RemoteResultError(f"{where}: the answer is not a NIfTI label map ({type(exc).__name__}: {exc})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.shape != shape:
        raise RemoteResultError(f"{where}: the label map has shape {data.shape}, not the uploaded image's {shape}")
    if not np.allclose(got_affine, affine, rtol=0.0, atol=AFFINE_TOL_MM):
        worst = float(np.max(np.abs(got_affine - affine)))
        raise RemoteResultError(
            f"{where}: the label map lies on another grid than the uploaded image "
            f"(affines differ by up to {worst:.4g} mm)"
        )
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise RemoteResultError(f"{where}: the label map holds NaN or infinite values")
        rounded = np.rint(data)
        if data.size and float(np.max(np.abs(data - rounded))) > _VALUE_TOL:
            raise RemoteResultError(f"{where}: the label map holds fractional values (probabilities, not labels)")
        data = rounded
    elif data.dtype.kind not in "iub":
        raise RemoteResultError(f"{where}: the label map has data type {data.dtype}, not numbers")
    low = float(data.min()) if data.size else 0.0
    high = float(data.max()) if data.size else 0.0
    if low < 0 or high > 65535:
        raise RemoteResultError(f"{where}: label values run from {low:g} to {high:g}, outside 0-65535")
    return data.astype(np.uint8 if high <= 255 else np.uint16)


def label_table(info: RemoteModelInfo, present: Sequence[int]) -> tuple[LabelTable, list[int]]:
    """Labels named by the server's ``/info/``, plus "class N" for values it did not name (returned second)."""
    unnamed = [v for v in present if v > 0 and v not in info.labels]
    names = {**info.labels, **{v: f"class {v}" for v in unnamed}}
    return LabelTable(tuple(Label(v, n, default_color(v)) for v, n in sorted(names.items()))), unnamed


class RemoteModel:
    """``MODEL`` on node ``NODE`` as an engine model; ``run`` talks to the server on the calling (worker) thread."""

    def __init__(self, node: RemoteNode, name: str) -> None:
        self.node = node
        self.name = name
        self.id = model_id(node.name, name)
        self.title = f"{name} ({node.name})"
        self.version = "remote"
        self.modalities: tuple[str, ...] = ("*",)
        self.device_choice = DeviceChoice(f"remote:{node.name}", f"MONAI Label node {node.describe()}")

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        """Upload, wait (progress: elapsed and state; cancel drops the request), check and place the label map."""
        client = MonaiLabelClient(self.node)
        where = f"remote model '{self.id}'"
        ctx.stage(0.01, f"asking {self.node.name} for {self.name}")

        def asking(state: str, elapsed: float) -> None:
            busy = " (busy with another request?)" if state == "waiting for the server" and elapsed >= 2 else ""
            ctx.stage(0.02, f"{self.node.name}: {state}{busy}, {elapsed:.0f} s")

        # a MONAI Label server answers /info/ only between inferences: it may be busy with another user's
        server = client.info(ctx.cancel, timeout_s=self.node.timeout_s, on_state=asking)
        info = server.models.get(self.name)
        if info is None:
            offered = ", ".join(sorted(server.models)) or "none"
            raise RemoteModelUnknownError(
                f"remote node {self.node.describe()} has no model '{self.name}' (it offers: {offered})"
            )
        self.version = info.version or server.version or "remote"
        ctx.stage(0.03, "writing the image (voxels and geometry only)")
        payload, affine, shape = encode_nifti(volume)
        ctx.stage(0.05, f"sending {len(payload) / 1e6:.1f} MB to {self.node.name}")

        def on_state(state: str, elapsed: float) -> None:
            ctx.stage(0.1, f"{self.node.name}: {state}, {elapsed:.0f} s")

        answer = client.infer(self.name, payload, cancel=ctx.cancel, on_state=on_state)
        ctx.stage(0.85, "checking the returned label map")
        labels = decode_labels(answer, affine, shape, where)
        ctx.stage(0.9, "placing the labels on the input grid")
        from inference.bundles.spatial import to_input_grid

        labelmap = to_input_grid(labels, affine, volume)
        table, unnamed = label_table(info, [int(v) for v in np.unique(labels)])
        if unnamed:
            ctx.note(f"{where} returned label values its server does not name: {', '.join(map(str, unnamed))}")
        ctx.note(
            f"segmented on MONAI Label node {self.node.describe()} (model '{self.name}'); only the image "
            "voxels and geometry were sent"
        )
        return ModelOutput(labelmap, table)


@dataclass(frozen=True)
class RemoteListing:
    """One node's models, or why they could not be listed."""

    node: RemoteNode
    models: tuple[RemoteModelInfo, ...] = ()
    server: ServerInfo | None = None
    problem: str | None = None


class RemoteModels:
    """The configured nodes: resolves ``remote:NODE/MODEL`` ids and lists what the nodes offer."""

    def __init__(self, nodes: Sequence[RemoteNode]) -> None:
        self.nodes = {n.name: n for n in nodes}

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def get(self, model_id_: str) -> RemoteModel:
        """The model for ``remote:NODE/MODEL`` (nothing contacted yet); ``RemoteConfigError`` for an unknown node."""
        node_name, name = split_model_id(model_id_)
        node = self.nodes.get(node_name)
        if node is None:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise RemoteConfigError(
                f"remote node '{node_name}' is not configured (settings inference.remote; configured: {known})"
            )
        return RemoteModel(node, name)

    def list(self, cancel: CancelToken | None = None, timeout_s: float | None = None) -> list[RemoteListing]:
        """Each node's models from ``GET /info/`` (one try, short time-out); an unreachable node says why."""
        out = []
        for node in self.nodes.values():
            quick = RemoteNode(
                node.name,
                node.url,
                node.token_env,
                node.timeout_s,
                node.connect_timeout_s,
                retries=0,
                backoff_s=0.0,
                ca_file=node.ca_file,
            )
            try:
                server = MonaiLabelClient(quick).info(cancel, timeout_s)
            except RemoteError as exc:
                logger.warning("remote node '%s': models not listed: %s", node.name, exc)
                out.append(RemoteListing(node, problem=str(exc)))
                continue
            out.append(RemoteListing(node, tuple(server.models[k] for k in sorted(server.models)), server))
        return out
