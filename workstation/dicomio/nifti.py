"""NIfTI export of volumes, laid out as dcm2niix does, for research use and cross-checks.

The NIfTI voxel axes are (column, flipped row, slice) and the affine is RAS, so a
series converted here and by dcm2niix gives the same array and affine, and
segmentations made on either overlay without resampling.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError
from inference.volume import LPS_TO_RAS, Volume

logger = logging.getLogger(__name__)


class _Sink(Protocol):
    """What the voxels are written to: a plain file or a gzip stream."""

    def write(self, data: bytes | memoryview, /) -> int: ...


def nifti_affine(volume: Volume) -> npt.NDArray[np.float64]:
    """RAS affine for the voxel layout written by ``nifti_array``."""
    a = volume.affine
    rows = volume.shape[1]
    lps = np.eye(4)
    lps[:3, 0] = a[:3, 2]
    lps[:3, 1] = -a[:3, 1]
    lps[:3, 2] = a[:3, 0]
    lps[:3, 3] = a[:3, 3] + (rows - 1) * a[:3, 1]
    return np.asarray(LPS_TO_RAS @ lps, dtype=np.float64)


def nifti_array(volume: Volume) -> npt.NDArray[Any]:
    """The volume's voxels as (column, flipped row, slice)."""
    return np.asarray(volume.array.transpose(2, 1, 0)[:, ::-1, :])


def volume_from_nifti_layout(data: npt.NDArray[Any], ras_affine: npt.NDArray[np.float64]) -> tuple[
        npt.NDArray[Any], npt.NDArray[np.float64]]:
    """Inverse of the layout: (slice, row, column) array and LPS affine from NIfTI data."""
    arr = np.asarray(data)[:, ::-1, :].transpose(2, 1, 0)
    lps = np.linalg.inv(LPS_TO_RAS) @ np.asarray(ras_affine, dtype=np.float64)
    cols = data.shape[1]
    out = np.eye(4)
    out[:3, 0] = lps[:3, 2]
    out[:3, 1] = -lps[:3, 1]
    out[:3, 2] = lps[:3, 0]
    out[:3, 3] = lps[:3, 3] + (cols - 1) * lps[:3, 1]
    return np.ascontiguousarray(arr), out


#: NIfTI-1 single-file layout: a 348-byte header, a 4-byte extension flag (no extensions), then the voxels.
_VOX_OFFSET = 352
#: Slices copied and written per chunk: large enough for few system calls, small enough to stay in cache.
_SLAB_BYTES = 8 << 20
#: gzip level for ``.nii.gz``: 1, as nibabel and dcm2niix use, since higher levels cost far more time than they save.
_GZIP_LEVEL = 1


def _header(first: Volume, n_volumes: int) -> bytes:
    """The 352 bytes before the voxels: header (dtype, shape, RAS qform/sform, mm units) and extension flag.

    Built with nibabel's ``Nifti1Header`` so the qform quaternion and pixdim are computed exactly as
    nibabel's own writer does (the files stay byte-identical to the earlier ``nib.save`` output).
    """
    import nibabel as nib

    slices, rows, cols = first.shape
    shape = (cols, rows, slices) if n_volumes == 1 else (cols, rows, slices, n_volumes)
    affine = nifti_affine(first)
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(first.array.dtype.newbyteorder("="))
    hdr.set_data_shape(shape)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr["vox_offset"] = _VOX_OFFSET
    # scl_slope 1, scl_inter 0 (the header defaults): the stored values are the real values
    raw = bytes(hdr.binaryblock)
    if len(raw) != 348:  # pragma: no cover - nibabel guarantees the NIfTI-1 size
        raise GeometryError(f"unexpected NIfTI header size {len(raw)}")
    return raw + b"\0\0\0\0"


def _write_voxels(fp: _Sink, array: npt.NDArray[Any]) -> None:
    """Stream one ``[slice, row, column]`` volume in NIfTI order: column fastest, rows flipped, then slices.

    A C-order array already has the column axis fastest, so nothing is transposed: each slab of
    slices is copied once with its rows reversed (and made little endian) into a reused buffer and
    written, so memory does not grow with the volume and the copy stays cache-friendly.
    """
    slices, rows, cols = array.shape
    little = array.dtype.newbyteorder("<")
    per_slice = max(1, rows * cols * array.dtype.itemsize)
    step = max(1, min(slices, _SLAB_BYTES // per_slice))
    buf = np.empty((step, rows, cols), dtype=little)
    for k in range(0, slices, step):
        n = min(step, slices - k)
        np.copyto(buf[:n], array[k:k + n, ::-1, :])
        fp.write(buf[:n].data.cast("B"))


def write_nifti(volumes: Volume | Sequence[Volume], path: str | Path) -> Path:
    """Write one volume, or several of the same grid as a 4-D image, to ``path`` (``.nii`` or ``.nii.gz``).

    The voxels are streamed slab by slab straight from the volume arrays (no transposed copy, no
    nibabel image in memory), which makes a 300-slice CT several times faster to write; the file is
    the one ``nib.save`` wrote for the same data (tests compare them byte for byte).
    """
    vols = [volumes] if isinstance(volumes, Volume) else list(volumes)
    if not vols:
        raise GeometryError("nothing to write")
    first = vols[0]
    for v in vols[1:]:
        if v.shape != first.shape or not np.allclose(v.affine, first.affine, atol=1e-4):
            raise GeometryError("volumes of a multi-volume series differ in grid; cannot write one 4-D NIfTI")
        if v.array.dtype != first.array.dtype:
            raise GeometryError("volumes of a multi-volume series differ in data type; cannot write one 4-D NIfTI")
    header = _header(first, len(vols))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(out.open("wb"))
        fp: _Sink = raw
        if out.name.endswith(".gz"):
            # mtime=0 and no file name: the same volume always gives the same bytes
            fp = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   compresslevel=_GZIP_LEVEL, mtime=0))
        fp.write(header)
        for v in vols:
            _write_voxels(fp, v.array)
    shape = (first.shape[2], first.shape[1], first.shape[0]) + ((len(vols),) if len(vols) > 1 else ())
    logger.info("wrote NIfTI %s shape=%s", out.name, shape)
    return out
