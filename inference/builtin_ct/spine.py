"""The vertebral column: its centre line, the vertebral bodies, and their levels (T12, L1..L5).

Body composition is compared with reference values at a named vertebral level
(L3 by convention), so the level must come from the anatomy, never from a
slice position. The rules, on the coarse canonical grid:

1. *Centre line*: per axial slice, the centroid of the vertebral-body marrow
   (``bone._vertebral``), carried across the discs by linear interpolation and
   held beyond the last marrow found while bone stays around it.
2. *Discs and vertebrae*: along the centre line, the median HU of the body's
   core (``CORE_MM`` around the line) dips at every disc (nucleus 70-110 HU,
   trabecular bone above; the endplates beside a disc are bright, so the dip
   is measured against the median of ``BODY_WINDOW_MM`` around it). Of the
   dips, the chain spaced like a spine (``DISC_GAP_MM``, successive gaps
   within ``DISC_GAP_RATIO``) with the greatest total depth is kept: a dip
   inside a body (a vein, fatty marrow) breaks that rhythm. A vertebra lies
   between two discs; one cut by the scan keeps the disc it has and borrows
   its neighbour's height for its middle, and is measured on only when at
   least ``MIN_SEEN_FRACTION`` of it is in the scan. Where the discs do not
   show (osteoporotic bodies as dark as discs, thick slices) no chain is found
   and no level is named.
3. *Rib-bearing*: bone outside the column (more than ``ZONE_HALF_WIDTH_MM``
   from the centre line) that comes within ``TOUCH_MM`` of it and reaches at
   least ``RIB_REACH_MM`` from the midline (``CUT_RIB_REACH_MM`` when the
   scan cuts it off) is a rib (or, below the lumbar spine, the iliac bone at
   the sacroiliac joints); lumbar transverse processes end well before that
   reach. A vertebra bears it when it meets the column over at least
   ``MIN_CONTACT_HEIGHT_MM`` of the vertebra's height. Bone without its
   partial-volume rim is used, so that neighbouring bones stay apart.
4. *Counting*: vertebrae bearing ribs above rib-free ones: the lowest
   rib-bearing one is T12, the rib-free ones below are L1, L2, ... (12 rib
   pairs assumed). Rib-free vertebrae directly above a pelvis-bearing one
   count up from the sacrum: L5, L4, ... When both ends are in the scan the
   two counts must agree (five rib-free vertebrae), else the anatomy is
   transitional and no level is named. A vertebra mostly outside the scan is
   not judged rib-free (its rib heads may be outside), only named by the count.
5. *Level*: L3 when it is measurable, else the nearest of L2, L4, L1, L5,
   T12 (``PREFERRED_LEVELS``), at the middle of its body.

Known limits: 11 or 13 rib pairs, a hypoplastic 12th rib shorter than the
reach, or a lumbar transverse process merged with the 12th rib at coarse
resolution shift the count by one; the sacrum is only recognised by the
iliac bone beside it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from inference.builtin_ct.morph import FULL, label

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]
F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

MIN_BODY_AREA_MM2 = 100.0
PRESENCE_MM = 15.0
PRESENCE_FRACTION = 0.3
CORE_MM = 8.0
DISC_DEPTH_HU = 30.0
BODY_WINDOW_MM = 40.0
DISC_MAX_HU = 160.0
DISC_GAP_MM = (18.0, 52.0)
DISC_GAP_RATIO = 1.4
MIN_SEEN_FRACTION = 0.75
ZONE_HALF_WIDTH_MM = 30.0
ZONE_FRONT_MM = 25.0
ZONE_BACK_MM = 80.0
TOUCH_MM = 10.0
RIB_REACH_MM = 65.0
CUT_RIB_REACH_MM = 45.0
MIN_CONTACT_MM2 = 10.0
MIN_CONTACT_HEIGHT_MM = 6.0
LUMBAR_COUNT = 5
PREFERRED_LEVELS = ("L3", "L2", "L4", "L1", "L5", "T12")


@dataclass
class Vertebra:
    """One vertebra between two discs: coarse slices ``lo <= z <= hi`` (inferior to superior, disc centres).

    A vertebra cut by the scan (or where the column is lost) has the seen end
    there; ``mid`` is then estimated from the disc that is seen and the
    neighbouring vertebra's height.
    """

    lo: float
    hi: float
    mid: float
    cut_low: bool
    cut_high: bool
    measurable: bool
    ribs: bool = False
    name: str = ""

    @property
    def cut(self) -> bool:
        return self.cut_low or self.cut_high


@dataclass
class Spine:
    """Centre line (coarse pixel units, NaN where the column is not followed), vertebrae and their names."""

    centre_y: F64
    centre_x: F64
    vertebrae: list[Vertebra] = field(default_factory=list)
    counted_from: str = ""
    problem: str = ""

    def level(self) -> tuple[Vertebra | None, str]:
        """The body-composition level (L3 first, then the nearest measurable one) and why not L3.

        Without a level the text says why none could be named; with one other
        than L3 it says why L3 was not used ('' at L3).
        """
        if self.problem:
            return None, self.problem
        usable = {v.name: v for v in self.vertebrae if v.name and v.measurable}
        chosen = next((usable[name] for name in PREFERRED_LEVELS if name in usable), None)
        if chosen is None:
            return None, "neither L1-L5 nor T12 is wholly in the scan range"
        if chosen.name == "L3":
            return chosen, ""
        named = [v.name for v in self.vertebrae]
        if "L3" in named:
            return chosen, "L3 is cut by the end of the scan"
        lumbar = [int(n[1]) for n in named if n.startswith("L")]
        if lumbar and max(lumbar) < 3:
            return chosen, "L3 is below the scanned range"
        if lumbar and min(lumbar) > 3:
            return chosen, "L3 is above the scanned range"
        return chosen, "L3 is not in the scanned range"

    def summary(self) -> str:
        """The vertebrae found, bottom to top, for a note."""
        parts = []
        for v in self.vertebrae:
            text = v.name or "?"
            text += " (ribs)" if v.ribs else ""
            text += " (cut by the scan)" if v.cut else ""
            parts.append(text)
        return ", ".join(parts)


def _centre_line(vertebral: Bool3, bone: Bool3, spacing: tuple[float, float, float]) -> tuple[F64, F64]:
    """Per-slice centroid of the body marrow, interpolated over the discs and held beyond while bone is there."""
    nz = vertebral.shape[0]
    cy = np.full(nz, np.nan)
    cx = np.full(nz, np.nan)
    zs, ys, xs = np.nonzero(vertebral)
    if not zs.size:
        return cy, cx
    n = np.bincount(zs, minlength=nz).astype(np.float64)
    ok = n * spacing[1] * spacing[2] >= MIN_BODY_AREA_MM2
    if not ok.any():
        return cy, cx
    good = np.nonzero(ok)[0]
    cy[good] = np.bincount(zs, weights=ys, minlength=nz)[good] / n[good]
    cx[good] = np.bincount(zs, weights=xs, minlength=nz)[good] / n[good]
    span = np.arange(good[0], good[-1] + 1)
    cy[span] = np.interp(span, good, cy[good])
    cx[span] = np.interp(span, good, cx[good])
    # beyond the last slices with marrow found, follow the column while bone stays around the centre
    for step, start in ((-1, good[0]), (1, good[-1])):
        z = start + step
        while 0 <= z < nz:
            disc = _disc(bone.shape[1:], cy[z - step], cx[z - step], PRESENCE_MM, spacing)
            if bone[z][disc].mean() < PRESENCE_FRACTION:
                break
            cy[z], cx[z] = cy[z - step], cx[z - step]
            z += step
    return cy, cx


def _disc(shape: tuple[int, ...], cy: float, cx: float, radius_mm: float,
          spacing: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    """A 2-D disc mask of ``radius_mm`` around (``cy``, ``cx``) pixels."""
    yy = (np.arange(shape[0]) - cy) * spacing[1]
    xx = (np.arange(shape[1]) - cx) * spacing[2]
    return np.asarray(yy[:, None] ** 2 + xx[None, :] ** 2 <= radius_mm ** 2)


def _core_profile(hu: F32, cy: F64, cx: F64, spacing: tuple[float, float, float]) -> F64:
    """Median HU of the vertebral body's core in each slice (NaN where the column is not followed)."""
    out = np.full(hu.shape[0], np.nan)
    r = max(CORE_MM, 1.5 * max(spacing[1], spacing[2]))
    for z in np.nonzero(np.isfinite(cy))[0]:
        out[z] = float(np.median(hu[z][_disc(hu.shape[1:], cy[z], cx[z], r, spacing)]))
    return out


