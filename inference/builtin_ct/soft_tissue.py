"""Body compartments for muscle and fat: subcutaneous, muscle, cavity, limbs.

HU tells fat (-190..-30) from lean tissue (-29..150) but not skeletal muscle
from liver or bowel, nor subcutaneous from visceral fat; anatomy does:

- The *envelope* is what the muscle/bone wall encloses in each axial slice:
  lean tissue, bone and lung deeper than the skin, cleaned of thin septa in the
  subcutaneous fat (opening, and only the slice's main parts kept), closed
  across small gaps in the wall and hole-filled; where a gap is too wide to
  close, the slice's convex hull stands in. Fat outside the envelope (and
  inside the skin) is subcutaneous; fat inside it is visceral, except the fat
  among the muscles (in the muscle compartments below: intermuscular fat,
  fatty streaks of the erector spinae), which is neither and is labelled body.
- The *muscle wall* is the lean tissue under the envelope's surface down to
  the first inner boundary met from outside: a rib or other bone (its inner
  surface: intercostal muscles count, the diaphragm and what lies inside the
  rib cage do not), a fat plane at least ``FAT_PLANE_MM`` thick
  (extraperitoneal, perirenal or mediastinal fat), or air and lung. It is
  traced along rays from the slice's centre (``_wall_depths``). Where an organ
  touches the wall with no such boundary (liver or spleen against the
  abdominal wall, between the ribs), the ray runs on deeper than a wall can be
  (``WALL_MAX_MM``; ``BACK_WALL_MM`` over the back, where the erector spinae
  and quadratus lumborum are thick) and the depth there is interpolated
  from the rays beside it. So the wall covers the abdominal and chest wall
  muscles, and over the back the paraspinal muscles down to the laminae,
  transverse processes and posterior ribs.
- *Psoas* (and the diaphragmatic crura) lie inside that line, beside the
  vertebral body: lean regions inside the envelope within ``PSOAS_NEAR_MM``
  of the vertebral column and within ``PSOAS_REACH_MM`` of its centre line
  that fat closes off (they do not run on to the front or side of that box, as
  liver, kidney, bowel or vessels would: such a region is eroded until the
  part by the column comes free) and are at least ``PSOAS_MIN_CM2``.
- The vertebral column itself (its bone smeared over the discs and
  hole-filled: discs and spinal canal) is never muscle.
- Arms are limbs, neither trunk muscle nor trunk fat (labelled body): regions
  of the body apart from the trunk (``body``), and arms resting against it
  (round solid parts holding a long bone, outside the convex hull of the
  trunk's other parts; the fat nearer them than the wall goes with them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.builtin_ct.grid import vox
from inference.builtin_ct.morph import IN_PLANE, closing, dilate, erode, fill_holes_2d, label, opening
from inference.builtin_ct.table import FAT_HU, MUSCLE_HU

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]
Bool2 = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]

OUT, SUBQ, MUSCLE_ZONE, CAVITY, LIMB = 0, 1, 2, 3, 4
SKIN_MM = 3.0
SEPTA_MM = 2.0
GAP_MM = 8.0
HULL_MIN_FILL = 0.9
MAIN_PART_SHARE = 0.05
ARM_MAX_SHARE = 0.3
ARM_MIN_BONE_MM2 = 100.0
ARM_MIN_ROUNDNESS = 0.5
ARM_LATERAL_SHARE = 0.5
# the muscle wall, traced along rays
RAYS = 360
FAT_PLANE_MM = 3.0
BACK_FAT_PLANE_MM = 8.0
LEAD_MM = 10.0
BONE_MM = 15.0
WALL_MAX_MM = 45.0
BACK_WALL_MM = 90.0
BACK_REACH_MM = 80.0
PARASPINAL_MM = 50.0
OUTLIER_RATIO = 1.5
OUTLIER_MM = 5.0
TYPICAL_DEG = 15.0
TYPICAL_QUANTILE = 0.3
ANCHOR_DEG = 30.0
SMOOTH_DEG = 2.0
MIN_TRACED_SHARE = 0.1
FALLBACK_WALL_MM = 15.0
MIN_SLICE_PIXELS = 50
# psoas and crura beside the vertebral body
PSOAS_REACH_MM = 90.0
PSOAS_FRONT_MM = 30.0
PSOAS_BACK_MM = 35.0
PSOAS_CUT_MM = 2.0
PSOAS_NEAR_MM = 8.0
PSOAS_MIN_CM2 = 1.0
PSOAS_MAX_CM2 = 40.0
PSOAS_SPLIT_STEPS = 3
# the vertebral column's footprint
SPINE_HALF_WIDTH_MM = 35.0
DISC_MM = 10.0

# classes sampled along the rays
_C_OUT, _C_LEAN, _C_FAT, _C_BONE, _C_AIR, _C_OTHER, _C_LUNG = 0, 1, 2, 3, 4, 5, 6


@dataclass
class Compartments:
    """Coarse compartment codes (``OUT``..``LIMB``) and notes for the user."""

    code: npt.NDArray[np.uint8]
    notes: list[str]


def _spinal_column(bone: Bool3, centre_x: F64, spacing: tuple[float, float, float]) -> Bool3:
    """The vertebral column's footprint: its bone near the centre line, smeared over discs, hole-filled (canal)."""
    known = np.isfinite(centre_x)
    if not known.any():
        return np.zeros_like(bone)
    cx = np.where(known, centre_x, float(np.median(centre_x[known])))
    cols = np.abs(np.arange(bone.shape[2])[None, :] - cx[:, None]) * spacing[2] <= SPINE_HALF_WIDTH_MM
    near = bone & cols[:, None, :] & known[:, None, None]
    smear = dilate(near, (vox(DISC_MM, spacing[0]), 0, 0))
    return fill_holes_2d(closing(smear, (0, vox(3.0, spacing[1]), vox(3.0, spacing[2]))))


