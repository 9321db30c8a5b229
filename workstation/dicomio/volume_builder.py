"""Turn the instances of one series into volumes in real units on a regular LPS grid.

Pixels are read once into an array of the stored type; rescale is applied slice
by slice in place when the result fits the same width (CT: stored uint16 ->
int16 HU), so peak memory stays near the volume's own size. Tilted stacks and
non-uniform spacing are resampled, and the volume's notes say so. Every volume
records the images it was made from (``source_images``): where each acquired
plane lies along the normal and which InstanceNumber (and frame) it is, so a
resampled grid slice still maps to the nearest real image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError, NotAVolumeError
from inference.volume import SourceImage, SourceImages, Volume
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.interpolation import INTERPOLATION_KEY, interpolation_summary
from workstation.dicomio.pixels import read_planes, stored_dtype
from workstation.dicomio.qa import SeriesQA
from workstation.dicomio.slices import ImagePlane, planes_of
from workstation.dicomio.sopclasses import ObjectKind, object_kind
from workstation.dicomio.stack import StackGeometry, StackPlan, plan_stack

logger = logging.getLogger(__name__)

NonUniform = Literal["resample", "refuse"]
_INT_CANDIDATES: list[type[np.integer[Any]]] = [np.uint8, np.int8, np.int16, np.uint16, np.int32]


@dataclass
class SeriesVolumes:
    """The volumes made from one series (several for 4-D/multi-echo data) and its QA."""

    volumes: list[Volume]
    plan: StackPlan

    @property
    def qa(self) -> SeriesQA:
        """The series-level QA report."""
        return self.plan.qa


def image_planes(headers: Sequence[InstanceHeader]) -> list[ImagePlane]:
    """All planes of the image objects among ``headers``."""
    planes: list[ImagePlane] = []
    for h in headers:
        if object_kind(h.sop_class_uid, h.has_pixels) is ObjectKind.IMAGE and h.has_pixels:
            planes.extend(planes_of(h))
    return planes


def plan_series(headers: Sequence[InstanceHeader], label: str = "series") -> StackPlan:
    """Geometry and QA of a series without reading pixels."""
    return plan_stack(image_planes(headers), label)


def load_series(
    headers: Sequence[InstanceHeader],
    *,
    nonuniform: NonUniform = "resample",
    label: str = "series",
    workers: int = 0,
) -> SeriesVolumes:
    """Read a series into volumes; raise ``NotAVolumeError``/``GeometryError`` with reasons."""
    plan = checked_plan(headers, nonuniform, label)
    volumes = [_build(g, workers, label) for g in plan.volumes]
    return SeriesVolumes(volumes, plan)


def checked_plan(headers: Sequence[InstanceHeader], nonuniform: NonUniform = "resample",
                 label: str = "series") -> StackPlan:
    """``plan_series``, refusing non-uniform spacing when ``nonuniform`` says so (``GeometryError``)."""
    plan = plan_series(headers, label)
    geom0 = plan.volumes[0]
    if not geom0.uniform and nonuniform == "refuse":
        item = plan.qa.get("spacing")
        raise GeometryError(f"{label}: {item.detail if item else 'non-uniform slice spacing'}; refused")
    return plan


def _output_dtype(lo: float, hi: float, integral: bool) -> np.dtype[Any]:
    if integral:
        for cand in _INT_CANDIDATES:
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                # Prefer signed 16-bit over unsigned 8-bit ranges: viewers and models expect it.
                return np.dtype(np.int16) if cand in (np.uint8, np.int8) else np.dtype(cand)
    return np.dtype(np.float32)


@dataclass(frozen=True)
class Rescale:
    """How a stack's stored values become real values: the output type and how to get there.

    Chosen once for the whole stack from each slice's stored extremes (``plan_rescale``), then
    applied to the stack at once (``_rescale``) or slice by slice (the streamed NIfTI export):
    ``same`` keeps the stored values, ``view`` reinterprets them in place as the output type and
    adds the intercept (CT: stored uint16 -> int16 HU), ``general`` computes in int64/float64.
    """

    dtype: np.dtype[Any]
    mode: Literal["same", "view", "general"]
    integral: bool
    slopes: npt.NDArray[np.float64]
    intercepts: npt.NDArray[np.float64]


def plan_rescale(stored: np.dtype[Any], mins: npt.NDArray[np.float64], maxs: npt.NDArray[np.float64],
                 slopes: npt.NDArray[np.float64], intercepts: npt.NDArray[np.float64]) -> Rescale:
    """The output type (the smallest that holds every real value) and how to compute it."""
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    identity = bool(np.all(slopes == 1) and np.all(intercepts == 0))
    ends = np.stack([mins * slopes + intercepts, maxs * slopes + intercepts])
    out_dtype = _output_dtype(float(ends.min()), float(ends.max()), integral)
    mode: Literal["same", "view", "general"] = "general"
    if identity and out_dtype == stored:
        mode = "same"
    elif integral and np.all(slopes == 1) and out_dtype.itemsize == stored.itemsize:
        info = np.iinfo(out_dtype)
        if info.min <= mins.min() and maxs.max() <= info.max:
            mode = "view"  # stored values fit the output type: reinterpreting is exact
    return Rescale(out_dtype, mode, integral, slopes, intercepts)


def _wrapped(intercepts: npt.NDArray[np.float64] | float, dtype: np.dtype[Any]) -> Any:
    """Integer intercepts as ``dtype`` values, modulo its range.

    ``view`` mode adds them in the output type's own arithmetic: the result is exact whenever it
    fits the type (it does, by the choice of type), even when the intercept itself does not (a
    negative intercept into unsigned output, which numpy refuses to convert directly).
    """
    return np.asarray(intercepts, dtype=np.float64).astype(np.int64).astype(dtype)


def rescale_slice(rs: Rescale, k: int, stored: npt.NDArray[Any], out: npt.NDArray[Any]) -> None:
    """Write the real values of slice ``k`` (its ``stored`` values) into ``out`` (may be ``stored`` itself)."""
    if rs.mode == "same":
        if out is not stored:
            np.copyto(out, stored)
        return
    if rs.mode == "view":
        np.add(stored.view(rs.dtype), _wrapped(rs.intercepts[k], rs.dtype), out=out)
        return
    work = (np.int64 if rs.integral else np.float64)
    tmp = stored.astype(work)
    if rs.slopes[k] != 1:
        tmp *= int(rs.slopes[k]) if rs.integral else rs.slopes[k]
    if rs.intercepts[k] != 0:
        tmp += int(rs.intercepts[k]) if rs.integral else rs.intercepts[k]
    out[...] = tmp


def _rescale(buf: npt.NDArray[Any], slopes: npt.NDArray[np.float64],
             intercepts: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """Apply slope/intercept into the smallest dtype that holds the result.

    The common CT case (slope 1, integer intercept, stored and real values both
    fitting 16 bits) is done in place on a reinterpreted view of the stored array:
    one vectorised pass and no second copy of the volume.
    """
    rs = plan_rescale(buf.dtype, buf.min(axis=(1, 2)).astype(np.float64), buf.max(axis=(1, 2)).astype(np.float64),
                      slopes, intercepts)
    if rs.mode == "same":
        return buf
    if rs.mode == "view":
        out = buf.view(rs.dtype)
        if np.all(intercepts == intercepts[0]):
            out += _wrapped(intercepts[0], rs.dtype)
        else:
            out += _wrapped(intercepts, rs.dtype)[:, None, None]
        return out
    out = buf.view(rs.dtype) if rs.dtype.itemsize == buf.dtype.itemsize else np.empty(buf.shape, dtype=rs.dtype)
    for k in range(buf.shape[0]):
        rescale_slice(rs, k, buf[k], out[k])
    return out


def _shift_inplane(arr: npt.NDArray[Any], g: StackGeometry) -> npt.NDArray[Any]:
    """Move each slice in-plane onto the reference grid (tilted stacks).

    An output pixel that overlaps the slice's own pixels at all (its source
    coordinate is less than one pixel beyond the outer pixel centres) takes the
    nearest edge value; only output pixels the slice never covered get the fill
    value (the volume's minimum). A constant fill right at the edge would put a
    false dark line inside the scanned field along every shifted border.
    """
    from scipy import ndimage

    dr, dc = g.planes[0].pixel_spacing
    fill = float(arr.min())
    rows, cols = arr.shape[1], arr.shape[2]
    for k in range(arr.shape[0]):
        delta = (g.offsets[k] - g.reference_offset) / np.array([dr, dc])
        if np.abs(delta).max() <= 1e-3:
            continue
        moved = ndimage.shift(arr[k].astype(np.float32), delta, order=1, mode="nearest")
        src_r = np.arange(rows) - delta[0]
        src_c = np.arange(cols) - delta[1]
        moved[(src_r <= -1.0) | (src_r >= rows), :] = fill
        moved[:, (src_c <= -1.0) | (src_c >= cols)] = fill
        arr[k] = np.rint(moved) if arr.dtype.kind in "iu" else moved
    return arr


def _resample_axis(arr: npt.NDArray[Any], g: StackGeometry) -> npt.NDArray[Any]:
    target = g.positions[0] + np.arange(g.target_count) * g.spacing
    idx = np.clip(np.searchsorted(g.positions, target, side="right") - 1, 0, len(g.positions) - 2)
    lo, hi = g.positions[idx], g.positions[idx + 1]
    w = np.clip((target - lo) / (hi - lo), 0.0, 1.0)
    out = np.empty((len(target), *arr.shape[1:]), dtype=arr.dtype)
    for t in range(len(target)):
        val = arr[idx[t]].astype(np.float32) * (1 - w[t]) + arr[idx[t] + 1].astype(np.float32) * w[t]
        out[t] = np.rint(val) if arr.dtype.kind in "iu" else val
    return out


def _units(h: InstanceHeader) -> str:
    if h.modality == "CT":
        return "HU"
    if h.rescale_type and h.rescale_type.upper() not in ("US", "UNSPECIFIED"):
        return h.rescale_type
    return ""


def series_units(h: InstanceHeader) -> str:
    """Units of a series' real values: ``HU`` for CT, else RescaleType when it names one."""
    return _units(h)


def output_dtype(lo: float, hi: float, integral: bool) -> np.dtype[Any]:
    """The dtype a volume with real values in ``[lo, hi]`` is stored in (as ``load_series`` picks it)."""
    return _output_dtype(lo, hi, integral)


def volume_metadata(h: InstanceHeader, source_planes: int) -> dict[str, Any]:
    """The ``Volume.metadata`` of a volume built from ``source_planes`` planes headed by ``h``.

    Shared with the streaming loader so both loaders describe a volume the same way.
    """
    return {
        "series_description": h.series_description,
        "patient_position": h.patient_position,
        "slice_thickness": h.slice_thickness,
        "kernel": h.kernel,
        "manufacturer": h.manufacturer,
        "model": h.model,
        "contrast_agent": h.contrast_agent,
        "body_part": h.body_part,
        "window_center": h.window_center,
        "window_width": h.window_width,
        "photometric": h.photometric,
        "source_planes": source_planes,
        "study_uid": h.study_uid,  # UIDs only (the audit trail names studies by them), never patient data
        "series_uid": h.series_uid,
    }


def source_images(g: StackGeometry) -> SourceImages:
    """The acquired planes of ``g`` as ``Volume.source``: position along the normal, InstanceNumber, UID, frame.

    Shared with the streaming loader. A frame of a multi-frame object is named by
    its 1-based frame number; the tiles of a mosaic are all the mosaic's instance.
    """
    images = []
    for plane, position in zip(g.planes, g.positions, strict=True):
        h = plane.header
        multi_frame = plane.tile < 0 and (bool(h.frames) or h.number_of_frames > 1)
        images.append(SourceImage(float(position), h.instance_number, h.sop_instance_uid,
                                  plane.frame + 1 if multi_frame else None))
    normal = np.asarray(g.normal, dtype=np.float64)
    return SourceImages(g.planes[0].header.series_number, (float(normal[0]), float(normal[1]), float(normal[2])),
                        tuple(images))


def _build(g: StackGeometry, workers: int, label: str) -> Volume:
    planes = g.planes
    first = planes[0]
    h = first.header
    dtypes = {stored_dtype(p.header) for p in planes}
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.int32)
    buf = np.empty((len(planes), first.rows, first.columns), dtype=dtype)
    read_planes(planes, buf, workers)
    slopes = np.array([p.slope for p in planes], dtype=np.float64)
    intercepts = np.array([p.intercept for p in planes], dtype=np.float64)
    arr = _rescale(buf, slopes, intercepts)
    notes: list[str] = []
    if g.needs_shift:
        arr = _shift_inplane(arr, g)
        notes.append(
            f"resampled: slices were offset in-plane along the stack (tilt {g.tilt_degrees:.2f}° "
            "from ImagePositionPatient/ImageOrientationPatient); shifted onto an orthogonal grid"
        )
    if not g.uniform and len(planes) > 1:
        arr = _resample_axis(arr, g)
        notes.append(
            f"resampled: slice spacing was non-uniform ({np.diff(g.positions).min():.3f}-"
            f"{np.diff(g.positions).max():.3f} mm); interpolated to {g.spacing:.3f} mm"
        )
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise NotAVolumeError(f"{label}: no slices could be stacked")
    metadata = volume_metadata(h, len(planes))
    if (invented := interpolation_summary(g)) is not None:
        metadata[INTERPOLATION_KEY] = invented  # how many grid slices no source slice lies on
    return Volume(
        array=arr,
        affine=g.affine(),
        modality=h.modality,
        units=_units(h),
        frame_of_reference_uid=h.frame_of_reference_uid,
        notes=tuple(notes),
        metadata=metadata,
        source=source_images(g),
    )