def _disc_chain(profile: F64, spacing_z: float) -> list[float]:
    """Disc positions (slice index): dips of the body-core HU, spaced like a vertebral column.

    Candidates are local minima at least ``DISC_DEPTH_HU`` below the median of
    the ``BODY_WINDOW_MM`` around them and at most ``DISC_MAX_HU``; of these, the chain with the
    greatest total prominence whose successive gaps are ``DISC_GAP_MM`` apart
    and change by at most ``DISC_GAP_RATIO`` from one to the next is kept. A
    dip inside a body (a vein, a Schmorl node, fatty marrow) breaks that rhythm
    and is left out.
    """
    finite = np.nonzero(np.isfinite(profile))[0]
    if finite.size < 3:
        return []
    z0 = int(finite[0])
    seg = profile[z0:int(finite[-1]) + 1]
    seg = np.where(np.isfinite(seg), seg, np.nanmedian(seg))
    # depth below the bodies around (their median, so the bright endplates beside a disc do not count)
    window = max(3, 2 * round(BODY_WINDOW_MM / spacing_z / 2) + 1)
    depth = ndi.median_filter(seg, size=window, mode="nearest") - seg
    inner = np.arange(1, seg.size - 1)
    is_min = (seg[inner] <= seg[inner - 1]) & (seg[inner] < seg[inner + 1])
    peaks = inner[is_min & (depth[inner] >= DISC_DEPTH_HU) & (seg[inner] <= DISC_MAX_HU)]
    pos = (peaks + z0).astype(np.float64)
    score = np.minimum(depth[peaks], 300.0)
    n = pos.size
    if n == 0:
        return []
    gap = (pos[None, :] - pos[:, None]) * spacing_z  # gap[i, j]: from i up to j
    ok = (gap >= DISC_GAP_MM[0]) & (gap <= DISC_GAP_MM[1])
    # best[i, j]: best chain ending ... -> i -> j; single discs and pairs start chains
    best = np.full((n, n), -np.inf)
    back = np.full((n, n), -1, dtype=np.int64)
    for j in range(n):
        for i in range(j):
            if not ok[i, j]:
                continue
            best[i, j] = score[i] + score[j]
            for h in range(i):
                if ok[h, i] and np.isfinite(best[h, i]):
                    ratio = gap[i, j] / gap[h, i]
                    if 1.0 / DISC_GAP_RATIO <= ratio <= DISC_GAP_RATIO and best[h, i] + score[j] > best[i, j]:
                        best[i, j] = best[h, i] + score[j]
                        back[i, j] = h
    if not np.isfinite(best).any():
        return [float(pos[int(np.argmax(score))])]
    i, j = (int(v) for v in np.unravel_index(int(np.argmax(best)), best.shape))
    chain = [j, i]
    while back[i, j] >= 0:
        i, j = int(back[i, j]), i
        chain.append(i)
    return sorted(float(pos[k]) for k in chain)


