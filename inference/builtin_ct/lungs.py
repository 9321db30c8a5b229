"""Lungs and airways from air inside the body.

- Air is < -400 HU inside the (hole-filled) body. Components of at least
  ``MIN_LUNG_ML`` that look like lung are lung candidates, together with the
  airways connected to them: at least ``MIN_PARENCHYMA_FRACTION`` of their
  voxels at parenchymal density (-920..-600 HU; severe COPD at 4 mm: 0.45,
  normal lung 0.85-0.9) and at most ``MAX_PURE_GAS_FRACTION`` pure gas
  (< -990 HU). Bowel gas is pure gas with stool and wall at its edges
  (measured 0.16-0.30 at parenchymal density).
- The trachea is found as a round, nearly pure-air region near the midline in
  the highest slices that hold air; the airway tree is grown from it with an
  explosion-controlled threshold: the threshold rises in steps while the grown
  volume stays plausible, and stops before the step where it leaks into the
  parenchyma (the volume jumps).
- What remains is split into right and left lungs by the body's midline:
  each component goes to the side its centroid is on (patient's right is -x
  in LPS); a lung mass with a real share on both sides (lungs touching at a
  junction line) is eroded until it parts, and every voxel goes to the nearer
  part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from inference.builtin_ct.morph import FACE, Int3, dilate, erode, label
from inference.builtin_ct.table import AIR_MAX_HU

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]

MIN_LUNG_ML = 15.0
PURE_GAS_HU = -990.0
MAX_PURE_GAS_FRACTION = 0.3
PARENCHYMA_HU = (-920.0, -600.0)
MIN_PARENCHYMA_FRACTION = 0.35
TRACHEA_AREA_MM2 = (50.0, 700.0)  # lumen of an adult trachea: 8-30 mm across
TRACHEA_MAX_OFFSET_MM = 45.0  # from the body's midline
AIRWAY_START_HU = -990.0
AIRWAY_STEP_HU = 15.0
AIRWAY_LIMIT_HU = -900.0
AIRWAY_LEAK_RATIO = 1.8  # a step that grows the tree by more than this leaked
AIRWAY_MAX_FRACTION = 0.12  # of the air the tree lives in
MAX_SPLIT_EROSIONS = 12
MIN_SIDE_SHARE = 0.1


@dataclass
class LungMasks:
    """Coarse lung masks and what the airway search found."""

    right: Bool3
    left: Bool3
    airway: Bool3
    airway_threshold_hu: float | None
    notes: list[str]


def _lung_air(hu: F32, body: Bool3, voxel_ml: float) -> Bool3:
    """Air components that look like lung: big, mostly parenchyma (-920..-600 HU), little pure gas."""
    air = (hu < AIR_MAX_HU) & body
    lab, n = label(air, FACE)
    if n == 0:
        return air
    flat = lab.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    gas = np.bincount(flat, weights=(hu < PURE_GAS_HU).ravel(), minlength=n + 1)
    tissue = np.bincount(flat, weights=((hu > PARENCHYMA_HU[0]) & (hu < PARENCHYMA_HU[1])).ravel(), minlength=n + 1)
    keep = ((counts * voxel_ml >= MIN_LUNG_ML) & (gas <= MAX_PURE_GAS_FRACTION * counts)
            & (tissue >= MIN_PARENCHYMA_FRACTION * counts))
    keep[0] = False
    return np.asarray(keep[lab], dtype=bool)


def _trachea_seed(hu: F32, air: Bool3, body: Bool3, spacing: tuple[float, float, float]) -> tuple[int, int, int] | None:
    """A voxel of the trachea: the highest round, nearly pure-air slice region near the midline."""
    pixel_mm2 = spacing[1] * spacing[2]
    zs = np.nonzero(air.reshape(air.shape[0], -1).any(axis=1))[0]
    if zs.size == 0:
        return None
    xs_body = np.nonzero(body.any(axis=(0, 1)))[0]
    mid_x = 0.5 * (xs_body.min() + xs_body.max()) if xs_body.size else air.shape[2] / 2
    top = zs.max()
    for z in range(int(top), max(int(top) - round(60.0 / spacing[0]), -1), -1):
        lumen = air[z] & (hu[z] < -900.0)
        lab, n = ndi.label(lumen)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())[1:] * pixel_mm2
        for i in np.argsort(-areas):
            if not TRACHEA_AREA_MM2[0] <= areas[i] <= TRACHEA_AREA_MM2[1]:
                continue
            rows, cols = np.nonzero(lab == i + 1)
            if abs(cols.mean() - mid_x) * spacing[2] > TRACHEA_MAX_OFFSET_MM:
                continue
            extent = max(np.ptp(rows) * spacing[1], np.ptp(cols) * spacing[2]) + spacing[1]
            if extent > 2.2 * np.sqrt(areas[i] * 4 / np.pi):  # not round: a lung apex, not the trachea
                continue
            k = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
            return (z, int(rows[k]), int(cols[k]))
    return None


def _grow_airway(hu: F32, air: Bool3, seed: tuple[int, int, int], voxel_ml: float) -> tuple[Bool3, float | None]:
    """The airway tree grown from ``seed`` at the highest threshold that does not leak."""
    lab_air, _ = label(air, FACE)
    host = lab_air == lab_air[seed]
    limit = AIRWAY_MAX_FRACTION * float(host.sum())
    box = ndi.find_objects(host.astype(np.uint8))[0]
    sub_hu, sub_host = hu[box], host[box]
    local = tuple(s - b.start for s, b in zip(seed, box, strict=True))
    best: Bool3 | None = None
    best_thr: float | None = None
    prev = 0
    thr = max(AIRWAY_START_HU, float(sub_hu[local]) + 5.0)
    while thr <= AIRWAY_LIMIT_HU:
        lab, _ = label(sub_host & (sub_hu < thr), FACE)
        if lab[local] == 0:
            thr += AIRWAY_STEP_HU
            continue
        grown = lab == lab[local]
        size = int(grown.sum())
        if size > limit or (prev and size > AIRWAY_LEAK_RATIO * prev and size * voxel_ml > 5.0):
            break
        best, best_thr, prev = grown, thr, size
        thr += AIRWAY_STEP_HU
    out = np.zeros_like(air)
    if best is not None:
        out[box] = best
    return out, best_thr


def _by_side(lab: Int3, n: int, mid: float) -> tuple[Bool3, Bool3]:
    """Each component to the side of its centroid (canonical x below ``mid`` is the patient's right)."""
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    cols = np.broadcast_to(np.arange(lab.shape[2], dtype=np.float64), lab.shape).ravel()
    x = np.bincount(lab.ravel(), weights=cols, minlength=n + 1) / np.maximum(counts, 1)
    right = x < mid
    right[0] = False
    left = ~right
    left[0] = False
    return np.asarray(right[lab], dtype=bool), np.asarray(left[lab], dtype=bool)


def _erosion_seeds(whole: Bool3, mid: float) -> tuple[Bool3, Bool3] | None:
    """Erode a lung mass that crosses the midline until it parts into a right and a left piece."""
    core = whole
    for _ in range(MAX_SPLIT_EROSIONS):
        core = erode(core, (0, 1, 1))  # in-plane: the lungs meet along antero-posterior junction lines
        lab, n = label(core, FACE)
        if n < 2:
            continue
        right, left = _by_side(lab, n, mid)
        if right.sum() >= MIN_SIDE_SHARE * core.sum() and left.sum() >= MIN_SIDE_SHARE * core.sum():
            return right, left
    return None


def _split(lungs: Bool3, body: Bool3, spacing: tuple[float, float, float]) -> tuple[Bool3, Bool3, list[str]]:
    """Right and left lungs (canonical axis 2 runs towards the patient's left).

    Components go to the side of the body's midline their centroid lies on; a
    component with a real share of voxels on both sides (lungs touching at a
    junction line) is eroded until it parts, and its voxels go to the nearer part.
    """
    notes: list[str] = []
    lab, n = label(lungs, FACE)
    empty = np.zeros_like(lungs)
    if n == 0:
        return empty, empty.copy(), notes
    cols = np.nonzero(body.any(axis=(0, 1)))[0]
    mid = 0.5 * (cols.min() + cols.max()) if cols.size else lungs.shape[2] / 2
    right, left = _by_side(lab, n, mid)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    counts[0] = 0
    big = int(np.argmax(counts))
    whole = lab == big
    xs = np.nonzero(whole)[2]
    crossing = min((xs < mid).mean(), (xs >= mid).mean()) >= MIN_SIDE_SHARE
    if not crossing:
        return right, left, notes
    seeds = _erosion_seeds(whole, mid)
    if seeds is None:
        notes.append("the lungs touch and could not be separated; the lung mass is split at the midline")
        across = np.arange(lungs.shape[2])[None, None, :] < mid
        return (right & ~whole) | (whole & across), (left & ~whole) | (whole & ~across), notes
    # every voxel of the merged mass goes to the nearer seed (distances inside its bounding box)
    box = ndi.find_objects(whole.astype(np.uint8))[0]
    marker = np.zeros(whole[box].shape, dtype=np.uint8)
    marker[seeds[0][box]] = 1
    marker[seeds[1][box]] = 2
    _, idx = ndi.distance_transform_edt(marker == 0, sampling=spacing, return_indices=True)
    nearest = marker[tuple(idx)]
    right = right & ~whole
    left = left & ~whole
    right[box] |= whole[box] & (nearest == 1)
    left[box] |= whole[box] & (nearest == 2)
    return right, left, notes


def segment_lungs(hu: F32, body: Bool3, spacing: tuple[float, float, float]) -> LungMasks:
    """Right lung, left lung and airway masks on the coarse canonical grid."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    air = _lung_air(hu, body, voxel_ml)
    notes: list[str] = []
    airway = np.zeros_like(air)
    thr: float | None = None
    if air.any():
        seed = _trachea_seed(hu, air, body, spacing)
        if seed is None:
            notes.append("no trachea found in the highest slices with lung; airways are not separated from lung")
        else:
            airway, thr = _grow_airway(hu, air, seed, voxel_ml)
    lungs = air & ~airway
    # fragments cut off by the airway removal (a few voxels between bronchi) are not lung
    lab, n = label(lungs, FACE)
    if n:
        counts = np.bincount(lab.ravel())
        keep = counts * voxel_ml >= 0.5
        keep[0] = False
        small = lungs & ~keep[lab]
        airway |= small & dilate(airway, (1, 1, 1))
        lungs &= keep[lab]
    right, left, split_notes = _split(lungs, body, spacing)
    notes += split_notes
    return LungMasks(right, left, airway, thr, notes)
