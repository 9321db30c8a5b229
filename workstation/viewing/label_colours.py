"""The label overlay's colour table: one ARGB32 value per label value. Qt-free.

Visibility per label is a change of this table only, so toggling a label never
touches the voxels; the Qt views index it with the label slice
(``workstation.qt.viewer.render.overlay_image``).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from inference.labels import LabelTable
from workstation.imaging import label_rgb_table

logger = logging.getLogger(__name__)

MAX_LABEL_VALUE = 1 << 20
"""Largest label value the colour table indexes directly (a few MB of table)."""


def colour_table(
    table: LabelTable, max_value: int, hidden: set[int] | frozenset[int] = frozenset()
) -> npt.NDArray[np.uint32]:
    """ARGB32 per label value ``0..max_value``: the table's opaque colour, or 0 (background, hidden, unknown)."""
    if max_value >= MAX_LABEL_VALUE:
        raise ValueError(f"label values up to {MAX_LABEL_VALUE - 1} are supported, got {max_value}")
    rgb = label_rgb_table(table, max_value, hidden).astype(np.uint32)
    argb = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    shown = np.zeros(max_value + 1, dtype=bool)
    shown[[lab.value for lab in table if 0 < lab.value <= max_value and lab.value not in hidden]] = True
    lut: npt.NDArray[np.uint32] = np.where(shown, np.uint32(0xFF000000) | argb, np.uint32(0)).astype(np.uint32)
    return lut