def _attachments(bone: Bool3, cy: F64, cx: F64, spacing: tuple[float, float, float]) -> F64:
    """Per slice, the area (mm2) where long lateral bone (ribs, iliac bone) meets the vertebral column."""
    nz, ny, nx = bone.shape
    out = np.zeros(nz)
    known = np.isfinite(cx)
    if not known.any():
        return out
    yy = np.arange(ny, dtype=np.float64)[None, :, None]
    xx = np.arange(nx, dtype=np.float64)[None, None, :]
    dx = np.abs(xx - np.where(known, cx, 0.0)[:, None, None]) * spacing[2]
    dy = (yy - np.where(known, cy, 0.0)[:, None, None]) * spacing[1]
    zone = (dx <= ZONE_HALF_WIDTH_MM) & (dy >= -ZONE_FRONT_MM) & (dy <= ZONE_BACK_MM) & known[:, None, None]
    ring = ((dx <= ZONE_HALF_WIDTH_MM + TOUCH_MM) & (dy >= -ZONE_FRONT_MM - TOUCH_MM)
            & (dy <= ZONE_BACK_MM + TOUCH_MM) & known[:, None, None] & ~zone)
    lateral = bone & ~zone & known[:, None, None]
    lab, n = label(lateral, FULL)
    if n == 0:
        return out
    reach = np.zeros(n + 1)
    where = np.nonzero(lab)
    np.maximum.at(reach, lab[where], dx[where[0], 0, where[2]])
    at_end = np.zeros(n + 1, dtype=bool)  # cut by the scan: its reach is only a lower bound
    at_end[lab[0]] = True  # no np.unique: it sorts holding the GIL (a GUI frame late), indexing does not
    at_end[lab[-1]] = True
    long_bone = (reach >= RIB_REACH_MM) | (at_end & (reach >= CUT_RIB_REACH_MM))
    long_bone[0] = False
    contact = long_bone[lab] & ring
    return np.asarray(contact.reshape(nz, -1).sum(axis=1) * (spacing[1] * spacing[2]), dtype=np.float64)


