"""Where a finding is: the payload a viewer needs to navigate to it (no Qt here).

A structure's finding already carries its bounding box; a lesion carries only
its centroid and size, so its box is found on demand from the label map in a
small window around the centroid (one connected component, a few thousand voxels).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.findings import Lesion, StructureFinding
from inference.labels import readable_name

logger = logging.getLogger(__name__)

Index3 = tuple[int, int, int]


@dataclass(frozen=True)
class FindingTarget:
    """What a viewer needs to show one finding.

    ``voxel`` is the centroid rounded to a voxel index ``(slice, row, column)`` on
    the analysed series' grid; the bounding box is inclusive (``bbox_max_index``
    is the last voxel inside). ``label`` is the label-map value to highlight; for
    a lesion, ``lesion_number`` tells it apart from the other components of that label.
    """

    kind: Literal["structure", "lesion"]
    name: str
    label: int
    voxel: Index3
    centroid_index: tuple[float, float, float]
    centroid_lps: tuple[float, float, float]
    bbox_min_index: Index3
    bbox_max_index: Index3
    lesion_number: int | None = None


def display_name(name: str) -> str:
    """``lung_right`` -> ``Right lung``: the engine's ``readable_name``, capitalised for a panel."""
    return readable_name(name, capitalize=True)


def _voxel(centroid: tuple[float, float, float], shape: tuple[int, ...]) -> Index3:
    return (min(max(round(centroid[0]), 0), shape[0] - 1), min(max(round(centroid[1]), 0), shape[1] - 1),
            min(max(round(centroid[2]), 0), shape[2] - 1))


def structure_target(finding: StructureFinding, shape: tuple[int, ...]) -> FindingTarget:
    """The target of a labelled structure (box from the finding itself)."""
    return FindingTarget("structure", display_name(finding.name), finding.label,
                         _voxel(finding.centroid_index, shape), finding.centroid_index, finding.centroid_lps,
                         finding.bbox_min_index, finding.bbox_max_index)


def lesion_target(lesion: Lesion, labelmap: npt.NDArray[np.integer[Any]],
                  spacing: tuple[float, float, float]) -> FindingTarget:
    """The target of one lesion; its box is the connected component nearest its centroid."""
    from scipy import ndimage

    shape = labelmap.shape
    centre = _voxel(lesion.centroid_index, shape)
    radius_mm = max(lesion.long_axis_3d_mm, lesion.long_axis_mm, 1.0) / 2
    lo = [max(c - math.ceil(radius_mm / s) - 2, 0) for c, s in zip(centre, spacing, strict=True)]
    hi = [min(c + math.ceil(radius_mm / s) + 3, n) for c, s, n in zip(centre, spacing, shape, strict=True)]
    window = labelmap[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == lesion.label
    name = f"{display_name(lesion.name)} {lesion.number}"
    box_min, box_max = centre, centre
    comps, n = ndimage.label(window, structure=np.ones((3, 3, 3), dtype=bool))
    if n:
        local = tuple(c - o for c, o in zip(centre, lo, strict=True))
        k = int(comps[local])
        if k == 0:  # the centroid of a curved lesion can fall outside it: take the nearest voxel's component
            pts = np.argwhere(comps > 0)
            k = int(comps[tuple(pts[np.argmin(((pts - np.asarray(local)) ** 2).sum(axis=1))])])
        pts = np.argwhere(comps == k) + np.asarray(lo)
        mn, mx = pts.min(axis=0), pts.max(axis=0)
        box_min = (int(mn[0]), int(mn[1]), int(mn[2]))
        box_max = (int(mx[0]), int(mx[1]), int(mx[2]))
    else:
        logger.warning("lesion %d of label %d not found near its centroid", lesion.number, lesion.label)
    return FindingTarget("lesion", name, lesion.label, centre, lesion.centroid_index, lesion.centroid_lps,
                         box_min, box_max, lesion.number)
