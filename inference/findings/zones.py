"""Where in the lung a lesion lies, in the words a radiologist uses: lobe when lobes are labelled, else zone.

``assign_zones`` fills ``Lesion.zone`` for each lesion that lies in a lung:

- **Lobe** ("right upper lobe, peripheral") when the label map holds lobe labels
  for that side (names like TotalSegmentator's/MONAI's ``lung_upper_lobe_right``,
  found from the label table by ``lung_part``): the most frequent lobe label around
  the lesion.
- **Zone** ("right upper zone, peripheral") otherwise: the upper, middle or lower
  third of *that* lung, split at the two axial planes (LPS z) above which one
  third and two thirds of the lung's volume lie. Equal-volume thirds, as the
  Chest Imaging Platform's (COPDGene) lung thirds are, rather than equal heights:
  the apex is narrow, so equal heights would make the upper zone a small cap
  and put most upper-lobe lesions in the "middle" zone.
- **Central or peripheral**, on the axial plane through the lesion centre: a ray
  from the midline (the patient's midline x, at the mean y of that lung's
  cross-section) through the lesion centre enters the lung at its mediastinal
  surface (first lung voxel on the ray) and leaves it at its costal surface
  (last lung voxel). The lesion is *central* when its centre lies in the inner
  third of that path (nearer the hilum and mediastinum), *peripheral* in the
  outer two thirds; this is the concentric-thirds definition of a central
  tumour in the ESTS guideline on preoperative mediastinal staging (2014),
  measured across the lung rather than the whole hemithorax.

A lesion is in a lung when lung labels make up at least a third of the labelled
voxels (lesion labels aside) in a box reaching two voxels beyond its longest
diameter around its centre; its side is that of the most frequent lung label
there. A lung whose labels reach the first or last plane of the scan (along the
grid axis nearest LPS z) is cut by the scan range: its thirds are unknown, so its
lesions are only "right lung, peripheral", and a caution says so
(``coverage_caution``; the report reads it back with ``cut_lungs``).

Numpy only (no scipy), so the report package can import the name parsing.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.findings.model import Findings, Lesion, StructureFinding
from inference.labels import LabelTable
from inference.volume import Volume

logger = logging.getLogger(__name__)

THIRDS = ("upper", "middle", "lower")
CENTRAL_SHARE = 1.0 / 3.0  # inner third of the mediastinal-to-costal path is central
IN_LUNG_SHARE = 1.0 / 3.0  # share of lung labels around a lesion that places it in the lung
MARGIN_VOXELS = 2
_LESION_WORDS = frozenset({"nodule", "nodules", "lesion", "lesions", "mass", "masses", "tumor", "tumour",
                           "tumors", "tumours", "cancer", "metastasis", "metastases"})
_NOT_PARENCHYMA = frozenset({"vessel", "vessels", "artery", "arteries", "vein", "veins", "airway", "airways",
                             "trachea", "bronchus", "bronchi", "bronchia", "fissure", "fissures", "effusion",
                             "infiltration", "consolidation"})
_LOBE_WORDS = {"upper": "upper", "superior": "upper", "middle": "middle", "lower": "lower", "inferior": "lower",
               "lingula": "lingula", "lingular": "lingula"}
_LOBE_ABBREVIATIONS = {"rul": ("right", "upper"), "rml": ("right", "middle"), "rll": ("right", "lower"),
                       "lul": ("left", "upper"), "lll": ("left", "lower")}
_CAUTION_RE = re.compile(r"\bthe (right|left) lung extends beyond the (top and bottom|top|bottom) of the scan range",
                         re.IGNORECASE)
_ZONE_RE = re.compile(r"^(?:(right|left)\s+)?(?:(upper|middle|lower)\s+(zone|lobe)|(lingula)|lung)"
                      r"(?:\s*,\s*(central|peripheral))?$", re.IGNORECASE)


@dataclass(frozen=True)
class LungPart:
    """What a lung label covers: a side and a lobe ("upper", "middle", "lower", "lingula"; "" = whole lung)."""

    side: str
    lobe: str = ""


def lung_part(name: str) -> LungPart | None:
    """The lung part a label name stands for, or None when it is not lung parenchyma of one side.

    "lung_right" -> right lung; "lung_upper_lobe_left" (TotalSegmentator, MONAI) -> left upper lobe;
    "RUL" -> right upper lobe. Lesions, vessels and airways "in" a lung are not lung parts.
    """
    words = [w for w in re.split(r"[_\s\-/]+", name.strip().lower()) if w]
    if any(w in _LESION_WORDS or w in _NOT_PARENCHYMA for w in words):
        return None
    for w in words:
        if w in _LOBE_ABBREVIATIONS:
            side, lobe = _LOBE_ABBREVIATIONS[w]
            return LungPart(side, lobe)
    lobe = next((_LOBE_WORDS[w] for w in words if w in _LOBE_WORDS), "")
    if not ({"lung", "lungs", "lobe", "pulmonary"} & set(words) or lobe == "lingula"):
        return None
    side = next((w for w in words if w in ("right", "left")), "left" if lobe == "lingula" else "")
    if not side or (lobe in ("upper", "middle", "lower") and "lobe" not in words and "lung" not in words):
        return None
    return LungPart(side, lobe)


@dataclass(frozen=True)
class Zone:
    """A lesion's place in the lung, as ``Lesion.zone`` writes it.

    ``kind`` is "lobe", "zone" or "" (the lung only, when its thirds are unknown);
    ``part`` the lobe or third ("upper", "middle", "lower", "lingula"); ``position``
    "central", "peripheral" or "".
    """

    side: str
    part: str = ""
    kind: str = ""
    position: str = ""

    def text(self) -> str:
        """"right upper zone, peripheral", "lingula, central", "left lung"."""
        if self.part == "lingula":
            where = "lingula"
        elif self.part:
            where = f"{self.side} {self.part} {self.kind}"
        else:
            where = f"{self.side} lung"
        return f"{where}, {self.position}" if self.position else where


def parse_zone(text: str) -> Zone | None:
    """The ``Zone`` a ``Zone.text`` string stands for (None for "" or anything else)."""
    m = _ZONE_RE.match(" ".join(text.split()))
    if m is None:
        return None
    side, part, kind, lingula, position = (g.lower() if g else "" for g in m.groups())
    if lingula:
        return Zone(side or "left", "lingula", "lobe", position)
    if not side:
        return None
    return Zone(side, part, kind, position)


def coverage_caution(side: str, ends: Sequence[str]) -> str:
    """The caution for a lung cut by the scan range (``ends``: "top", "bottom" or both)."""
    where = " and ".join(e for e in ("top", "bottom") if e in ends)
    return (f"the {side} lung extends beyond the {where} of the scan range, so its lesions are placed as central "
            "or peripheral but not in upper, middle or lower zones")


def cut_lungs(cautions: Iterable[str]) -> dict[str, frozenset[str]]:
    """Which ends ("top", "bottom") of each lung the scan range cuts, read back from ``coverage_caution`` texts."""
    out: dict[str, frozenset[str]] = {}
    for caution in cautions:
        for m in _CAUTION_RE.finditer(caution):
            ends = frozenset(e for e in ("top", "bottom") if e in m.group(2).lower())
            out[m.group(1).lower()] = out.get(m.group(1).lower(), frozenset()) | ends
    return out


@dataclass
class _Lung:
    """One lung as the zones need it: its label values, lobes, and (zones) where its thirds split."""

    side: str
    values: tuple[int, ...]
    lobes: dict[int, str]
    cut: tuple[str, ...] = ()
    splits: tuple[float, float] | None = None  # LPS z of the upper/middle and middle/lower boundaries


def assign_zones(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], label_table: LabelTable,
                 findings: Findings, midline_mm: float) -> None:
    """Fill ``zone`` of every lesion in ``findings`` that lies in a lung; add a caution per lung the scan cuts.

    Needs the lung labels' structures in ``findings`` (their bounding boxes bound the work). Does nothing when
    the label table has no lung labels.
    """
    lungs = _lungs(label_table, findings.structures)
    if not lungs:
        return
    z_axis = int(np.argmax(np.abs(np.asarray(volume.affine)[2, :3])))
    for lung in lungs.values():
        _measure_lung(volume, labelmap, findings.structures, lung, z_axis)
        if lung.cut and not lung.lobes:
            caution = coverage_caution(lung.side, lung.cut)
            if caution not in findings.cautions:
                findings.cautions.append(caution)
    lesion_values = {lab.value for lab in label_table if lab.lesion}
    sections: dict[tuple[str, int], _Section] = {}  # (side, plane) -> that lung's cross-section
    for les in findings.lesions:
        zone = _zone_of(volume, labelmap, les, lungs, lesion_values, z_axis, midline_mm, sections)
        les.zone = zone.text() if zone is not None else ""
    logger.debug("zones: %s", [les.zone for les in findings.lesions])


def _lungs(table: LabelTable, structures: Sequence[StructureFinding]) -> dict[str, _Lung]:
    present = {s.label for s in structures}
    lungs: dict[str, _Lung] = {}
    for lab in table:
        part = None if lab.lesion else lung_part(lab.name)
        if part is None or lab.value not in present:
            continue
        lung = lungs.setdefault(part.side, _Lung(part.side, (), {}))
        lung.values += (lab.value,)
        if part.lobe:
            lung.lobes[lab.value] = part.lobe
    return lungs


def _measure_lung(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], structures: Sequence[StructureFinding],
                  lung: _Lung, z_axis: int) -> None:
    """Whether the scan cuts the lung, and (when it does not) the z of its equal-volume thirds."""
    boxes = [s for s in structures if s.label in lung.values]
    lo = np.min([s.bbox_min_index for s in boxes], axis=0)
    hi = np.max([s.bbox_max_index for s in boxes], axis=0)
    n = volume.shape[z_axis]
    step = float(np.asarray(volume.affine)[2, z_axis])
    top_is_high = step > 0
    ends = {"top": (hi[z_axis] >= n - 1) if top_is_high else (lo[z_axis] <= 0),
            "bottom": (lo[z_axis] <= 0) if top_is_high else (hi[z_axis] >= n - 1)}
    lung.cut = tuple(e for e in ("top", "bottom") if ends[e])
    if lung.cut or lung.lobes:
        return
    crop = labelmap[tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))]
    other = tuple(a for a in range(3) if a != z_axis)
    counts = _mask(crop, lung.values).sum(axis=other).astype(np.float64)
    centre = (lo + hi) / 2.0
    planes = np.arange(lo[z_axis], hi[z_axis] + 1, dtype=np.float64)
    index = np.tile(centre, (len(planes), 1))
    index[:, z_axis] = planes
    z = volume.index_to_lps(index)[:, 2]
    order = np.argsort(-z)  # from the apex down
    z, counts = z[order], counts[order]
    half = abs(step) / 2.0
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    total = cum[-1]
    splits = []
    for share in (1.0 / 3.0, 2.0 / 3.0):
        j = int(np.searchsorted(cum[1:], share * total))  # the plane in which the share is reached
        inside = (share * total - cum[j]) / counts[j] if counts[j] else 0.0
        splits.append(float(z[j] + half - inside * 2.0 * half))
    lung.splits = (splits[0], splits[1])


def _mask(array: npt.NDArray[np.integer[Any]], values: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """``np.isin(array, values)``, by one comparison when there is one value (several times faster)."""
    return np.asarray(array == values[0]) if len(values) == 1 else np.isin(array, values)


def _zone_of(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], les: Lesion, lungs: dict[str, _Lung],
             lesion_values: set[int], z_axis: int, midline_mm: float,
             sections: dict[tuple[str, int], _Section]) -> Zone | None:
    """The lesion's ``Zone``, or None when it does not lie in a lung (see the module docstring)."""
    around = _labels_around(volume, labelmap, les)
    for v in lesion_values | {0}:
        around.pop(v, None)
    labelled = sum(around.values())
    by_side = {side: sum(around.get(v, 0) for v in lung.values) for side, lung in lungs.items()}
    in_lung = sum(by_side.values())
    if not labelled or in_lung < IN_LUNG_SHARE * labelled:
        return None
    side = max(sorted(by_side), key=lambda s: by_side[s])
    lung = lungs[side]
    position = _position(volume, labelmap, les, lung, z_axis, midline_mm, sections)
    if lung.lobes:
        lobe_counts = {v: around.get(v, 0) for v in lung.lobes}
        best = max(sorted(lobe_counts), key=lambda v: lobe_counts[v])
        if lobe_counts[best]:
            return Zone(side, lung.lobes[best], "lobe", position)
        return Zone(side, "", "", position)
    if lung.splits is None:
        return Zone(side, "", "", position)
    z = les.centroid_lps[2]
    third = "upper" if z >= lung.splits[0] else ("middle" if z >= lung.splits[1] else "lower")
    return Zone(side, third, "zone", position)


