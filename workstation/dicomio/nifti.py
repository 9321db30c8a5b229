"""NIfTI export of volumes, laid out as dcm2niix does, for research use and cross-checks.

The NIfTI voxel axes are (column, flipped row, slice) and the affine is RAS, so a
series converted here and by dcm2niix gives the same array and affine, and
segmentations made on either overlay without resampling.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
from collections.abc import Callable, Iterator, Sequence
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
    return _ras_affine(volume.affine, volume.shape[1])


def _ras_affine(a: npt.NDArray[np.float64], rows: int) -> npt.NDArray[np.float64]:
    """``nifti_affine`` of a grid with LPS affine ``a`` and ``rows`` rows."""
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


#: The NIfTI-1 header, field by field (nifti1.h); 348 bytes, little endian.
_HEADER_DTYPE = np.dtype([
    ("sizeof_hdr", "<i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "<i4"),
    ("session_error", "<i2"), ("regular", "S1"), ("dim_info", "u1"), ("dim", "<i2", (8,)),
    ("intent_p1", "<f4"), ("intent_p2", "<f4"), ("intent_p3", "<f4"), ("intent_code", "<i2"),
    ("datatype", "<i2"), ("bitpix", "<i2"), ("slice_start", "<i2"), ("pixdim", "<f4", (8,)),
    ("vox_offset", "<f4"), ("scl_slope", "<f4"), ("scl_inter", "<f4"), ("slice_end", "<i2"),
    ("slice_code", "u1"), ("xyzt_units", "u1"), ("cal_max", "<f4"), ("cal_min", "<f4"),
    ("slice_duration", "<f4"), ("toffset", "<f4"), ("glmax", "<i4"), ("glmin", "<i4"),
    ("descrip", "S80"), ("aux_file", "S24"), ("qform_code", "<i2"), ("sform_code", "<i2"),
    ("quatern_b", "<f4"), ("quatern_c", "<f4"), ("quatern_d", "<f4"),
    ("qoffset_x", "<f4"), ("qoffset_y", "<f4"), ("qoffset_z", "<f4"),
    ("srow_x", "<f4", (4,)), ("srow_y", "<f4", (4,)), ("srow_z", "<f4", (4,)),
    ("intent_name", "S16"), ("magic", "S4"),
])
#: NIfTI-1 datatype codes (nifti1.h ``NIFTI_TYPE_*``) of the array types a volume may have.
_DATATYPES = {"u1": 2, "i2": 4, "i4": 8, "f4": 16, "f8": 64, "i1": 256, "u2": 512, "u4": 768, "i8": 1024,
              "u8": 1280}
_UNITS_MM_SEC = 2 | 8  # NIFTI_UNITS_MM | NIFTI_UNITS_SEC


def _quaternion(affine: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float64]]:
    """(quaternion b, c, d; qfac; zooms) of an affine's rotation, as the NIfTI qform stores it.

    The rotation is made orthogonal by polar decomposition and turned into a quaternion by the
    eigenvector method (Bar-Itzhack), the computation nibabel's ``set_qform`` does, so the header
    matches the one nibabel writes (tests compare them byte for byte).
    """
    rzs = affine[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    r = rzs / zooms
    qfac = 1.0
    if np.linalg.det(r) <= 0:
        qfac = -1.0
        r[:, -1] *= -1
    u, _, vt = np.linalg.svd(r)
    m = u @ vt
    xx, yx, zx, xy, yy, zy, xz, yz, zz = m.flat
    k = np.array([
        [xx - yy - zz, 0, 0, 0],
        [yx + xy, yy - xx - zz, 0, 0],
        [zx + xz, zy + yz, zz - xx - yy, 0],
        [yz - zy, zx - xz, xy - yx, xx + yy + zz],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    if q[0] < 0:
        q = -q
    return q[1:], qfac, zooms


def _header(first: Volume, n_volumes: int) -> bytes:
    """The 352 bytes before the voxels: header (dtype, shape, RAS qform/sform, mm units) and extension flag.

    Written field by field rather than with nibabel (whose import costs ~30-100 ms of ``convert``'s
    start-up); the bytes are those nibabel's ``Nifti1Header`` gives for the same image.
    """
    return _header_for(first.shape, first.array.dtype, first.affine, n_volumes)


def _header_for(grid: tuple[int, ...], dtype: np.dtype[Any], lps_affine: npt.NDArray[np.float64],
                n_volumes: int) -> bytes:
    """``_header`` of volumes of ``grid`` (slices, rows, columns), ``dtype`` and LPS affine."""
    slices, rows, cols = grid
    shape = (cols, rows, slices) if n_volumes == 1 else (cols, rows, slices, n_volumes)
    affine = _ras_affine(lps_affine, rows)
    code = _DATATYPES.get(f"{dtype.kind}{dtype.itemsize}")
    if code is None:
        raise GeometryError(f"cannot write {dtype} voxels as NIfTI")
    hdr = np.zeros((), dtype=_HEADER_DTYPE)
    hdr["sizeof_hdr"] = 348
    hdr["dim"] = [len(shape), *shape] + [1] * (7 - len(shape))
    hdr["datatype"] = code
    hdr["bitpix"] = dtype.itemsize * 8
    quat, qfac, zooms = _quaternion(affine)
    hdr["pixdim"] = [qfac, *zooms, 1.0, 1.0, 1.0, 1.0]
    hdr["vox_offset"] = _VOX_OFFSET
    hdr["scl_slope"] = 1.0  # scl_slope 1, scl_inter 0: the stored values are the real values
    hdr["xyzt_units"] = _UNITS_MM_SEC
    hdr["qform_code"] = hdr["sform_code"] = 1  # scanner coordinates
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = quat
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = affine[:3, 3]
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = affine[0], affine[1], affine[2]
    hdr["magic"] = b"n+1"
    return hdr.tobytes() + b"\0\0\0\0"


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
    out = Path(path)
    with _sink(out) as fp:
        fp.write(_header(first, len(vols)))
        for v in vols:
            _write_voxels(fp, v.array)
    shape = (first.shape[2], first.shape[1], first.shape[0]) + ((len(vols),) if len(vols) > 1 else ())
    logger.info("wrote NIfTI %s shape=%s", out.name, shape)
    return out


@contextlib.contextmanager
def _sink(out: Path) -> Iterator[_Sink]:
    """The output file (its folder made if needed), through gzip for ``.nii.gz``.

    Written under a temporary name in the same folder and renamed when complete: a write that
    fails midway (a slice unreadable by then, a full disk) leaves no file that looks whole by
    its name, and an earlier file of that name stays as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(part.open("wb"))
            fp: _Sink = raw
            if out.name.endswith(".gz"):
                # mtime=0 and no file name: the same volume always gives the same bytes
                fp = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                       compresslevel=_GZIP_LEVEL, mtime=0))
            yield fp
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)


