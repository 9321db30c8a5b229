"""Planes in patient space: what a volume is stacked from.

A classic file is one plane; an enhanced multi-frame object is one plane per
frame; a Siemens mosaic is one plane per tile. Each ``ImagePlane`` carries its own
position, orientation, spacing and rescale, so stacking logic is the same for all.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workstation.dicomio.headers import InstanceHeader

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePlane:
    """One 2-D image plane and where it sits in LPS space."""

    header: InstanceHeader
    frame: int
    tile: int
    ipp: npt.NDArray[np.float64]
    iop: npt.NDArray[np.float64]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slope: float
    intercept: float
    temporal: tuple[float, ...]

    @property
    def row_direction(self) -> npt.NDArray[np.float64]:
        """LPS direction of increasing column index."""
        return self.iop[:3]

    @property
    def column_direction(self) -> npt.NDArray[np.float64]:
        """LPS direction of increasing row index."""
        return self.iop[3:]

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        """Unit normal of the plane (row direction x column direction)."""
        n = np.cross(self.iop[:3], self.iop[3:])
        return np.asarray(n / np.linalg.norm(n), dtype=np.float64)


def _temporal(h: InstanceHeader, temporal: float | None = None, echo: float | None = None) -> tuple[float, ...]:
    def v(x: float | None) -> float:
        return math.nan if x is None else float(x)

    return (
        v(temporal if temporal is not None else h.temporal_position),
        v(h.trigger_time),
        v(echo if echo is not None else (h.echo_number if h.echo_number is not None else h.echo_time)),
    )


def mosaic_grid(h: InstanceHeader) -> int:
    """Tiles per mosaic side (ceil of the square root of the image count)."""
    return math.ceil(math.sqrt(h.mosaic_count))


def planes_of(h: InstanceHeader) -> list[ImagePlane]:
    """The planes of one object; empty when it lacks geometry."""
    if h.frames:
        return _frame_planes(h)
    if h.ipp is None or h.iop is None or h.pixel_spacing is None:
        return []
    ipp = np.asarray(h.ipp, dtype=np.float64)
    iop = _unit_iop(h.iop)
    if iop is None:
        return []
    if h.mosaic_count > 1:
        return _mosaic_planes(h, ipp, iop)
    return [
        ImagePlane(h, 0, -1, ipp, iop, h.pixel_spacing, h.rows, h.columns, h.slope, h.intercept, _temporal(h))
    ]


def _unit_iop(iop: tuple[float, ...]) -> npt.NDArray[np.float64] | None:
    arr = np.asarray(iop, dtype=np.float64)
    r, c = arr[:3], arr[3:]
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 1e-6 or nc < 1e-6 or abs(np.dot(r, c) / (nr * nc)) > 1e-2:
        return None
    return np.concatenate([r / nr, c / nc])


def _frame_planes(h: InstanceHeader) -> list[ImagePlane]:
    out: list[ImagePlane] = []
    for index, fg in enumerate(h.frames):
        ipp_t = fg.ipp or h.ipp
        iop_t = fg.iop or h.iop
        spacing = fg.pixel_spacing or h.pixel_spacing
        if ipp_t is None or iop_t is None or spacing is None:
            return []
        iop = _unit_iop(iop_t)
        if iop is None:
            return []
        out.append(
            ImagePlane(
                h,
                index,
                -1,
                np.asarray(ipp_t, dtype=np.float64),
                iop,
                (float(spacing[0]), float(spacing[1])),
                h.rows,
                h.columns,
                fg.slope,
                fg.intercept,
                _temporal(h, fg.temporal, fg.echo),
            )
        )
    return out


def _mosaic_planes(h: InstanceHeader, ipp: npt.NDArray[np.float64], iop: npt.NDArray[np.float64]) -> list[ImagePlane]:
    """Siemens mosaic: ImagePositionPatient names the corner of the whole mosaic."""
    grid = mosaic_grid(h)
    rows, cols = h.rows // grid, h.columns // grid
    dr, dc = h.pixel_spacing or (1.0, 1.0)
    row_dir, col_dir = iop[:3], iop[3:]
    first = ipp + row_dir * dc * (h.columns - cols) / 2.0 + col_dir * dr * (h.rows - rows) / 2.0
    normal = np.asarray(h.mosaic_normal) if h.mosaic_normal is not None else np.cross(row_dir, col_dir)
    normal = normal / np.linalg.norm(normal)
    step = h.spacing_between_slices or h.slice_thickness or 1.0
    return [
        ImagePlane(h, 0, k, first + k * step * normal, iop, (dr, dc), rows, cols, h.slope, h.intercept, _temporal(h))
        for k in range(h.mosaic_count)
    ]