def _labels_around(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], les: Lesion) -> dict[int, int]:
    """Voxel count per label value in a box reaching ``MARGIN_VOXELS`` beyond the lesion's longest diameter."""
    spacing = np.linalg.norm(np.asarray(volume.affine)[:3, :3], axis=0)
    radius_mm = max(les.long_axis_3d_mm, les.long_axis_mm) / 2.0
    box = []
    for axis in range(3):
        r = math.ceil(radius_mm / float(spacing[axis])) + MARGIN_VOXELS
        c = round(les.centroid_index[axis])
        box.append(slice(max(c - r, 0), min(c + r + 1, labelmap.shape[axis])))
    values, counts = np.unique(labelmap[tuple(box)], return_counts=True)
    return {int(v): int(n) for v, n in zip(values, counts, strict=True)}


@dataclass(frozen=True)
class _Section:
    """A lung's cross-section on one plane: its mask, and the mean LPS y of its voxels."""

    mask: npt.NDArray[np.bool_]
    mean_y: float | None


def _section(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], lung: _Lung, z_axis: int, k: int) -> _Section:
    """The lung's voxels on plane ``k`` along ``z_axis`` (mean y from the index sums, without listing voxels)."""
    affine = np.asarray(volume.affine, dtype=np.float64)
    a1, a2 = (a for a in range(3) if a != z_axis)
    mask = _mask(np.take(labelmap, k, axis=z_axis), lung.values)
    n = int(mask.sum())
    if not n:
        return _Section(mask, None)
    m1 = float(mask.sum(axis=1) @ np.arange(mask.shape[0])) / n
    m2 = float(mask.sum(axis=0) @ np.arange(mask.shape[1])) / n
    return _Section(mask, float(affine[1, a1] * m1 + affine[1, a2] * m2 + affine[1, z_axis] * k + affine[1, 3]))


