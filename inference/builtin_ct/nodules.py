"""Lung nodule candidates: solid blobs wholly enclosed by lung, round enough not to be vessels.

The lung mask (air < -400 HU, airways removed) is hole-filled in 3-D; the
holes are the solid structures surrounded by lung on every side. Vessels
and bronchial walls run out to the hilum, so they are not holes; what is left
are nodules and short vessel segments cut off by partial volume. A candidate is
kept if its equivalent diameter is 3-30 mm and it is not elongated (principal
axes within ``MAX_ELONGATION`` of each other). Juxtapleural nodules (touching
the chest wall) are not enclosed and are not found: a known limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from inference.builtin_ct.morph import FACE, dilate, fill_holes_3d, label
from inference.builtin_ct.table import AIR_MAX_HU

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]

DIAMETER_MM = (3.0, 30.0)
MAX_ELONGATION = 2.2
MIN_VOXELS = 4


@dataclass
class NoduleMasks:
    """Coarse nodule candidates, split by the lung that encloses them."""

    right: Bool3
    left: Bool3
    count: int


def _elongation(coords: npt.NDArray[np.float64], spacing: tuple[float, float, float]) -> float:
    """Ratio of the longest to the shortest principal axis of a voxel set (mm)."""
    cov = np.cov(coords.T) if coords.shape[0] > 1 else np.zeros((3, 3))
    cov = cov + np.diag(np.square(spacing) / 12.0)  # a voxel's own extent
    ev = np.linalg.eigvalsh(cov)
    return float(np.sqrt(ev[-1] / max(ev[0], 1e-9)))


def find_nodules(hu: npt.NDArray[np.float32], right: Bool3, left: Bool3,
                 spacing: tuple[float, float, float]) -> NoduleMasks:
    """Nodule candidates enclosed by the right or left lung."""
    lung = right | left
    out_r, out_l = np.zeros_like(lung), np.zeros_like(lung)
    if not lung.any():
        return NoduleMasks(out_r, out_l, 0)
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in ndi.find_objects(lung.astype(np.uint8))[0])
    sub = lung[box]
    holes = fill_holes_3d(sub) & ~sub & (hu[box] >= AIR_MAX_HU)
    lab, n = label(holes, FACE)
    if n == 0:
        return NoduleMasks(out_r, out_l, 0)
    voxel_mm3 = float(np.prod(spacing))
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    diam = np.cbrt(6.0 * counts * voxel_mm3 / np.pi)
    ok = (diam >= DIAMETER_MM[0]) & (diam <= DIAMETER_MM[1]) & (counts >= MIN_VOXELS)
    ok[0] = False
    kept = 0
    scale = np.asarray(spacing)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or not ok[i]:
            continue
        comp = lab[sl] == i
        if _elongation(np.argwhere(comp) * scale, spacing) > MAX_ELONGATION:
            continue
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, dim)) for s, dim in zip(sl, lab.shape, strict=True))
        comp = lab[grown] == i
        ring = dilate(comp, (1, 1, 1)) & ~comp
        n_r = int((right[box][grown] & ring).sum())
        n_l = int((left[box][grown] & ring).sum())
        target = out_r if n_r >= n_l else out_l
        target[box][grown] |= comp
        kept += 1
    logger.info("nodule candidates: %d of %d enclosed solid regions", kept, n)
    return NoduleMasks(out_r, out_l, kept)