def _name(vertebrae: list[Vertebra], judged: list[bool | None]) -> tuple[str, str]:
    """Name the vertebrae (bottom to top) in place; returns (what the count started from, problem or '')."""
    if not vertebrae:
        return "", "no vertebral bodies found"
    known = [i for i, s in enumerate(judged) if s is not None]
    if not known:
        return "", "the only vertebrae seen are cut by the scan"
    lo, hi = known[0], known[-1]
    if any(s is None for s in judged[lo:hi + 1]):
        return "", "the vertebral column could not be followed through the scan"
    runs: list[tuple[bool, list[int]]] = []  # top to bottom
    for i in range(hi, lo - 1, -1):
        s = bool(judged[i])
        if runs and runs[-1][0] == s:
            runs[-1][1].append(i)
        else:
            runs.append((s, [i]))
    pattern = [s for s, _ in runs]
    if pattern == [True]:
        return "", "no rib-free (lumbar) vertebra in the scan range, so T12 cannot be told from a higher vertebra"
    if pattern == [False]:
        return "", "no rib-bearing vertebra (T12) or sacrum in the scan range to count the lumbar vertebrae from"
    if pattern == [True, False, True] and len(runs[1][1]) != LUMBAR_COUNT:
        return "", (f"{len(runs[1][1])} rib-free vertebrae between the lowest ribs and the sacrum (expected "
                    f"{LUMBAR_COUNT}: a transitional vertebra?), so the lumbar count is ambiguous")
    if pattern not in ([True, False], [False, True], [True, False, True]):
        return "", "ribs and pelvic bone beside the vertebrae in an unexpected pattern"
    if pattern[0]:  # ribs on top: the lowest rib-bearing vertebra is T12; count down (L1..) and up (T11..)
        t12 = runs[0][1][-1]
        s1 = runs[2][1][0] if pattern == [True, False, True] else -1
        for k, i in enumerate(range(t12, len(vertebrae))):
            vertebrae[i].name = f"T{12 - k}" if k < 12 else ""
        for k, i in enumerate(range(t12 - 1, s1, -1)):
            vertebrae[i].name = f"L{k + 1}" if k < LUMBAR_COUNT else ""
        if s1 >= 0:
            vertebrae[s1].name = "S1"
        return "T12", ""
    # rib-free vertebrae above the pelvis: the pelvis-bearing one is S1; count up (L5, L4, ...)
    s1 = runs[1][1][0]
    vertebrae[s1].name = "S1"
    for k, i in enumerate(range(s1 + 1, len(vertebrae))):
        vertebrae[i].name = f"L{LUMBAR_COUNT - k}" if k < LUMBAR_COUNT else ""
    return "sacrum", ""


