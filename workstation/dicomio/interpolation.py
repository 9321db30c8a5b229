"""How much of a resampled volume is made up: grid slices that no acquired slice lies on.

A stack with non-uniform spacing (missing slices, a gap between two acquisitions)
is resampled onto a regular grid by linear interpolation between neighbouring
source slices. A grid slice within ``tolerance_mm`` of a source slice is (almost)
that slice; every other one is invented from its two neighbours. The summary
written here goes into ``Volume.metadata[INTERPOLATION_KEY]`` so the analysis
service can refuse a volume that is mostly invented, and say where the gaps are.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from workstation.dicomio.stack import POSITION_TOL_MM, StackGeometry

logger = logging.getLogger(__name__)

INTERPOLATION_KEY = "interpolation"
"""Key of the summary in ``Volume.metadata`` (absent: every slice is a source slice)."""
TOLERANCE_FRACTION = 0.1
"""A grid slice closer than this share of the grid spacing to a source slice counts as that slice
(its linear weights are at least 90 % one source slice)."""
MAX_GAPS_LISTED = 5


def interpolation_summary(g: StackGeometry) -> dict[str, Any] | None:
    """The interpolated grid slices of a non-uniform stack and the gaps they fill (None when uniform).

    Returns a JSON-ready dict: ``interpolated`` and ``total`` grid slices,
    ``source_slices``, ``tolerance_mm``, ``max_gap_mm``, the patient ``axis``
    (``x``/``y``/``z``, the one closest to the slice normal) and ``gaps``: the
    widest source intervals holding interpolated slices (``from_mm``/``to_mm``
    along that axis, ``width_mm``, ``interpolated``), in position order.
    """
    if g.uniform or len(g.planes) < 2:
        return None
    positions = g.positions
    target = positions[0] + np.arange(g.target_count) * g.spacing
    right = np.clip(np.searchsorted(positions, target), 0, len(positions) - 1)
    left = np.clip(right - 1, 0, len(positions) - 1)
    distance = np.minimum(np.abs(target - positions[left]), np.abs(target - positions[right]))
    tolerance = max(POSITION_TOL_MM, TOLERANCE_FRACTION * g.spacing)
    invented = distance > tolerance
    interval = np.clip(np.searchsorted(positions, target, side="right") - 1, 0, len(positions) - 2)
    axis = int(np.argmax(np.abs(g.normal)))
    counts = np.bincount(interval[invented], minlength=len(positions) - 1)
    widths = np.diff(positions)
    filled = [int(i) for i in np.flatnonzero(counts)]
    widest = sorted(sorted(filled, key=lambda i: -widths[i])[:MAX_GAPS_LISTED])
    gaps = [{"from_mm": round(float(g.planes[i].ipp[axis]), 2), "to_mm": round(float(g.planes[i + 1].ipp[axis]), 2),
             "width_mm": round(float(widths[i]), 3), "interpolated": int(counts[i])} for i in widest]
    summary = {
        "interpolated": int(invented.sum()),
        "total": len(target),
        "source_slices": len(positions),
        "tolerance_mm": round(tolerance, 4),
        "max_gap_mm": round(float(widths.max()), 3),
        "axis": "xyz"[axis],
        "gaps": gaps,
    }
    logger.debug("interpolated %d of %d grid slices", summary["interpolated"], summary["total"])
    return summary