#: Fills ``slab[j]`` with slice ``start + j`` of the volume, in the volume's own orientation.
FillSlab = Callable[[npt.NDArray[Any], int], None]


def write_nifti_slices(path: str | Path, grid: tuple[int, int, int], dtype: np.dtype[Any],
                       lps_affine: npt.NDArray[np.float64], fill: FillSlab) -> Path:
    """Write one volume that is never held whole: ``fill`` produces it a slab of slices at a time.

    The file is the one ``write_nifti`` writes for a volume of the same ``grid`` (slices, rows,
    columns), ``dtype``, LPS affine and voxels: ``fill`` gets a view of the slab buffer with its
    rows already reversed, so it writes slices as they are and they land in NIfTI order.
    """
    slices, rows, cols = grid
    little = np.dtype(dtype).newbyteorder("<")
    step = max(1, min(slices, _SLAB_BYTES // max(1, rows * cols * little.itemsize)))
    buf = np.empty((step, rows, cols), dtype=little)
    out = Path(path)
    with _sink(out) as fp:
        fp.write(_header_for(grid, np.dtype(dtype), lps_affine, 1))
        for k in range(0, slices, step):
            n = min(step, slices - k)
            fill(buf[:n, ::-1, :], k)
            fp.write(buf[:n].data.cast("B"))
    logger.info("wrote NIfTI %s shape=%s (streamed)", out.name, (cols, rows, slices))
    return out
