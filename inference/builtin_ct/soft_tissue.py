"""Body compartments for muscle and fat: subcutaneous, muscle zone, cavity, limbs.

HU tells fat (-190..-30) from lean tissue (-29..150) but not skeletal muscle
from liver or bowel, nor subcutaneous from visceral fat; geometry does:

- The *envelope* is what the muscle/bone wall encloses in each axial slice:
  lean tissue, bone and lung deeper than the skin, cleaned of thin septa in the
  subcutaneous fat (opening, and only the slice's main parts kept), closed
  across small gaps in the wall and hole-filled; where a gap is too wide to
  close, the slice's convex hull stands in. Fat outside the envelope (and
  inside the skin) is subcutaneous; fat inside it is visceral (intermuscular
  fat inside the wall counts as visceral: a known simplification of
  threshold methods).
- Lean tissue counts as muscle in the *muscle zone*: a band ``WALL_MM`` deep
  under the envelope's surface (abdominal and chest wall muscles) plus the
  paravertebral region behind the centre of the vertebral bodies (erector
  spinae, psoas, quadratus lumborum; a trapezoid widening backwards), less the vertebral column itself (its
  bone smeared over the discs and hole-filled: discs and spinal canal). Lean
  tissue deeper in the cavity is organ ("body"). The band depth is a fixed
  typical wall thickness, so organs that touch a thin wall lend it a rim
  (liver and spleen about 10 % of their voxels on the contrast CT test) and a
  thick wall loses its deepest part; kidneys behind the vertebral centre line
  partly count as muscle.
- Regions of the body outside the trunk (arms beside the chest) are limbs:
  their fat is subcutaneous, their lean tissue muscle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.builtin_ct.grid import vox
from inference.builtin_ct.morph import IN_PLANE, closing, dilate, erode, erode_disc_2d, fill_holes_2d, label, opening
from inference.builtin_ct.table import MUSCLE_HU

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]

OUT, SUBQ, MUSCLE_ZONE, CAVITY, LIMB = 0, 1, 2, 3, 4
SKIN_MM = 3.0
SEPTA_MM = 2.0
GAP_MM = 8.0
HULL_MIN_FILL = 0.9
MAIN_PART_SHARE = 0.05
WALL_MM = 15.0
PARASPINAL_HALF_WIDTH_MM = 60.0
PARASPINAL_FRONT_HALF_WIDTH_MM = 40.0
PARASPINAL_FLARE = 0.6  # mm of half-width gained per mm behind the vertebral body's centre
SPINE_HALF_WIDTH_MM = 35.0
DISC_MM = 10.0


@dataclass
class Compartments:
    """Coarse compartment codes (``OUT``..``LIMB``) and the spine position used for the muscle zone."""

    code: npt.NDArray[np.uint8]
    spine_x: float | None
    notes: list[str]


def _paraspinal(vertebral: Bool3, spacing: tuple[float, float, float]) -> tuple[Bool3, float | None]:
    """Voxels behind the centre of the vertebral bodies and within reach of the spine's midline."""
    zone = np.zeros(vertebral.shape, dtype=bool)
    pts = np.nonzero(vertebral)
    if pts[0].size == 0:
        return zone, None
    x_s = float(np.median(pts[2]))
    y_all = float(np.median(pts[1]))
    # per-slice centre of the vertebral body, carried across discs from the overall median
    counts = np.bincount(pts[0], minlength=vertebral.shape[0])
    sums = np.bincount(pts[0], weights=pts[1], minlength=vertebral.shape[0])
    y_c = np.where(counts > 0, sums / np.maximum(counts, 1), y_all)
    # a trapezoid, not a box: psoas hugs the vertebral body, the erector spinae fan out behind it; the
    # narrow front keeps the kidneys and the back of the liver (beside the body, in front of the
    # transverse processes) out of the muscle
    depth_mm = (np.arange(vertebral.shape[1])[None, :] - y_c[:, None]) * spacing[1]
    half_mm = np.minimum(PARASPINAL_FRONT_HALF_WIDTH_MM + PARASPINAL_FLARE * depth_mm, PARASPINAL_HALF_WIDTH_MM)
    lateral_mm = np.abs(np.arange(vertebral.shape[2]) - x_s) * spacing[2]
    zone[:] = (depth_mm >= 0)[:, :, None] & (lateral_mm[None, None, :] <= half_mm[:, :, None])
    return zone, x_s


