"""Binary morphology on canonical ``[z, y, x]`` masks, vectorised over the whole stack.

"2-D" operations act slice by slice (in-plane connectivity, in-plane
structuring elements) but run as one scipy call on the 3-D array. Dilations
and erosions use separable square/box windows (scipy's O(n) running min/max),
so their cost does not grow with the radius: a Chebyshev rather than a
Euclidean ball, which is accurate enough for the anatomical margins used here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]
Int3 = npt.NDArray[np.int32]

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[1] = ndi.generate_binary_structure(2, 1)
"""4-connectivity inside each axial slice, none across slices."""
FACE = ndi.generate_binary_structure(3, 1)
"""6-connectivity in 3-D."""
FULL = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity in 3-D."""


def label(mask: Bool3, structure: npt.NDArray[np.bool_] = FACE) -> tuple[Int3, int]:
    """Connected components (int32 labels, count)."""
    lab, n = ndi.label(mask, structure=structure)
    return np.asarray(lab, dtype=np.int32), int(n)


def dilate(mask: Bool3, radius: tuple[int, int, int]) -> Bool3:
    """Box dilation by ``radius`` voxels along (z, y, x)."""
    size = tuple(2 * r + 1 for r in radius)
    if size == (1, 1, 1):
        return mask.copy()
    return np.asarray(ndi.maximum_filter(mask.view(np.uint8), size=size), dtype=bool)


def erode(mask: Bool3, radius: tuple[int, int, int]) -> Bool3:
    """Box erosion by ``radius`` voxels along (z, y, x) (outside the array counts as set)."""
    size = tuple(2 * r + 1 for r in radius)
    if size == (1, 1, 1):
        return mask.copy()
    return np.asarray(ndi.minimum_filter(mask.view(np.uint8), size=size, mode="nearest"), dtype=bool)


def erode_disc_2d(mask: Bool3, steps: int) -> Bool3:
    """In-plane erosion by ``steps`` pixels with an octagon (alternating square and cross steps).

    The octagon is within 8 % of a Euclidean disc, so depths measured this way are
    nearly isotropic, unlike a square's.
    """
    out = mask
    cross = IN_PLANE
    for k in range(steps):
        if k % 2 == 0:
            out = np.asarray(ndi.minimum_filter(out.view(np.uint8), size=(1, 3, 3), mode="nearest"), dtype=bool)
        else:
            out = np.asarray(ndi.binary_erosion(out, structure=cross, border_value=1), dtype=bool)
    return out


def opening(mask: Bool3, radius: tuple[int, int, int]) -> Bool3:
    """Erosion then dilation: removes parts thinner than the box."""
    return dilate(erode(mask, radius), radius) & mask


def closing(mask: Bool3, radius: tuple[int, int, int]) -> Bool3:
    """Dilation then erosion: bridges gaps narrower than the box."""
    return erode(dilate(mask, radius), radius) | mask


def _border_labels(lab: Int3, n: int, in_plane: bool) -> npt.NDArray[np.bool_]:
    border = np.zeros(n + 1, dtype=bool)
    faces: list[npt.NDArray[Any]] = [lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]]
    if not in_plane:
        faces += [lab[0], lab[-1]]
    for face in faces:
        border[face] = True  # no np.unique: it sorts holding the GIL (a GUI frame late), indexing does not
    border[0] = False
    return border


def fill_holes_2d(mask: Bool3) -> Bool3:
    """Fill, in every axial slice, the background regions that do not reach the slice border."""
    lab, n = label(~mask, IN_PLANE)
    return np.asarray(~_border_labels(lab, n, in_plane=True)[lab], dtype=bool)


def fill_holes_3d(mask: Bool3) -> Bool3:
    """Fill background regions (6-connected) that do not reach the array border."""
    lab, n = label(~mask, FACE)
    return np.asarray(~_border_labels(lab, n, in_plane=False)[lab], dtype=bool)


def largest_per_slice(mask: Bool3) -> Bool3:
    """In every axial slice, only the largest 4-connected component of ``mask``.

    scipy numbers components in raster order, so each slice owns a contiguous
    range of labels; the per-slice winner is found with one ``reduceat``.
    """
    lab, n = label(mask, IN_PLANE)
    if n == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    last = lab.reshape(mask.shape[0], -1).max(axis=1)
    keep = np.zeros(n + 1, dtype=bool)
    previous = 0
    for z in np.nonzero(last)[0]:  # a loop over slices only; the labels of slice z are previous+1..last[z]
        ids = np.arange(previous + 1, int(last[z]) + 1)
        keep[ids[int(np.argmax(sizes[ids]))]] = True
        previous = int(last[z])
    return np.asarray(keep[lab], dtype=bool)
