"""NIfTI export of volumes, laid out as dcm2niix does, for research use and cross-checks.

The NIfTI voxel axes are (column, flipped row, slice) and the affine is RAS, so a
series converted here and by dcm2niix gives the same array and affine, and
segmentations made on either overlay without resampling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError
from inference.volume import LPS_TO_RAS, Volume

logger = logging.getLogger(__name__)


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


def write_nifti(volumes: Volume | Sequence[Volume], path: str | Path) -> Path:
    """Write one volume, or several of the same grid as a 4-D image, to ``path``."""
    import nibabel as nib

    vols = [volumes] if isinstance(volumes, Volume) else list(volumes)
    if not vols:
        raise GeometryError("nothing to write")
    first = vols[0]
    for v in vols[1:]:
        if v.shape != first.shape or not np.allclose(v.affine, first.affine, atol=1e-4):
            raise GeometryError("volumes of a multi-volume series differ in grid; cannot write one 4-D NIfTI")
    data = nifti_array(first) if len(vols) == 1 else np.stack([nifti_array(v) for v in vols], axis=-1)
    affine = nifti_affine(first)
    img = nib.Nifti1Image(np.ascontiguousarray(data) if data.dtype.kind != "f" else data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(out))
    logger.info("wrote NIfTI %s shape=%s", out.name, data.shape)
    return out