def _arm_like(part: Bool2, bone: Bool2, spacing: tuple[float, float, float]) -> bool:
    """A round solid cross-section holding a long bone: an arm (a wall fragment with a rib is a thin crescent)."""
    ys, xs = np.nonzero(part)
    if ys.size < 10:
        return False
    if (bone & part).sum() * spacing[1] * spacing[2] < ARM_MIN_BONE_MM2:
        return False
    cov = np.cov(np.stack([ys * spacing[1], xs * spacing[2]]))
    low, high = np.linalg.eigvalsh(cov)
    return bool(high > 0 and np.sqrt(max(low, 0.0) / high) >= ARM_MIN_ROUNDNESS)


def _trunk_parts(solid: Bool3, bone: Bool3, spacing: tuple[float, float, float]) -> tuple[Bool3, Bool3]:
    """Per slice, the solid parts of the trunk's wall and contents, and the arms lying against it.

    Keeps the 2-D components of at least ``MAIN_PART_SHARE`` of the largest one
    (drops strands in the subcutaneous fat): the wall, and bowel or organs that
    fat separates from it in this slice. A smaller part (under
    ``ARM_MAX_SHARE``) that is round, holds a long bone's cross-section, lies
    in the outer part of the slice and mostly outside the convex hull of the
    other parts is an arm resting against the trunk (returned as the second
    mask, not kept).
    """
    from scipy import ndimage as ndi

    lab, n = label(solid, IN_PLANE)
    if n == 0:
        return solid, np.zeros_like(solid)
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    objects = ndi.find_objects(lab)
    last = lab.reshape(solid.shape[0], -1).max(axis=1)
    keep = np.zeros(n + 1, dtype=bool)
    arm = np.zeros(n + 1, dtype=bool)
    previous = 0
    for z in np.nonzero(last)[0]:  # the labels of slice z are previous+1..last[z] (raster order)
        ids = np.arange(previous + 1, int(last[z]) + 1)
        previous = int(last[z])
        main = ids[int(np.argmax(counts[ids]))]
        parts = ids[counts[ids] >= MAIN_PART_SHARE * counts[main]]
        keep[parts] = True
        small = parts[counts[parts] < ARM_MAX_SHARE * counts[main]]
        if small.size == 0:
            continue
        cols = np.nonzero(np.isin(lab[z], parts).any(axis=0))[0]
        mid, half = 0.5 * (cols[0] + cols[-1]), 0.5 * (cols[-1] - cols[0])
        candidates = []
        for i in small:
            box = objects[i - 1]
            assert box is not None
            xc = 0.5 * (box[2].start + box[2].stop - 1)
            if abs(xc - mid) < ARM_LATERAL_SHARE * half:
                continue
            if _arm_like(lab[z][box[1:]] == i, bone[z][box[1:]], spacing):
                candidates.append(i)
        if not candidates:
            continue
        rest = parts[~np.isin(parts, candidates)]
        hull = _hull_2d(np.isin(lab[z], rest))
        inside = np.bincount(lab[z][hull], minlength=n + 1)
        for i in candidates:
            if inside[i] < 0.5 * counts[i]:
                arm[i], keep[i] = True, False
    return np.asarray(keep[lab], dtype=bool), np.asarray(arm[lab], dtype=bool)