def _position(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], les: Lesion, lung: _Lung, z_axis: int,
              midline_mm: float, sections: dict[tuple[str, int], _Section]) -> str:
    """"central" or "peripheral" on the lesion's axial plane (module docstring), "" when it cannot be told.

    The ray is sampled every half pixel from the origin to the far edge of the plane; the lung's
    mediastinal and costal surfaces are the first and last samples that fall in the lung's voxels.
    """
    affine = np.asarray(volume.affine, dtype=np.float64)
    k = int(np.clip(round(les.centroid_index[z_axis]), 0, labelmap.shape[z_axis] - 1))
    if (lung.side, k) not in sections:
        sections[(lung.side, k)] = _section(volume, labelmap, lung, z_axis, k)
    section = sections[(lung.side, k)]
    if section.mean_y is None:
        return ""
    a1, a2 = (a for a in range(3) if a != z_axis)
    plane = affine[:2][:, [a1, a2]]
    if abs(np.linalg.det(plane)) < 1e-9:  # the plane is not axial enough to draw a left-right ray in
        return ""
    origin = np.array([midline_mm, section.mean_y])
    d = np.asarray(les.centroid_lps[:2], dtype=np.float64) - origin
    dist = float(np.hypot(d[0], d[1]))
    if dist < 1e-6:
        return "central"
    u = d / dist
    step = float(min(np.linalg.norm(affine[:3, a1]), np.linalg.norm(affine[:3, a2]))) / 2.0
    reach = float(np.linalg.norm(affine[:3, a1]) * section.mask.shape[0] +
                  np.linalg.norm(affine[:3, a2]) * section.mask.shape[1])
    t = np.arange(step, reach, step)
    offset = affine[:2, z_axis] * k + affine[:2, 3]
    index = np.rint(np.linalg.solve(plane, (origin[:, None] + u[:, None] * t[None, :]) - offset[:, None]))
    inside = ((index[0] >= 0) & (index[0] < section.mask.shape[0]) & (index[1] >= 0)
              & (index[1] < section.mask.shape[1]))
    hit = np.zeros(len(t), dtype=bool)
    hit[inside] = section.mask[index[0, inside].astype(np.intp), index[1, inside].astype(np.intp)]
    if not hit.any():
        return ""
    on = t[hit]
    start, end = float(on[0]) - step / 2.0, float(on[-1]) + step / 2.0
    share = (dist - start) / (end - start) if end > start else 0.0
    return "central" if share < CENTRAL_SHARE else "peripheral"
