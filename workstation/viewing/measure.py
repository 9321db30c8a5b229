"""Measurements on a view: distance ruler (mm) and elliptical ROI statistics.

Both live on one slice of one view plane, in that view's image coordinates.
Lengths go through the volume's affine (index -> LPS mm), which equals the
in-plane spacing of the view for ordinary grids and stays right for sheared
ones. ROI statistics use the raw voxel values (HU for CT), never the windowed
display, over the pixels whose centres fall inside the ellipse; the area is
that pixel count times the view's pixel area, so it describes exactly the
pixels the statistics cover. Qt-free.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.volume import Volume
from workstation.viewing.orientation import PlaneGeometry, ViewPlane

logger = logging.getLogger(__name__)

Point = tuple[float, float]
MeasureKind = Literal["ruler", "roi"]


@dataclass(frozen=True)
class RulerMeasurement:
    """A straight distance between two image points of one slice."""

    plane: ViewPlane
    slice_index: int
    start: Point
    end: Point
    start_lps: tuple[float, float, float]
    end_lps: tuple[float, float, float]
    length_mm: float

    @property
    def kind(self) -> str:
        """``"ruler"``."""
        return "ruler"

    def text(self) -> str:
        """Label drawn next to the line."""
        return f"{self.length_mm:.1f} mm"


@dataclass(frozen=True)
class RoiMeasurement:
    """Statistics of the pixels inside an axis-aligned ellipse spanning ``corner0``-``corner1``.

    ``std`` is the population standard deviation (numpy's default, ``ddof=0``).
    """

    plane: ViewPlane
    slice_index: int
    corner0: Point
    corner1: Point
    center_lps: tuple[float, float, float]
    pixels: int
    mean: float
    std: float
    minimum: float
    maximum: float
    area_mm2: float
    units: str

    @property
    def kind(self) -> str:
        """``"roi"``."""
        return "roi"

    @property
    def area_cm2(self) -> float:
        """Area in cm²."""
        return self.area_mm2 / 100.0

    def text(self) -> str:
        """Label drawn next to the ellipse (two lines)."""
        unit = f" {self.units}" if self.units else ""
        area = f"{self.area_cm2:.2f} cm²" if self.area_mm2 >= 100.0 else f"{self.area_mm2:.1f} mm²"
        return f"Mean {self.mean:.1f}{unit}  SD {self.std:.1f}\nArea {area}  ({self.pixels} px)"


ViewMeasurement = RulerMeasurement | RoiMeasurement


def _lps(volume: Volume, geom: PlaneGeometry, slice_index: int, point: Point) -> tuple[float, float, float]:
    p = volume.index_to_lps(geom.image_to_index(point[0], point[1], slice_index))
    return float(p[0]), float(p[1]), float(p[2])


def make_ruler(volume: Volume, geom: PlaneGeometry, slice_index: int, start: Point, end: Point) -> RulerMeasurement:
    """A ruler from ``start`` to ``end`` (continuous image coordinates) on one slice."""
    a, b = _lps(volume, geom, slice_index, start), _lps(volume, geom, slice_index, end)
    return RulerMeasurement(geom.plane, slice_index, start, end, a, b, float(math.dist(a, b)))


def ellipse_mask(height: int, width: int, corner0: Point, corner1: Point) -> npt.NDArray[np.bool_]:
    """Pixels ``[row, column]`` whose centres lie inside the ellipse inscribed in the two corners."""
    cx, cy = (corner0[0] + corner1[0]) / 2.0, (corner0[1] + corner1[1]) / 2.0
    rx, ry = abs(corner1[0] - corner0[0]) / 2.0, abs(corner1[1] - corner0[1]) / 2.0
    mask = np.zeros((height, width), dtype=bool)
    if rx <= 0.0 or ry <= 0.0:
        return mask
    c0, c1 = max(0, math.floor(cx - rx)), min(width, math.ceil(cx + rx) + 1)
    r0, r1 = max(0, math.floor(cy - ry)), min(height, math.ceil(cy + ry) + 1)
    if c0 >= c1 or r0 >= r1:
        return mask
    ys = (np.arange(r0, r1, dtype=np.float64) + 0.5 - cy) / ry
    xs = (np.arange(c0, c1, dtype=np.float64) + 0.5 - cx) / rx
    mask[r0:r1, c0:c1] = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    return mask


def make_roi(volume: Volume, geom: PlaneGeometry, slice_index: int, corner0: Point, corner1: Point
             ) -> RoiMeasurement | None:
    """ROI statistics of an ellipse on one slice; ``None`` when it holds no pixel centre."""
    mask = ellipse_mask(geom.height, geom.width, corner0, corner1)
    count = int(mask.sum())
    if count == 0:
        return None
    values = np.asarray(geom.extract(volume.array, slice_index)[mask], dtype=np.float64)
    dx, dy = geom.pixel_mm
    centre = ((corner0[0] + corner1[0]) / 2.0, (corner0[1] + corner1[1]) / 2.0)
    return RoiMeasurement(
        plane=geom.plane, slice_index=slice_index, corner0=corner0, corner1=corner1,
        center_lps=_lps(volume, geom, slice_index, centre), pixels=count,
        mean=float(values.mean()), std=float(values.std()), minimum=float(values.min()),
        maximum=float(values.max()), area_mm2=count * dx * dy, units=volume.units,
    )