def _hull_2d(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The convex hull of a 2-D mask, rasterised (pixel centres as the hull's points)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return mask.copy()
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = mask.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    pts = np.concatenate([np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)])  # the rows' ends
    if len(np.unique(pts, axis=0)) < 3:
        return mask.copy()
    try:
        hull = ConvexHull(pts[:, ::-1].astype(np.float64))
    except QhullError:  # all points on a line
        return mask.copy()
    img = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in hull.points[hull.vertices]], fill=1, outline=1)
    return np.asarray(img, dtype=bool) | mask


def _arm_regions(outside: Bool3, envelope: Bool3, arms: Bool3) -> Bool3:
    """The part of ``outside`` (trunk outside the envelope) nearer an arm than the wall: the arm's own fat and skin."""
    from scipy import ndimage as ndi

    out = np.zeros_like(outside)
    for z in np.nonzero(arms.reshape(arms.shape[0], -1).any(axis=1))[0]:
        to_arm = ndi.distance_transform_edt(~arms[z])
        to_wall = ndi.distance_transform_edt(~envelope[z]) if envelope[z].any() else np.full(to_arm.shape, np.inf)
        out[z] = outside[z] & (np.asarray(to_arm) < np.asarray(to_wall))
    return out | (arms & outside)


def _envelope(solid: Bool3, trunk: Bool3, spacing: tuple[float, float, float]) -> tuple[Bool3, int]:
    """Per slice: the hole-filled closed wall, or its convex hull where the wall stays open.

    A wall with a gap wider than the closing leaves the cavity unfilled (the filled
    area falls well short of the hull's); the convex hull then stands in for it,
    at the price of counting fat in the back's midline groove as visceral.
    """
    gap = (0, vox(GAP_MM, spacing[1]), vox(GAP_MM, spacing[2]))
    envelope = fill_holes_2d(closing(solid, gap)) & trunk
    area = envelope.reshape(envelope.shape[0], -1).sum(axis=1)
    hulls = 0
    for z in np.nonzero(solid.reshape(solid.shape[0], -1).sum(axis=1) >= 10)[0]:
        hull = _hull_2d(solid[z]) & trunk[z]
        if area[z] < HULL_MIN_FILL * hull.sum():
            envelope[z] = hull
            hulls += 1
    return envelope, hulls


def _circular_quantile(values: F64, half: int, q: float) -> F64:
    """Quantile ``q`` over a circular window of ``2 * half + 1`` (NaN ignored; NaN where all are NaN)."""
    if half < 1:
        return values.copy()
    padded = np.concatenate([values[-half:], values, values[:half]])
    windows = np.sort(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)  # NaN sort last
    valid = np.isfinite(windows).sum(axis=1)
    at = np.floor(q * np.maximum(valid - 1, 0)).astype(np.intp)
    out = np.take_along_axis(windows, at[:, None], axis=1)[:, 0]
    return np.where(valid > 0, out, np.nan)


