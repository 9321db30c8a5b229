"""Bone (cortex and marrow), kept apart from contrast-filled vessels and vascular calcification.

HU alone cannot tell bone from an enhanced aorta (150-400 HU) or from the
calcified plaque on its wall (> 400 HU, like cortex). The rules add texture,
shape and enclosure (validated on a contrast CT against TotalSegmentator's
reference: vertebrae and ribs covered, aorta, cava and portal vein not):

1. *Lumen candidates*: thick (4 mm in-plane core), smooth (local standard
   deviation below ``SMOOTH_FACTOR`` times the scan's soft-tissue noise)
   regions of 100-400 HU, grown out to the vessel wall: blood pools and
   enhancing parenchyma. Trabecular bone is as dense but usually mottled.
2. *Cortex* candidates are voxels >= ``CORTEX_HU`` (block maximum on the coarse
   grid, so thin cortex survives averaging). A cortex component whose dense
   neighbours are mostly lumen is calcification lining a vessel and is dropped.
3. *Bone core*: the >= ``BONE_MIN_HU`` regions (lumen excluded) connected to
   kept cortex, at least ``MIN_BONE_MM3`` each (smaller isolated specks are
   calcifications of vessels, nodes or granulomas).
4. *Enclosed*: what the core surrounds in an axial slice, by hole filling after
   closing ``SHELL_GAP_MM`` gaps, or by meeting bone within ``REACH_MM`` in all
   four in-plane directions (the vertebral ring is open at the foramina).
   A lumen candidate enclosed in most of its voxels is a porotic vertebral
   body, not a vessel, and stops being lumen.
5. *Marrow*: enclosed voxels denser than the spinal canal (3x3 mean of their
   non-core neighbours >= ``MARROW_MIN_LOCAL_HU``; the canal holds CSF and
   cord at 0-40 HU).
6. The bone *zone* is core and marrow plus an ``EDGE_MM`` rim; at full
   resolution its voxels are cortex (>= 400 HU), marrow (>= 120 HU: partial
   volume) or soft tissue (``assemble``). Vertebral bodies (large bone regions
   near the midline, eroded by ``VERTEBRA_ERODE_MM``) give the trabecular density.

Thresholds drop on coarse pixels (see ``segment_bone``). Known limits: fatty
marrow of long bones (< 60 HU) is not marrow; a calcified artery thicker than
``MIN_BONE_MM3`` that runs without a thick lumen can pass as bone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from inference.builtin_ct.grid import vox
from inference.builtin_ct.morph import FACE, FULL, IN_PLANE, Int3, closing, dilate, erode, fill_holes_2d, label
from inference.builtin_ct.table import BONE_MIN_HU, CORTEX_HU

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]

MARROW_MIN_LOCAL_HU = 60.0
LUMEN_MIN_HU = 100.0
LUMEN_MAX_HU = 400.0
LUMEN_CORE_MM = 4.0
LUMEN_MAX_ENCLOSED = 0.5
LUMEN_REACH_MM = 5.0
SMOOTH_FACTOR = 1.8
VERTEBRA_ERODE_MM = 3.0
VERTEBRA_MIN_AREA_MM2 = 200.0
VERTEBRA_MAX_OFFSET_MM = 35.0
PLAQUE_LUMEN_SHARE = 0.5
EDGE_MM = 2.0
SHELL_GAP_MM = 3.0
REACH_MM = 25.0
MIN_CORTEX_VOXELS = 3
MIN_BONE_MM3 = 300.0


@dataclass
class BoneMasks:
    """Coarse bone masks: ``zone`` (cortex and its edge), ``marrow`` (enclosed), ``lumen`` (never bone), ``solid``."""

    zone: Bool3
    marrow: Bool3
    vertebral_marrow: Bool3
    lumen: Bool3
    rejected_calcifications: int
    solid: Bool3  # core and marrow without the edge rim: neighbouring bones stay apart


def _local_std(hu: F32, spacing: tuple[float, float, float]) -> F32:
    """In-plane local standard deviation of HU in a ~5 mm window."""
    size = (1, 2 * vox(2.5, spacing[1]) + 1, 2 * vox(2.5, spacing[2]) + 1)
    mean = ndi.uniform_filter(hu, size=size)
    sq = ndi.uniform_filter(hu * hu, size=size)
    sq -= mean * mean
    np.maximum(sq, 0.0, out=sq)
    return np.asarray(np.sqrt(sq), dtype=np.float32)


def _lumen(hu: F32, body: Bool3, std: F32, spacing: tuple[float, float, float]) -> Bool3:
    """Thick, smooth 100-400 HU regions: vessel lumens and enhancing organs (never bone)."""
    soft = body & (hu > 0.0) & (hu < 100.0)
    noise = float(np.median(std[soft])) if soft.any() else 20.0
    dense = (hu >= LUMEN_MIN_HU) & (hu < LUMEN_MAX_HU) & body & (std < SMOOTH_FACTOR * max(noise, 5.0))
    r = (0, vox(LUMEN_CORE_MM, spacing[1]), vox(LUMEN_CORE_MM, spacing[2]))
    core = dilate(erode(dense, r), r) & dense
    # the smoothness window keeps the core ~2.5 mm inside the vessel wall: reach out to the wall
    g = (0, vox(LUMEN_REACH_MM, spacing[1]), vox(LUMEN_REACH_MM, spacing[2]))
    return dilate(core, g) & (hu >= LUMEN_MIN_HU) & (hu < LUMEN_MAX_HU) & body


def _plaque(lab: Int3, n: int, hu: F32, lumen: Bool3) -> npt.NDArray[np.bool_]:
    """Cortex components whose dense neighbours are mostly lumen (calcification on a vessel wall)."""
    out = np.zeros(n + 1, dtype=bool)
    dense = (hu >= LUMEN_MIN_HU) & (lab == 0)
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        grown = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, d)) for s, d in zip(sl, lab.shape, strict=True))
        comp = lab[grown] == i
        shell = dilate(comp, (1, 1, 1)) & ~comp
        near_dense = int((shell & dense[grown]).sum())
        near_lumen = int((shell & lumen[grown]).sum())
        out[i] = near_dense > 0 and near_lumen >= PLAQUE_LUMEN_SHARE * near_dense
    return out


def _reached(core: Bool3, spacing: tuple[float, float, float]) -> Bool3:
    """Voxels with bone within ``REACH_MM`` in all four in-plane directions (+-y, +-x).

    At the level of the intervertebral foramina the vertebral ring is open and a
    hole fill misses the body's marrow; four rays that all meet bone close by
    still say "inside". Counts along each ray come from one cumulative sum per axis.
    """
    out = np.ones(core.shape, dtype=bool)
    for axis in (1, 2):
        n = core.shape[axis]
        r = vox(REACH_MM, spacing[axis])
        first = np.zeros_like(np.take(core, [0], axis=axis), dtype=np.int32)
        cum = np.concatenate([first, np.cumsum(core, axis=axis, dtype=np.int32)], axis=axis)  # cum[k] = sum[:k]
        i = np.arange(n)
        out &= (np.take(cum, np.minimum(i + r + 1, n), axis=axis) - np.take(cum, i + 1, axis=axis)) > 0
        out &= (np.take(cum, i, axis=axis) - np.take(cum, np.maximum(i - r, 0), axis=axis)) > 0
    return out


def _enclosed(core: Bool3, spacing: tuple[float, float, float]) -> Bool3:
    """What the bone core encloses in axial slices.

    Either a hole after closing gaps of ``SHELL_GAP_MM`` (a vertebral body's
    shell above 200 HU has gaps where the cortex is thin), or surrounded on
    four sides (``_reached``).
    """
    ring = closing(core, (0, vox(SHELL_GAP_MM, spacing[1]), vox(SHELL_GAP_MM, spacing[2])))
    return (fill_holes_2d(ring) | _reached(core, spacing)) & ~core


def _true_lumen(candidate: Bool3, enclosed: Bool3) -> Bool3:
    """Lumen candidates (3-D components) that bone does not enclose in most of their slices.

    A porotic vertebral body is as smooth and as dense as blood; it differs by
    being inside bone. A vessel ringed by calcification is enclosed only where
    the ring is complete, a few slices of its length.
    """
    lab, n = label(candidate, FACE)
    if n == 0:
        return candidate
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    inside = np.bincount(lab.ravel(), weights=enclosed.ravel(), minlength=n + 1)
    keep = inside < LUMEN_MAX_ENCLOSED * counts
    keep[0] = False
    return np.asarray(keep[lab], dtype=bool)


def _vertebral(bone: Bool3, body: Bool3, spacing: tuple[float, float, float]) -> Bool3:
    """Interiors of vertebral bodies: large bone regions near the midline, cortex eroded away."""
    inner = erode(bone, (0, vox(VERTEBRA_ERODE_MM, spacing[1]), vox(VERTEBRA_ERODE_MM, spacing[2])))
    lab, n = label(inner, IN_PLANE)
    if n == 0:
        return inner
    flat = lab.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    cols = np.broadcast_to(np.arange(bone.shape[2], dtype=np.float64), bone.shape).ravel()
    x_mean = np.bincount(flat, weights=cols, minlength=n + 1) / np.maximum(counts, 1)
    zs = np.nonzero(body.reshape(body.shape[0], -1).any(axis=1))[0]
    body_cols = np.nonzero(body.any(axis=(0, 1)))[0]
    mid = 0.5 * (body_cols.min() + body_cols.max()) if zs.size else bone.shape[2] / 2
    area = counts * spacing[1] * spacing[2]
    keep = (area >= VERTEBRA_MIN_AREA_MM2) & (np.abs(x_mean - mid) * spacing[2] <= VERTEBRA_MAX_OFFSET_MM)
    keep[0] = False
    return np.asarray(keep[lab], dtype=bool)


def _partial_volume(pixel_mm: float) -> float:
    """0 for pixels <= 1 mm, rising to 1 at >= 3 mm: how much a thin cortex is averaged away."""
    return min(max((pixel_mm - 1.0) / 2.0, 0.0), 1.0)


def segment_bone(hu: F32, hmax: F32, body: Bool3, spacing: tuple[float, float, float],
                 native_pixel_mm: float) -> BoneMasks:
    """Bone zone, marrow, vertebral marrow and vessel-lumen masks on the coarse canonical grid.

    Thresholds drop with the pixel size (by up to 100 HU for cortex, judged on the
    native pixels the block maximum keeps, and 50 HU for the core, judged on the
    coarse pixels): a 1-2 mm cortex averaged into 3 mm pixels reads 300-400 HU.
    """
    cortex_hu = CORTEX_HU - 100.0 * _partial_volume(native_pixel_mm)
    core_hu = BONE_MIN_HU - 50.0 * _partial_volume(min(spacing[1], spacing[2]))
    lumen = _lumen(hu, body, _local_std(hu, spacing), spacing)
    cortex = (hmax >= cortex_hu) & body
    lab, n = label(cortex, FULL)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    plaque = _plaque(lab, n, hu, lumen) if n else np.zeros(1, dtype=bool)
    keep = (counts >= MIN_CORTEX_VOXELS) & ~plaque
    keep[0] = False
    kept = keep[lab]
    rejected = (lab > 0) & ~kept
    cand = (((hu >= core_hu) & body & ~lumen) | kept) & ~rejected
    clab, cn = label(cand, FULL)
    touched = np.zeros(cn + 1, dtype=bool)
    touched[clab[kept]] = True  # no np.unique: it sorts holding the GIL (a GUI frame late), indexing does not
    # isolated dense specks are calcifications (vessels, nodes, granulomas), not bone
    touched &= np.bincount(clab.ravel(), minlength=cn + 1) * float(np.prod(spacing)) >= MIN_BONE_MM3
    touched[0] = False
    core = touched[clab]
    enclosed = _enclosed(core, spacing)
    lumen = _true_lumen(lumen, enclosed)
    # per voxel, on a 3x3 in-plane mean of the non-core neighbours (so the cortex next to the
    # spinal canal does not lift it): trabecular bone is patchy, the canal never gets near
    soft = (~core).astype(np.float32)
    local = ndi.uniform_filter(hu * soft, size=(1, 3, 3)) / np.maximum(ndi.uniform_filter(soft, size=(1, 3, 3)), 1e-3)
    marrow = enclosed & ~lumen & body & (local >= MARROW_MIN_LOCAL_HU)
    edge = (0 if spacing[0] > EDGE_MM else 1, vox(EDGE_MM, spacing[1]), vox(EDGE_MM, spacing[2]))
    zone = (dilate(core | marrow, edge) & body & ~lumen & ~rejected) | core
    vertebral = _vertebral(core | marrow, body, spacing)
    n_rejected = int((plaque[1:] & (counts[1:] >= MIN_CORTEX_VOXELS)).sum()) if n else 0
    logger.info("bone: %d cortex components, %d rejected as vascular calcification", n, n_rejected)
    return BoneMasks(zone, marrow & ~core, vertebral, lumen, n_rejected, core | marrow)
