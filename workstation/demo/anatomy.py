"""The synthetic chest: an analytic tissue model in patient millimetres (LPS).

Every structure is an ellipsoid, an elliptic cylinder or a capsule (a segment
with a radius) placed in DICOM patient coordinates: +x towards the patient's
left, +y posterior, +z superior. Structures are painted in anatomical order into
a label map, later ones overwriting earlier ones (the heart carves the cardiac
notch from the left lung, the liver dome shapes the right lung base), and the
label map becomes HU through a lookup table plus seeded noise. Keeping the
labels makes the ground truth exact: truth numbers are counted from the voxels
that were written, never taken from formulas.

The field of view is fixed (384 mm square, 300 mm long) so that every ``shape``
covers the same chest; ``shape`` only sets the resolution. The array is indexed
``[slice, row, column]`` with slices from inferior to superior, rows from
anterior to posterior and columns from the patient's right to left, which is
exactly the grid the project's DICOM loader rebuilds from the written series.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Vec3 = tuple[float, float, float]
Box = tuple[slice, slice, slice]
BoolArray = npt.NDArray[np.bool_]

FOV_MM = 384.0
LENGTH_MM = 300.0
NOISE_SIGMA_HU = 12.0
NOISE_CLIP_SIGMAS = 4.0
HU_MIN, HU_MAX = -1024, 3071
NODULE_MARGIN_MM = 2.0


class Tissue(IntEnum):
    """Labels of the phantom's label map."""

    AIR = 0
    TABLE = 1
    TABLE_FOAM = 2
    SOFT_TISSUE = 3
    SUBCUTANEOUS_FAT = 4
    MUSCLE = 5
    VISCERAL_FAT = 6
    LUNG_RIGHT = 7
    LUNG_LEFT = 8
    EMPHYSEMA = 9
    NODULE = 10
    AIRWAY = 11
    HEART = 12
    AORTA = 13
    PULMONARY_ARTERY = 14
    CORTICAL_BONE = 15
    MARROW = 16
    DISC = 17
    CSF = 18
    RIB = 19
    STERNUM = 20
    LIVER = 21
    SPLEEN = 22