def _wall_depths(cls: npt.NDArray[np.uint8], cy: float, cx: float, spine: tuple[float, float] | None,
                 spacing: tuple[float, float]) -> tuple[F64, F64, int]:
    """Along ``RAYS`` rays from (``cy``, ``cx``): the envelope's outer radius and the wall depth (mm).

    Returns (outer radius, wall depth, rays traced to an inner boundary). The
    depth of a ray that meets no boundary in time is interpolated from its
    neighbours; so is one far deeper than the wall around it (a low quantile
    of the rays within ``TYPICAL_DEG``, or the rays ended by ribs or lung
    within ``ANCHOR_DEG``).
    """
    ny, nx = cls.shape
    sy, sx = spacing
    ds = min(sy, sx)
    corners_y = np.array([0.0, ny - 1.0]) - cy
    corners_x = np.array([0.0, nx - 1.0]) - cx
    rmax = float(np.sqrt((np.abs(corners_y).max() * sy) ** 2 + (np.abs(corners_x).max() * sx) ** 2))
    n_s = int(rmax / ds) + 2
    theta = np.arange(RAYS) * (2.0 * np.pi / RAYS)
    r = np.arange(n_s) * ds
    iy = np.rint(cy + np.outer(np.sin(theta), r) / sy).astype(np.intp)
    ix = np.rint(cx + np.outer(np.cos(theta), r) / sx).astype(np.intp)
    valid = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    c = np.where(valid, cls[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)], _C_OUT)
    idx = np.arange(n_s)[None, :]
    rows = np.arange(RAYS)
    inside = c != _C_OUT
    has = inside.any(axis=1)
    s_out = n_s - 1 - np.argmax(inside[:, ::-1], axis=1)
    tissue = (c == _C_LEAN) | (c == _C_BONE) | (c == _C_OTHER)
    lead = np.where(tissue & (idx <= s_out[:, None]), idx, -1).max(axis=1)
    ok = has & (lead >= 0) & ((s_out - lead) * ds <= LEAD_MM)
    # plausible wall thickness: thick over the back beside the spine, thinner elsewhere
    out_y = np.sin(theta) * s_out * ds
    out_x = np.cos(theta) * s_out * ds
    if spine is not None:
        lateral = np.abs(out_x - (spine[1] - cx) * sx)
        back = (out_y > (spine[0] - cy) * sy) & (lateral <= BACK_REACH_MM)
        paraspinal = back & (lateral <= PARASPINAL_MM)
    else:
        back = np.sin(theta) >= np.cos(np.radians(35.0))
        paraspinal = np.zeros_like(back)
    # a fat plane: FAT_PLANE_MM of fat in a row; over the back, where the erector spinae carry fatty streaks,
    # BACK_FAT_PLANE_MM (the perirenal and posterior pararenal fat are thicker); over the paraspinal
    # muscles none: bone (laminae, transverse processes, ribs) is their deep boundary
    fat = c == _C_FAT
    run = np.cumsum(fat, axis=1)
    plane = np.zeros_like(fat)
    for mm, rays in ((FAT_PLANE_MM, ~back), (BACK_FAT_PLANE_MM, back & ~paraspinal)):
        k = max(1, round(mm / ds))
        length = run.copy()
        length[:, k:] -= run[:, :-k]
        plane |= (length >= k) & rays[:, None]
    barrier = (c == _C_BONE) | (c == _C_AIR) | (c == _C_LUNG) | (c == _C_OUT) | plane
    s_b = np.where(barrier & (idx <= lead[:, None]), idx, -1).max(axis=1)
    found = ok & (s_b >= 0)
    at = np.maximum(s_b, 0)
    bone_hit = c[rows, at] == _C_BONE
    anchored = found & (bone_hit | (c[rows, at] == _C_LUNG))  # ribs, sternum, spine, lung: never an organ's inside
    # a bone ends the wall at its inner surface (intercostal muscles are wall), counted at most BONE_MM deep
    # (a ray running along a lamina or a rib would otherwise carry the wall through it)
    last_soft = np.maximum.accumulate(np.where(c != _C_BONE, idx, -1), axis=1)
    bone_run = np.minimum(s_b - last_soft[rows, at], max(1, round(BONE_MM / ds)))
    s_in = np.where(bone_hit, s_b - bone_run + 1, s_b + 1)
    depth = (s_out - s_in + 0.5) * ds
    muscle_depth = (s_out - s_b + 0.5) * ds  # down to the boundary's outer face
    traced = found & (muscle_depth <= np.where(back, BACK_WALL_MM, WALL_MAX_MM)) & (depth > 0)
    # a ray that ran into an organ reads deeper than the wall beside it: compare with a low quantile of the
    # rays around (the median over the back, where the erector spinae make the wall thick over a wide arc)
    values = np.where(traced, depth, np.nan)
    half = round(TYPICAL_DEG * RAYS / 360.0)
    typical = np.where(back, _circular_quantile(values, half, 0.5), _circular_quantile(values, half, TYPICAL_QUANTILE))
    # where ribs or lung end rays nearby, they set the wall's depth (an organ against the wall over a wide arc
    # would otherwise be its own reference)
    near_anchor = _circular_quantile(np.where(traced & anchored, depth, np.nan), round(ANCHOR_DEG * RAYS / 360.0), 0.5)
    typical = np.where(np.isfinite(near_anchor) & ~anchored, np.fmin(typical, near_anchor), typical)
    # (not over the paraspinal muscles when bone ends the ray: their depth changes sharply beside the spinous
    # process, and the laminae, transverse processes and ribs are their true deep boundary)
    trusted = paraspinal & bone_hit
    traced &= trusted | ~(depth > OUTLIER_RATIO * np.nan_to_num(typical, nan=np.inf) + OUTLIER_MM)
    n_traced = int(traced.sum())
    if n_traced < MIN_TRACED_SHARE * RAYS:
        wall = np.full(RAYS, FALLBACK_WALL_MM)
    else:
        wall = np.interp(theta, theta[traced], depth[traced], period=2.0 * np.pi)
        wall = _circular_quantile(wall, round(SMOOTH_DEG * RAYS / 360.0), 0.5)
    outer = np.where(has, s_out * ds, -1.0)
    return outer, wall, n_traced


