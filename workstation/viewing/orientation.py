"""Patient-space view planes: which array axis is shown where, and flipped how.

Radiologists read images in a fixed convention whatever the acquisition plane:

- axial: patient's right on the screen's left, anterior up (viewed from the feet);
- coronal: patient's right on the screen's left, superior up (viewed from the front);
- sagittal: anterior on the screen's left, superior up (viewed from the patient's left).

A volume's direction cosines say where each array axis points in LPS. Each
patient axis gets the array axis closest to it (the permutation with the largest
total alignment), and the 2-D slice is transposed and flipped (numpy views, no
copies, no resampling) so that the convention above holds for axial, coronal,
sagittal and mildly oblique acquisitions alike. Qt-free, so it is tested alone.

Image coordinates: a displayed slice is an array ``[row, column]`` (row down the
screen). Continuous image coordinates ``(x, y)`` put pixel ``(c, r)`` on the
square ``[c, c+1) x [r, r+1)``, so its centre is ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.volume import PATIENT_LETTERS
from workstation.viewing.slab import SlabMode, project

logger = logging.getLogger(__name__)

ViewPlane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[ViewPlane, ...] = ("axial", "coronal", "sagittal")

# Patient axes of LPS: 0 = x (towards patient Left), 1 = y (Posterior), 2 = z (Superior).
_LETTERS = PATIENT_LETTERS

# plane -> (normal patient axis, (axis, sign) pointing screen-right, (axis, sign) pointing screen-down,
#           (axis, sign) of the "next slice" direction: head to feet, front to back, right to left).
_CONVENTION: dict[ViewPlane, tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (0, 1), (1, 1), (2, -1)),
    "coronal": (1, (0, 1), (2, -1), (1, 1)),
    "sagittal": (0, (1, 1), (2, -1), (0, 1)),
}


def patient_axes(direction: npt.NDArray[np.float64]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For each patient axis (x, y, z): the closest array axis and the sign of their alignment.

    ``direction[:, a]`` is the unit LPS direction of array axis ``a``. The
    assignment is the permutation maximising the summed absolute cosines, so two
    patient axes never share an array axis, even for oblique acquisitions.
    """
    d = np.abs(np.asarray(direction, dtype=np.float64))
    best = max(itertools.permutations(range(3)), key=lambda p: sum(d[axis, p[axis]] for axis in range(3)))
    signs = tuple(1 if direction[axis, best[axis]] >= 0 else -1 for axis in range(3))
    return (best[0], best[1], best[2]), (signs[0], signs[1], signs[2])


