"""Write a plain stack of uncompressed slices as NIfTI without ever holding the volume.

Loading a 300-slice CT whole (``load_series``) allocates 157 MB next to the 157 MB of the file's
page cache; where fresh memory is costly (a virtual machine that hands free pages back to its
host) that alone doubled the time of ``workstation convert``. A stack qualifies when it needs
nothing that takes the whole volume: one volume, uniform spacing, no in-plane shift, and every
slice native pixel data read straight from its file (``pixels.direct_readable``) with one stored
type. Its slices are read twice, first for their extremes, which choose the output type exactly as
``load_series`` does (``plan_rescale``), then a slab at a time into the file (``write_nifti_slices``),
so the memory used is a few slices. The file is byte for byte the one ``write_nifti`` writes for
the loaded volume (tests compare them); anything else is loaded whole, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workstation.dicomio.nifti import write_nifti_slices
from workstation.dicomio.pixels import direct_readable, read_direct, stored_dtype
from workstation.dicomio.stack import StackGeometry, StackPlan
from workstation.dicomio.volume_builder import Rescale, plan_rescale, rescale_slice

logger = logging.getLogger(__name__)


def streamable(plan: StackPlan) -> bool:
    """Whether ``stream_nifti`` can write this plan's volume (else load it whole and ``write_nifti`` it)."""
    if len(plan.volumes) != 1:
        return False
    g = plan.volumes[0]
    if g.needs_shift or not (g.uniform or len(g.planes) == 1):
        return False
    if not all(direct_readable(p.header) and p.tile < 0 and p.frame == 0 for p in g.planes):
        return False
    first = g.planes[0]
    return all(p.rows == first.rows and p.columns == first.columns for p in g.planes)


def _extremes(g: StackGeometry, dtype: np.dtype[Any]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each slice's smallest and largest stored value (what ``_rescale`` computes on the loaded stack)."""
    first = g.planes[0]
    stored = np.empty((first.rows, first.columns), dtype=dtype)
    mins = np.empty(len(g.planes), dtype=np.float64)
    maxs = np.empty(len(g.planes), dtype=np.float64)
    for k, plane in enumerate(g.planes):
        read_direct(plane.header, stored)
        mins[k], maxs[k] = stored.min(), stored.max()
    return mins, maxs


def _fits(rs: Rescale) -> bool:
    """Slice by slice gives the loaded stack's values: in ``view`` mode each intercept must fit the type."""
    if rs.mode != "view":
        return True
    info = np.iinfo(rs.dtype)
    return bool(info.min <= rs.intercepts.min() and rs.intercepts.max() <= info.max)


@dataclass
class StreamedNifti:
    """A stack ready to be written slice by slice: its geometry, stored type and rescale."""

    geometry: StackGeometry
    stored: np.dtype[Any]
    rescale: Rescale

    @property
    def grid(self) -> tuple[int, int, int]:
        """(slices, rows, columns) of the volume written."""
        first = self.geometry.planes[0]
        return len(self.geometry.planes), first.rows, first.columns

    def write(self, path: str | Path) -> Path:
        """Write the volume to ``path`` (``.nii`` or ``.nii.gz``), a slab of slices at a time."""
        planes, rs = self.geometry.planes, self.rescale
        stored = np.empty(self.grid[1:], dtype=self.stored)

        def fill(slab: npt.NDArray[Any], start: int) -> None:
            for j in range(slab.shape[0]):
                read_direct(planes[start + j].header, stored)
                rescale_slice(rs, start + j, stored, slab[j])

        return write_nifti_slices(path, self.grid, rs.dtype, self.geometry.affine(), fill)


def prepare_stream(plan: StackPlan) -> StreamedNifti | None:
    """The plan's one volume, ready to stream (its slices' extremes read); ``None`` when it must be loaded whole."""
    if not streamable(plan):
        return None
    g = plan.volumes[0]
    dtypes = {stored_dtype(p.header) for p in g.planes}
    if len(dtypes) != 1:
        return None  # load_series stacks mixed stored types as int32
    dtype = dtypes.pop()
    mins, maxs = _extremes(g, dtype)
    slopes = np.array([p.slope for p in g.planes], dtype=np.float64)
    intercepts = np.array([p.intercept for p in g.planes], dtype=np.float64)
    rs = plan_rescale(dtype, mins, maxs, slopes, intercepts)
    return StreamedNifti(g, dtype, rs) if _fits(rs) else None