def _wall(cls: npt.NDArray[np.uint8], envelope: Bool3, centre_y: F64, centre_x: F64,
          spacing: tuple[float, float, float]) -> tuple[Bool3, int]:
    """The muscle wall of every slice (see the module's docstring) and how many slices fell back."""
    wall = np.zeros(envelope.shape, dtype=bool)
    sy, sx = spacing[1], spacing[2]
    fallbacks = 0
    for z in range(envelope.shape[0]):
        ys, xs = np.nonzero(envelope[z])
        if ys.size < MIN_SLICE_PIXELS:
            continue
        cy, cx = float(ys.mean()), float(xs.mean())
        spine = (float(centre_y[z]), float(centre_x[z])) if np.isfinite(centre_y[z]) else None
        outer, depth, traced = _wall_depths(cls[z], cy, cx, spine, (sy, sx))
        fallbacks += traced < MIN_TRACED_SHARE * RAYS
        py, px = (ys - cy) * sy, (xs - cx) * sx
        k = np.rint(np.arctan2(py, px) / (2.0 * np.pi / RAYS)).astype(np.intp) % RAYS
        below = outer[k] - np.hypot(py, px)
        keep = (outer[k] >= 0) & (below <= depth[k])
        wall[z, ys[keep], xs[keep]] = True
    return wall, fallbacks


def _psoas(candidate: Bool3, column: Bool3, centre_y: F64, centre_x: F64,
           spacing: tuple[float, float, float]) -> Bool3:
    """Lean regions beside the vertebral column that fat closes off within reach (psoas, crura).

    A region that runs on to the front or the side of the search box is an organ
    or a vessel (kidney, liver, bowel, aorta, cava), possibly joined to the psoas
    by a thin contact: it is eroded in steps until a part near the column comes
    free of those edges, and that part (grown back inside the region) is kept.
    Running out of the box's back is allowed: the quadratus lumborum and the
    back muscles are there.
    """
    known = np.isfinite(centre_x)
    if not known.any():
        return np.zeros_like(candidate)
    _, ny, nx = candidate.shape
    cy = np.where(known, centre_y, 0.0)[:, None, None]
    cx = np.where(known, centre_x, 0.0)[:, None, None]
    dy = (np.arange(ny, dtype=np.float64)[None, :, None] - cy) * spacing[1]
    dx = np.abs(np.arange(nx, dtype=np.float64)[None, None, :] - cx) * spacing[2]
    box = (dx <= PSOAS_REACH_MM) & (dy >= -PSOAS_FRONT_MM) & (dy <= PSOAS_BACK_MM) & known[:, None, None]
    beyond = ((dx > PSOAS_REACH_MM) | (dy < -PSOAS_FRONT_MM)) & (dy <= PSOAS_BACK_MM)  # not through the back
    exits = dilate(beyond, (0, 1, 1)) & box
    near = dilate(column, (0, vox(PSOAS_NEAR_MM, spacing[1]), vox(PSOAS_NEAR_MM, spacing[2])))
    cut = (0, int(PSOAS_CUT_MM / spacing[1]), int(PSOAS_CUT_MM / spacing[2]))  # none on coarse pixels
    rest = opening(candidate & box, cut)
    kept = np.zeros_like(candidate)
    max_px = PSOAS_MAX_CM2 * 100.0 / (spacing[1] * spacing[2])
    for step in range(PSOAS_SPLIT_STEPS + 1):
        r = (0, step, step)
        core = erode(rest, r) if step else rest
        lab, n = label(core, IN_PLANE)
        if n == 0:
            break
        ok = np.zeros(n + 1, dtype=bool)
        ok[lab[near & (lab > 0)]] = True  # index by the labels as they are: np.unique sorts holding the GIL
        ok[lab[(dilate(exits, r) if step else exits) & (lab > 0)]] = False  # erosion backs off the edge
        ok[np.bincount(lab.ravel(), minlength=n + 1) > max_px] = False
        ok[0] = False
        if not ok.any():
            continue
        found = dilate(ok[lab], r) & rest if step else ok[lab]
        kept |= found
        rest &= ~dilate(found, (0, 1, 1))
    lab, n = label(kept, IN_PLANE)
    big = np.bincount(lab.ravel(), minlength=n + 1) * spacing[1] * spacing[2] >= PSOAS_MIN_CM2 * 100.0
    big[0] = False
    return np.asarray(big[lab], dtype=bool)