@dataclass(frozen=True)
class PlaneGeometry:
    """How one view plane maps onto the volume's array.

    ``normal`` is the array axis across the view (one slice per index), ``h_axis``
    the array axis running left-to-right on screen and ``v_axis`` top-to-bottom;
    ``h_flip``/``v_flip`` say the array index runs against the screen direction.
    ``next_step`` (+1/-1) is the array step of "next slice" (head to feet, front
    to back, right to left). Letters name the patient directions at the edges.
    """

    plane: ViewPlane
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    normal: int
    h_axis: int
    v_axis: int
    h_flip: bool
    v_flip: bool
    next_step: int
    normal_patient_axis: int
    left: str
    right: str
    top: str
    bottom: str

    @property
    def n_slices(self) -> int:
        """Slices across this view."""
        return self.shape[self.normal]

    @property
    def width(self) -> int:
        """Columns of the displayed slice."""
        return self.shape[self.h_axis]

    @property
    def height(self) -> int:
        """Rows of the displayed slice."""
        return self.shape[self.v_axis]

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """Displayed pixel size ``(width, height)`` in mm: the in-plane spacings of this view."""
        return self.spacing[self.h_axis], self.spacing[self.v_axis]

    def extract(self, array: npt.NDArray[Any], slice_index: int) -> npt.NDArray[Any]:
        """The 2-D slice ``[row, column]`` in display orientation (a strided view, no copy)."""
        index: list[slice | int] = [slice(None)] * 3
        index[self.normal] = int(slice_index)
        return self._orient(array[tuple(index)])

    def extract_slab(self, array: npt.NDArray[Any], start: int, stop: int, mode: SlabMode,
                     slices: npt.NDArray[np.intp] | None = None) -> npt.NDArray[Any]:
        """The slab ``start:stop`` along this view's normal, reduced by ``mode``, in display orientation.

        ``slices`` (array indices along the normal) replaces the range when only
        some of its slices hold data (a series still streaming in).
        """
        index: list[slice | npt.NDArray[np.intp]] = [slice(None)] * 3
        index[self.normal] = slice(int(start), int(stop)) if slices is None else slices
        return self._orient(project(array[tuple(index)], self.normal, mode))

    def _orient(self, sl: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A 2-D cut (remaining array axes in order) as ``[row, column]`` on screen."""
        if self.v_axis > self.h_axis:
            sl = sl.T
        return sl[:: -1 if self.v_flip else 1, :: -1 if self.h_flip else 1]

    def line_mask(self, loaded: npt.NDArray[np.bool_], slice_index: int) -> tuple[
            bool, npt.NDArray[np.bool_] | None, npt.NDArray[np.bool_] | None]:
        """Which parts of a slice are loaded, given a per-slice mask along array axis 0.

        Returns ``(slice_loaded, row_mask, column_mask)``: the slice as a whole
        (when axis 0 is this view's normal), or a mask over displayed rows or columns.
        """
        if self.normal == 0:
            return bool(loaded[int(slice_index)]), None, None
        if self.v_axis == 0:
            return True, loaded[::-1] if self.v_flip else loaded, None
        return True, None, loaded[::-1] if self.h_flip else loaded

    def slice_of(self, index: Sequence[float] | npt.NDArray[Any]) -> int:
        """The slice of this view holding voxel ``index`` (slice, row, column)."""
        return round(float(index[self.normal]))

    def display_number(self, slice_index: int) -> int:
        """1-based image number in reading order (head to feet, front to back, right to left)."""
        return slice_index + 1 if self.next_step > 0 else self.n_slices - slice_index

    def index_to_image(self, index: Sequence[float] | npt.NDArray[Any]) -> tuple[float, float]:
        """Continuous image ``(x, y)`` of the centre of voxel ``index``."""
        h, v = float(index[self.h_axis]), float(index[self.v_axis])
        x = (self.width - 1 - h) if self.h_flip else h
        y = (self.height - 1 - v) if self.v_flip else v
        return x + 0.5, y + 0.5

    def image_to_index(self, x: float, y: float, slice_index: int) -> npt.NDArray[np.float64]:
        """Continuous voxel index ``(slice, row, column)`` of image point ``(x, y)`` on a slice."""
        out = np.zeros(3, dtype=np.float64)
        out[self.normal] = slice_index
        out[self.h_axis] = (self.width - x - 0.5) if self.h_flip else (x - 0.5)
        out[self.v_axis] = (self.height - y - 0.5) if self.v_flip else (y - 0.5)
        return out

    def index_edges(self, index_min: tuple[int, int, int], index_max: tuple[int, int, int]
                    ) -> tuple[float, float, float, float]:
        """Image rectangle ``(x0, y0, x1, y1)`` covering the voxels of an inclusive index box."""
        xa, ya = self.index_to_image(index_min)
        xb, yb = self.index_to_image(index_max)
        return min(xa, xb) - 0.5, min(ya, yb) - 0.5, max(xa, xb) + 0.5, max(ya, yb) + 0.5


def plane_geometries(affine: npt.NDArray[np.float64], shape: tuple[int, int, int]) -> dict[ViewPlane, PlaneGeometry]:
    """The three view planes of a volume with this affine and shape."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing_arr = np.linalg.norm(m, axis=0)
    spacing = (float(spacing_arr[0]), float(spacing_arr[1]), float(spacing_arr[2]))
    axes, signs = patient_axes(m / spacing_arr)
    out: dict[ViewPlane, PlaneGeometry] = {}
    for plane in PLANES:
        normal_p, (hp, hs), (vp, vs), (np_, ns) = _CONVENTION[plane]
        out[plane] = PlaneGeometry(
            plane=plane, shape=shape, spacing=spacing,
            normal=axes[normal_p], h_axis=axes[hp], v_axis=axes[vp],
            h_flip=signs[hp] != hs, v_flip=signs[vp] != vs,
            next_step=1 if signs[np_] == ns else -1,
            normal_patient_axis=normal_p,
            left=_LETTERS[(hp, -hs)], right=_LETTERS[(hp, hs)],
            top=_LETTERS[(vp, -vs)], bottom=_LETTERS[(vp, vs)],
        )
    obliquity = float(np.degrees(np.arccos(min(1.0, min(abs(m[p, axes[p]]) / spacing_arr[axes[p]]
                                                         for p in range(3))))))
    if obliquity > 1.0:
        logger.info("volume is oblique by up to %.1f degrees; views use the closest patient axes", obliquity)
    return out


def position_text(lps: npt.NDArray[np.float64], patient_axis: int) -> str:
    """Slice position along a patient axis with its direction letter, e.g. ``S 12.5 mm``."""
    value = float(lps[patient_axis])
    letter = _LETTERS[(patient_axis, 1 if value >= 0 else -1)]
    return f"{letter} {abs(value):.1f} mm"