TISSUE_HU: Mapping[Tissue, float] = MappingProxyType({
    Tissue.AIR: -1000.0, Tissue.TABLE: 250.0, Tissue.TABLE_FOAM: -900.0,
    Tissue.SOFT_TISSUE: 40.0, Tissue.SUBCUTANEOUS_FAT: -100.0, Tissue.MUSCLE: 50.0,
    Tissue.VISCERAL_FAT: -90.0, Tissue.LUNG_RIGHT: -850.0, Tissue.LUNG_LEFT: -850.0,
    Tissue.EMPHYSEMA: -970.0, Tissue.NODULE: 30.0, Tissue.AIRWAY: -1000.0,
    Tissue.HEART: 40.0, Tissue.AORTA: 40.0, Tissue.PULMONARY_ARTERY: 40.0,
    Tissue.CORTICAL_BONE: 700.0, Tissue.MARROW: 250.0, Tissue.DISC: 80.0, Tissue.CSF: 10.0,
    Tissue.RIB: 600.0, Tissue.STERNUM: 400.0, Tissue.LIVER: 55.0, Tissue.SPLEEN: 45.0,
})
"""Nominal HU of each tissue before noise (non-contrast: blood equals myocardium)."""


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid: centre and semi-axes in LPS mm."""

    center: Vec3
    radii: Vec3


@dataclass(frozen=True)
class Capsule:
    """All points within ``radius`` mm of the segment ``start``-``end`` (a tube with round ends)."""

    start: Vec3
    end: Vec3
    radius: float


@dataclass(frozen=True)
class Nodule:
    """A solid spherical lung nodule."""

    center: Vec3
    diameter_mm: float
    side: str
    lobe: str


# The chest in cross-section: nested elliptic cylinders centred at (0, BODY_Y) mm.
BODY_Y = -12.0
BODY = (168.0, 118.0)
SUBCUTANEOUS = (166.0, 116.0)
MUSCLE_WALL = (150.0, 104.0)
CAVITY = (138.0, 90.0)
TABLE_Y = (112.0, 115.0, 127.0, 130.0)  # top plate, foam core, bottom plate (y bounds)
TABLE_HALF_WIDTH = 175.0

RIGHT_LUNG = Ellipsoid((-78.0, -2.0, 15.0), (60.0, 80.0, 125.0))
LEFT_LUNG = Ellipsoid((80.0, 0.0, 10.0), (56.0, 78.0, 120.0))
EMPHYSEMA_REGION = Ellipsoid((-85.0, 5.0, 95.0), (42.0, 48.0, 38.0))
LIVER = Ellipsoid((-40.0, -5.0, -150.0), (105.0, 95.0, 90.0))
SPLEEN = Ellipsoid((75.0, 25.0, -150.0), (65.0, 70.0, 75.0))
PERICARDIUM = Ellipsoid((20.0, -38.0, -55.0), (66.0, 54.0, 54.0))
HEART = Ellipsoid((20.0, -38.0, -55.0), (62.0, 50.0, 50.0))
PULMONARY_ARTERIES = (
    Capsule((18.0, -60.0, -15.0), (10.0, -25.0, 8.0), 13.0),
    Capsule((10.0, -25.0, 8.0), (55.0, -5.0, 20.0), 10.0),
    Capsule((10.0, -25.0, 8.0), (-45.0, -18.0, 0.0), 10.0),
)
AORTA = (
    Capsule((12.0, -35.0, -15.0), (12.0, -35.0, 55.0), 15.0),
    Capsule((12.0, -35.0, 55.0), (25.0, -10.0, 70.0), 13.0),
    Capsule((25.0, -10.0, 70.0), (28.0, 22.0, 55.0), 12.5),
    Capsule((28.0, 22.0, 55.0), (28.0, 22.0, -160.0), 12.0),
)
ESOPHAGUS = Capsule((4.0, 20.0, -120.0), (4.0, 20.0, 160.0), 7.0)
CARINA: Vec3 = (0.0, -5.0, 35.0)
AIRWAYS = (
    Capsule(CARINA, (0.0, -5.0, 160.0), 9.0),
    Capsule(CARINA, (-45.0, 0.0, 8.0), 6.5),
    Capsule(CARINA, (45.0, 5.0, 3.0), 6.0),
)
AIRWAY_WALL_MM = 2.0

SPINE_Y = 48.0
VERTEBRA = (22.0, 17.0)
VERTEBRA_CORTEX_MM = 2.5
VERTEBRA_PERIOD_MM, VERTEBRA_HEIGHT_MM, ENDPLATE_MM = 28.0, 22.0, 2.0
CANAL = (0.0, 80.0, 9.0, 8.0)  # cx, cy, a, b
RIB_RING_INNER, RIB_RING_OUTER = (140.0, 92.0), (147.0, 99.0)
RIB_TOP_MM, RIB_SPACING_MM, RIB_COUNT = 135.0, 25.0, 11
RIB_DROP_MM, RIB_HALF_HEIGHT_MM = 50.0, 5.0
RIB_ARC = (0.12, 0.82)  # fraction of a half turn from the posterior midline
STERNUM = (0.0, -109.0, 16.0, 6.0, -60.0, 140.0)  # cx, cy, a, b, z0, z1

NODULES = (
    Nodule((-70.0, -50.0, 65.0), 9.0, "right", "upper"),
    Nodule((-85.0, 40.0, -40.0), 6.0, "right", "lower"),
    Nodule((75.0, -30.0, 60.0), 14.0, "left", "upper"),
    Nodule((85.0, 30.0, -45.0), 22.0, "left", "lower"),
)


@dataclass(frozen=True)
class Grid:
    """A regular axial grid: ``shape`` and ``spacing`` in ``(slice, row, column)`` order.

    ``origin`` is the LPS position (x, y, z) of voxel ``[0, 0, 0]``; index axes run
    along +z, +y and +x.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: Vec3

    @classmethod
    def for_shape(cls, shape: tuple[int, int, int]) -> Grid:
        """The grid of ``shape`` voxels over the fixed chest field of view, centred on 0."""
        if len(shape) != 3 or min(shape) < 16:
            raise ValueError(f"the demo needs a 3-D shape of at least 16 voxels a side, got {shape}")
        ns, nr, nc = (int(n) for n in shape)
        dz, dy, dx = round(LENGTH_MM / ns, 4), round(FOV_MM / nr, 4), round(FOV_MM / nc, 4)
        origin = (round(-(nc - 1) / 2 * dx, 4), round(-(nr - 1) / 2 * dy, 4), round(-(ns - 1) / 2 * dz, 4))
        return cls((ns, nr, nc), (dz, dy, dx), origin)

    def axes(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """LPS coordinates (z of slices, y of rows, x of columns) in mm."""
        return tuple(  # type: ignore[return-value]
            o + np.arange(n) * d
            for o, n, d in zip(self.origin[::-1], self.shape, self.spacing, strict=True)
        )

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        """Index ``(slice, row, column, 1)`` -> LPS mm."""
        aff = np.zeros((4, 4))
        aff[2, 0], aff[1, 1], aff[0, 2] = self.spacing
        aff[:3, 3] = self.origin
        aff[3, 3] = 1.0
        return aff

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(np.prod(self.spacing)) / 1000.0


def _span(coords: npt.NDArray[np.float64], lo: float, hi: float) -> slice:
    return slice(int(np.searchsorted(coords, lo, "left")), int(np.searchsorted(coords, hi, "right")))


class _Painter:
    """Paints shapes into a label map, each evaluated only inside its bounding box."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.z, self.y, self.x = grid.axes()
        self.labels = np.zeros(grid.shape, dtype=np.uint8)

    def box(self, lo: Vec3, hi: Vec3) -> Box:
        return (_span(self.z, lo[2], hi[2]), _span(self.y, lo[1], hi[1]), _span(self.x, lo[0], hi[0]))

    def ellipse(self, cx: float, cy: float, a: float, b: float) -> BoolArray:
        """A 2-D (row, column) mask of an axial ellipse."""
        return ((self.x[None, :] - cx) / a) ** 2 + ((self.y[:, None] - cy) / b) ** 2 <= 1.0

    def ellipsoid(self, e: Ellipsoid, grow: float = 0.0) -> tuple[Box, BoolArray]:
        r = tuple(v + grow for v in e.radii)
        box = self.box(
            (e.center[0] - r[0], e.center[1] - r[1], e.center[2] - r[2]),
            (e.center[0] + r[0], e.center[1] + r[1], e.center[2] + r[2]),
        )
        dz = ((self.z[box[0]] - e.center[2]) / r[2]) ** 2
        dy = ((self.y[box[1]] - e.center[1]) / r[1]) ** 2
        dx = ((self.x[box[2]] - e.center[0]) / r[0]) ** 2
        return box, dz[:, None, None] + dy[None, :, None] + dx[None, None, :] <= 1.0

    def capsule(self, c: Capsule, grow: float = 0.0) -> tuple[Box, BoolArray]:
        r = c.radius + grow
        a, b = np.asarray(c.start), np.asarray(c.end)
        lo, hi = np.minimum(a, b) - r, np.maximum(a, b) + r
        box = self.box((float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2])))
        px = self.x[box[2]][None, None, :] - a[0]
        py = self.y[box[1]][None, :, None] - a[1]
        pz = self.z[box[0]][:, None, None] - a[2]
        d = b - a
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / float(d @ d), 0.0, 1.0)
        dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
        return box, dist2 <= r * r

    def paint(self, box: Box, mask: BoolArray, tissue: Tissue, only: tuple[Tissue, ...] = ()) -> None:
        view = self.labels[box]
        if only:
            mask = mask & np.isin(view, [int(t) for t in only])
        view[np.broadcast_to(mask, view.shape)] = tissue

    def paint_columns(self, mask2d: BoolArray, tissue: Tissue, z0: float = -1e9, z1: float = 1e9) -> None:
        """Paint an axial 2-D mask on every slice between ``z0`` and ``z1``."""
        self.labels[_span(self.z, z0, z1)][:, mask2d] = tissue

    def shape(self, s: Ellipsoid | Capsule, tissue: Tissue, grow: float = 0.0,
              within: BoolArray | None = None, only: tuple[Tissue, ...] = ()) -> None:
        """Paint an ellipsoid or capsule, optionally clipped to an axial 2-D mask."""
        box, mask = self.ellipsoid(s, grow) if isinstance(s, Ellipsoid) else self.capsule(s, grow)
        if within is not None:
            mask = mask & within[box[1], box[2]][None]
        self.paint(box, mask, tissue, only)


def _paint_wall_and_table(p: _Painter) -> BoolArray:
    """Table, skin, subcutaneous fat, muscle wall and the visceral fat of the cavity."""
    y0, y1, y2, y3 = TABLE_Y
    across = np.abs(p.x)[None, :] <= TABLE_HALF_WIDTH
    rows = p.y[:, None]
    p.paint_columns(across & (rows >= y0) & (rows <= y3), Tissue.TABLE)
    p.paint_columns(across & (rows > y1) & (rows < y2), Tissue.TABLE_FOAM)
    p.paint_columns(p.ellipse(0.0, BODY_Y, *BODY), Tissue.SOFT_TISSUE)
    p.paint_columns(p.ellipse(0.0, BODY_Y, *SUBCUTANEOUS), Tissue.SUBCUTANEOUS_FAT)
    p.paint_columns(p.ellipse(0.0, BODY_Y, *MUSCLE_WALL), Tissue.MUSCLE)
    for side in (-1.0, 1.0):  # paraspinal muscles
        p.paint_columns(p.ellipse(30.0 * side, 86.0, 22.0, 16.0), Tissue.MUSCLE)
    cavity = p.ellipse(0.0, BODY_Y, *CAVITY)
    p.paint_columns(cavity, Tissue.VISCERAL_FAT)
    return cavity


def _paint_spine(p: _Painter) -> None:
    """Vertebral bodies (cortex, marrow, endplates) with discs, posterior elements and canal."""
    box = p.box((-40.0, SPINE_Y - VERTEBRA[1] - 1, -1e9), (40.0, 104.0, 1e9))
    x, y = p.x[box[2]][None, :], p.y[box[1]][:, None]

    def ell(cx: float, cy: float, a: float, b: float) -> BoolArray:
        return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0

    def rect(x0: float, x1: float, y0: float, y1: float) -> BoolArray:
        return (np.abs(x) >= x0) & (np.abs(x) <= x1) & (y >= y0) & (y <= y1)

    body = ell(0.0, SPINE_Y, *VERTEBRA)
    marrow = ell(0.0, SPINE_Y, VERTEBRA[0] - VERTEBRA_CORTEX_MM, VERTEBRA[1] - VERTEBRA_CORTEX_MM)
    cx, cy, a, b = CANAL
    canal = ell(cx, cy, a, b)
    arch = (ell(cx, cy, a + 6.0, b + 6.0) | rect(0.0, 4.0, cy, 100.0) | rect(12.0, 34.0, 72.0, 82.0)
            | rect(6.0, 13.0, SPINE_Y, cy))
    phase = np.mod(p.z - p.z[0], VERTEBRA_PERIOD_MM)[:, None, None]
    in_body = phase < VERTEBRA_HEIGHT_MM
    endplate = in_body & ((phase < ENDPLATE_MM) | (phase > VERTEBRA_HEIGHT_MM - ENDPLATE_MM))
    posterior = (phase >= 3.0) & (phase <= VERTEBRA_HEIGHT_MM - 3.0)
    view = p.labels[box]
    view[~in_body & body] = Tissue.DISC
    view[in_body & body] = Tissue.CORTICAL_BONE
    view[in_body & ~endplate & marrow] = Tissue.MARROW
    view[posterior & arch & ~canal] = Tissue.CORTICAL_BONE
    view[np.broadcast_to(canal, view.shape)] = Tissue.CSF


def _paint_ribs(p: _Painter) -> None:
    """Rib arcs in the chest wall, each sloping down from back to front as real ribs do."""
    ring = p.ellipse(0.0, BODY_Y, *RIB_RING_OUTER) & ~p.ellipse(0.0, BODY_Y, *RIB_RING_INNER)
    rows, cols = np.nonzero(ring)
    turn = np.arctan2(np.abs(p.x[cols]), p.y[rows] - BODY_Y) / np.pi  # 0 posterior, 1 anterior
    keep = (turn >= RIB_ARC[0]) & (turn <= RIB_ARC[1])
    rows, cols, turn = rows[keep], cols[keep], turn[keep]
    # Height of a point on rib k: RIB_TOP - k * spacing - drop * turn; undo the slope, find k.
    u = RIB_TOP_MM - (p.z[:, None] + RIB_DROP_MM * turn[None, :])
    k = np.rint(u / RIB_SPACING_MM)
    hit = (np.abs(u - k * RIB_SPACING_MM) <= RIB_HALF_HEIGHT_MM) & (k >= 0) & (k < RIB_COUNT)
    ks, ps = np.nonzero(hit)
    p.labels[ks, rows[ps], cols[ps]] = Tissue.RIB
    cx, cy, a, b, z0, z1 = STERNUM
    p.paint_columns(p.ellipse(cx, cy, a, b), Tissue.STERNUM, z0, z1)


def _paint_nodules(p: _Painter, nodules: tuple[Nodule, ...]) -> None:
    """Place the nodules, refusing any that would not lie wholly in normal lung."""
    for n in nodules:
        lung = Tissue.LUNG_RIGHT if n.side == "right" else Tissue.LUNG_LEFT
        sphere = Ellipsoid(n.center, (n.diameter_mm / 2,) * 3)
        box, around = p.ellipsoid(sphere, grow=NODULE_MARGIN_MM)
        if around.sum() == 0 or np.any(p.labels[box][around] != lung):
            raise ValueError(f"nodule at {n.center} ({n.diameter_mm} mm) is not inside the {n.side} lung")
        p.shape(sphere, Tissue.NODULE)


def build_labels(grid: Grid, nodules: tuple[Nodule, ...] = NODULES) -> npt.NDArray[np.uint8]:
    """The phantom's label map (values of ``Tissue``) on ``grid``."""
    p = _Painter(grid)
    cavity = _paint_wall_and_table(p)
    p.shape(RIGHT_LUNG, Tissue.LUNG_RIGHT, within=cavity)
    p.shape(LEFT_LUNG, Tissue.LUNG_LEFT, within=cavity)
    p.shape(EMPHYSEMA_REGION, Tissue.EMPHYSEMA, only=(Tissue.LUNG_RIGHT,))
    p.shape(LIVER, Tissue.LIVER, within=cavity)
    p.shape(SPLEEN, Tissue.SPLEEN, within=cavity)
    p.shape(PERICARDIUM, Tissue.VISCERAL_FAT)
    p.shape(HEART, Tissue.HEART)
    for c in PULMONARY_ARTERIES:
        p.shape(c, Tissue.PULMONARY_ARTERY)
    for c in AORTA:
        p.shape(c, Tissue.AORTA)
    p.shape(ESOPHAGUS, Tissue.SOFT_TISSUE)
    for c in AIRWAYS:
        p.shape(c, Tissue.SOFT_TISSUE, grow=AIRWAY_WALL_MM)
    for c in AIRWAYS:
        p.shape(c, Tissue.AIRWAY)
    _paint_spine(p)
    _paint_ribs(p)
    _paint_nodules(p, nodules)
    return p.labels


def labels_to_hu(labels: npt.NDArray[np.uint8], seed: int,
                 sigma: float = NOISE_SIGMA_HU) -> npt.NDArray[np.int16]:
    """Nominal HU per label plus seeded Gaussian noise, clipped at ±4 sigma.

    Clipping the noise keeps the tissue classes honest: normal lung (-850 HU)
    never falls below -950 HU, so %LAA-950 counts only the emphysema region.
    """
    lut = np.zeros(256, dtype=np.float32)
    for tissue, hu in TISSUE_HU.items():
        lut[tissue] = hu
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(labels.shape, dtype=np.float32)
    np.clip(noise, -NOISE_CLIP_SIGMAS, NOISE_CLIP_SIGMAS, out=noise)
    noise *= np.float32(sigma)
    noise += lut[labels]
    np.rint(noise, out=noise)
    np.clip(noise, HU_MIN, HU_MAX, out=noise)
    return noise.astype(np.int16)


@dataclass(frozen=True)
class Phantom:
    """The generated chest in memory: grid, label map, HU volume and the nodules placed."""

    grid: Grid
    labels: npt.NDArray[np.uint8]
    hu: npt.NDArray[np.int16]
    seed: int
    nodules: tuple[Nodule, ...] = NODULES


def build_phantom(shape: tuple[int, int, int] = (120, 256, 256), seed: int = 0) -> Phantom:
    """Build the chest phantom in memory (the DICOM writer stores exactly ``hu``)."""
    grid = Grid.for_shape(shape)
    labels = build_labels(grid)
    return Phantom(grid, labels, labels_to_hu(labels, seed), seed)