def _spinal_column(bone: Bool3, x_s: float, spacing: tuple[float, float, float]) -> Bool3:
    """The vertebral column's footprint: its bone near the midline, smeared over discs, hole-filled (canal)."""
    near = np.zeros_like(bone)
    cols = np.abs(np.arange(bone.shape[2]) - x_s) * spacing[2] <= SPINE_HALF_WIDTH_MM
    near[:, :, cols] = bone[:, :, cols]
    smear = dilate(near, (vox(DISC_MM, spacing[0]), 0, 0))
    return fill_holes_2d(closing(smear, (0, vox(3.0, spacing[1]), vox(3.0, spacing[2]))))


def _main_parts(solid: Bool3) -> Bool3:
    """Per slice, the 2-D components of at least ``MAIN_PART_SHARE`` of the largest one.

    Drops strands in the subcutaneous fat but keeps a wall or bowel region that
    fat separates from the rest in this slice.
    """
    lab, n = label(solid, IN_PLANE)
    if n == 0:
        return solid
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    last = lab.reshape(solid.shape[0], -1).max(axis=1)
    keep = np.zeros(n + 1, dtype=bool)
    previous = 0
    for z in np.nonzero(last)[0]:  # the labels of slice z are previous+1..last[z] (raster order)
        ids = np.arange(previous + 1, int(last[z]) + 1)
        keep[ids] = counts[ids] >= MAIN_PART_SHARE * counts[ids].max()
        previous = int(last[z])
    return np.asarray(keep[lab], dtype=bool)


def _hull_2d(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The convex hull of a 2-D mask, rasterised (pixel centres as the hull's points)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    pts = np.argwhere(mask)
    if len(pts) < 3:
        return mask.copy()
    try:
        hull = ConvexHull(pts[:, ::-1].astype(np.float64))
    except QhullError:  # all points on a line
        return mask.copy()
    img = Image.new("L", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(img).polygon([(float(x), float(y)) for x, y in hull.points[hull.vertices]], fill=1, outline=1)
    return np.asarray(img, dtype=bool) | mask


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


def segment_compartments(hu: npt.NDArray[np.float32], body: Bool3, trunk: Bool3, inner: Bool3, bone: Bool3,
                         vertebral: Bool3, spacing: tuple[float, float, float]) -> Compartments:
    """Compartment codes on the coarse canonical grid.

    ``inner`` holds what is certainly inside the wall (lungs, airways, bone);
    ``bone`` the bone; ``vertebral`` the vertebral bodies' marrow.
    """
    skin = (0, vox(SKIN_MM, spacing[1]), vox(SKIN_MM, spacing[2]))
    deep = erode(trunk, skin)
    solid = ((hu >= MUSCLE_HU[0]) | inner) & deep
    # thin septa in the fat; at coarse pixels they are already averaged away (radius 0: no opening)
    solid = opening(solid, (0, int(SEPTA_MM / spacing[1]), int(SEPTA_MM / spacing[2])))
    solid = _main_parts(solid)
    envelope, hulls = _envelope(solid, trunk, spacing)
    steps = max(1, round(WALL_MM / min(spacing[1], spacing[2])))
    band = envelope & ~erode_disc_2d(envelope, steps)
    paraspinal, spine_x = _paraspinal(vertebral, spacing)
    notes: list[str] = []
    if hulls:
        logger.info("muscle wall open in %d slices: convex hull used as the envelope there", hulls)
    if spine_x is None:
        notes.append("no vertebral body found: muscle is only the wall band, paravertebral muscle is missed")
    column = _spinal_column(bone, spine_x, spacing) if spine_x is not None else np.zeros_like(bone)
    muscle_zone = envelope & (band | (paraspinal & ~column))
    code = np.zeros(hu.shape, dtype=np.uint8)
    code[body & ~trunk] = LIMB
    code[trunk] = SUBQ
    code[envelope] = CAVITY
    code[muscle_zone] = MUSCLE_ZONE
    code[column & envelope & ~band] = CAVITY  # spinal canal and discs are not muscle
    return Compartments(code, spine_x, notes)