def segment_compartments(hu: npt.NDArray[np.float32], body: Bool3, trunk: Bool3, lungs: Bool3, bone: Bool3,
                         lumen: Bool3, centre_y: F64, centre_x: F64,
                         spacing: tuple[float, float, float]) -> Compartments:
    """Compartment codes on the coarse canonical grid.

    ``lungs`` holds the lungs and airways, ``bone`` the bone (both certainly
    inside the wall); ``lumen`` contrast-filled vessels; ``centre_y``/``centre_x``
    the vertebral column's centre line per slice (NaN where there is none).
    """
    inner = lungs | bone
    skin = (0, vox(SKIN_MM, spacing[1]), vox(SKIN_MM, spacing[2]))
    deep = erode(trunk, skin)
    solid = ((hu >= MUSCLE_HU[0]) | inner) & deep
    # thin septa in the fat; at coarse pixels they are already averaged away (radius 0: no opening)
    solid = opening(solid, (0, int(SEPTA_MM / spacing[1]), int(SEPTA_MM / spacing[2])))
    solid, arms = _trunk_parts(solid, bone, spacing)
    envelope, hulls = _envelope(solid, trunk, spacing)
    limb = (body & ~trunk) | _arm_regions(trunk & ~envelope, envelope, arms)
    notes: list[str] = []
    if hulls:
        logger.info("muscle wall open in %d slices: convex hull used as the envelope there", hulls)
    lean = (hu >= MUSCLE_HU[0]) & (hu <= MUSCLE_HU[1])
    cls = np.full(hu.shape, _C_OTHER, dtype=np.uint8)
    cls[lean] = _C_LEAN
    cls[(hu >= FAT_HU[0]) & (hu < MUSCLE_HU[0])] = _C_FAT
    cls[hu < FAT_HU[0]] = _C_AIR  # gas, and its partial-volume edge
    cls[lungs] = _C_LUNG
    cls[bone] = _C_BONE
    cls[~envelope] = _C_OUT
    wall, fallbacks = _wall(cls, envelope, centre_y, centre_x, spacing)
    if fallbacks:
        logger.info("muscle wall not traced in %d slices: a %g mm band stands in", fallbacks, FALLBACK_WALL_MM)
    column = _spinal_column(bone, centre_x, spacing)
    if not np.isfinite(centre_x).any():
        notes.append("no vertebral body found: the psoas is not segmented")
    psoas = _psoas(lean & envelope & ~wall & ~column & ~lumen, column, centre_y, centre_x, spacing)
    fat = (hu >= FAT_HU[0]) & (hu < MUSCLE_HU[0])
    muscle_zone = envelope & (wall | (dilate(psoas, (0, 1, 1)) & ~fat)) & ~column  # the fat around it is visceral
    code = np.zeros(hu.shape, dtype=np.uint8)
    code[trunk] = SUBQ
    code[limb] = LIMB
    code[envelope] = CAVITY
    code[muscle_zone] = MUSCLE_ZONE
    return Compartments(code, notes)