def _vertebrae(discs: list[float], first: int, last: int) -> list[Vertebra]:
    """Vertebrae between the discs, plus the cut ones between the column's ends and the outer discs."""
    if not discs:
        return []
    gaps = np.diff(discs)
    out: list[Vertebra] = []
    if discs[0] - first >= 1:
        period = float(gaps[0]) if gaps.size else 0.0
        mid = discs[0] - period / 2 if period else (first + discs[0]) / 2
        seen = (discs[0] - first) / period if period else 0.0
        out.append(Vertebra(float(first), discs[0], mid, True, False, period > 0 and seen >= MIN_SEEN_FRACTION))
    for a, b in itertools.pairwise(discs):
        out.append(Vertebra(a, b, (a + b) / 2, False, False, True))
    if last - discs[-1] >= 1:
        period = float(gaps[-1]) if gaps.size else 0.0
        mid = discs[-1] + period / 2 if period else (last + discs[-1]) / 2
        seen = (last - discs[-1]) / period if period else 0.0
        out.append(Vertebra(discs[-1], float(last), mid, False, True, period > 0 and seen >= MIN_SEEN_FRACTION))
    return out


def find_spine(hu: F32, vertebral: Bool3, bone: Bool3, spacing: tuple[float, float, float]) -> Spine:
    """Centre line, vertebrae and their names on the coarse grid.

    ``vertebral`` is the vertebral-body marrow (``BoneMasks.vertebral_marrow``),
    ``bone`` all bone (cortex zone and marrow).
    """
    cy, cx = _centre_line(vertebral, bone, spacing)
    spine = Spine(cy, cx)
    followed = np.nonzero(np.isfinite(cy))[0]
    if not followed.size:
        spine.problem = "no vertebral bodies found"
        return spine
    discs = _disc_chain(_core_profile(hu, cy, cx, spacing), spacing[0])
    vertebrae = _vertebrae(discs, int(followed[0]), int(followed[-1]))
    if not vertebrae:
        spine.problem = "the discs between the vertebral bodies could not be found"
        return spine
    attached = _attachments(bone, cy, cx, spacing) >= MIN_CONTACT_MM2
    for v in vertebrae:
        span = attached[int(np.ceil(v.lo)):int(np.floor(v.hi)) + 1]
        v.ribs = bool(span.size) and span.sum() * spacing[0] >= MIN_CONTACT_HEIGHT_MM
    judged: list[bool | None] = []
    for v in vertebrae:
        if v.ribs:
            judged.append(True)
        elif v.cut and not v.measurable:
            judged.append(None)  # too little of it seen: its rib heads may lie outside the scan
        else:
            judged.append(False)
    spine.vertebrae = vertebrae
    spine.counted_from, spine.problem = _name(vertebrae, judged)
    logger.info("spine: %s; counted from %s%s", spine.summary(), spine.counted_from or "nothing",
                f" ({spine.problem})" if spine.problem else "")
    return spine
