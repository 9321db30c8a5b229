"""Measurements of the built-in CT model, read from the assembly histogram, with their cautions.

Conventions (the same as the demo study's truth, ``workstation/demo/truth.py``):

- ``lung volume`` of a side counts that lung's parenchyma *and* its nodules
  (and emphysema, which is parenchyma), never airways, vessels or walls.
- ``%LAA-950`` of a side is the share of those same voxels (nodules included
  in the denominator) strictly below -950 HU. It is a density index valid on
  thin, soft-kernel, non-contrast, full-inspiration CT; cautions say when the
  series is not such a scan. The thickness limit is 1.5 mm: emphysema
  quantification protocols (COPDGene, the Fleischner quantitative CT
  recommendations) use 0.6-1.25 mm sections; thicker sections average
  emphysematous voxels with their neighbours above -950 HU and lower the index.
- Body composition areas (cm2) are counted on one axial slice of the trunk
  (arms excluded) through the middle of a named vertebral body: L3 when the
  scan holds it, else the nearest of L2, L4, L1, L5 or T12, with a caution that
  the values are not comparable with L3 references. The level comes from the
  spine (``inference.builtin_ct.spine``: vertebrae counted from the lowest
  rib-bearing one, T12, or up from the sacrum). When no level can be named
  (no rib-free vertebra below the ribs, no ribs or sacrum to count from, an
  ambiguous count) the areas are withheld, not estimated, and a caution
  "Body composition not reported: ..." gives the reason. An area is also
  withheld when the field of view cuts the body (subcutaneous fat) or the
  muscle wall (muscle, visceral fat) on that slice. Volumes (mL) count the
  trunk's labelled voxels over the scanned range (arms excluded).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.acquisition import is_sharp_kernel
from inference.builtin_ct import assemble as a
from inference.builtin_ct import soft_tissue as st
from inference.builtin_ct import table as t
from inference.findings import Measurement

logger = logging.getLogger(__name__)

MAX_LAA_THICKNESS_MM = 1.5
MIN_LUNG_ML = 50.0  # less than this is a lung base or apex clipped by the scan, not a measurable lung


@dataclass
class Level:
    """The vertebral level for body composition: name, canonical full-resolution slice, how it was counted."""

    name: str
    slice: int
    counted_from: str
    why_not_l3: str = ""
    body_cut: bool = False  # the trunk reaches the edge of the field of view on this slice
    wall_cut: bool = False  # so does the muscle wall (what it encloses)


@dataclass
class ScanInfo:
    """What the measurements need to know about the series."""

    voxel_ml: float
    pixel_mm2: float
    metadata: dict[str, Any]
    slice_z_mm: npt.NDArray[np.float64]  # LPS z of each canonical full-resolution slice
    spacing_z_mm: float
    notes: list[str] = field(default_factory=list)
    level: Level | None = None
    level_problem: str = "the vertebral column was not analysed"


def _contrast(metadata: dict[str, Any]) -> bool:
    value = str(metadata.get("contrast_agent") or "").strip().upper()
    return bool(value) and value not in ("NONE", "NO", "N", "0", "WITHOUT")


def _thickness(metadata: dict[str, Any], spacing_z: float) -> tuple[float, bool]:
    value = metadata.get("slice_thickness")
    try:
        if value is not None and float(value) > 0:
            return float(value), True
    except (TypeError, ValueError):
        pass
    return spacing_z, False


def laa_cautions(metadata: dict[str, Any], spacing_z: float) -> list[str]:
    """Why %LAA-950 may not be valid on this series (empty if nothing is known against it)."""
    out: list[str] = []
    thick, known = _thickness(metadata, spacing_z)
    if thick > MAX_LAA_THICKNESS_MM:
        src = "slice thickness" if known else "slice spacing (no thickness recorded)"
        out.append(f"%LAA-950 is valid on thin sections (<= {MAX_LAA_THICKNESS_MM} mm); this series' {src} is "
                   f"{thick:.3g} mm, which averages emphysema with denser neighbours and lowers the index")
    kernel = str(metadata.get("kernel") or "")
    if kernel and is_sharp_kernel(kernel):
        out.append(f"%LAA-950 needs a soft reconstruction kernel; '{kernel}' is sharp, its noise raises the index")
    if _contrast(metadata):
        out.append("%LAA-950 on a contrast-enhanced scan: enhancement raises lung attenuation and lowers the index")
    desc = str(metadata.get("series_description") or "")
    if re.search(r"\bEXP", desc.upper()):
        out.append("%LAA-950 assumes full inspiration; this series looks expiratory "
                   f"('{desc}'), which lowers the index")
    return out


def hu_caution(metadata: dict[str, Any]) -> str:
    """The caution for HU-based values on a contrast scan ('' if non-contrast)."""
    if _contrast(metadata):
        return ("contrast-enhanced scan: attenuation-based values (bone mean HU, tissue HU ranges) are shifted "
                "by contrast")
    return ""


def _label_counts(hist: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``counts[z, label]`` from ``hist[z, region, bin]``."""
    lut = a.LABEL_LUT.reshape(a.N_REGIONS, a.N_BINS)
    flat = hist.reshape(hist.shape[0], -1)
    onehot = np.zeros((a.N_REGIONS * a.N_BINS, t.N_LABELS), dtype=np.int64)
    onehot[np.arange(lut.size), lut.ravel()] = 1
    return np.asarray(flat @ onehot, dtype=np.int64)


def _select(hist: npt.NDArray[np.int64], label: int, overlays: tuple[int, ...] | None = None,
            bins: tuple[int, ...] | None = None, exclude_comp: int | None = None) -> int:
    lut = a.LABEL_LUT.reshape(a.N_OVERLAYS, a.N_COMPARTMENTS, a.N_BINS)
    sel = lut == label
    if overlays is not None:
        keep = np.zeros(a.N_OVERLAYS, dtype=bool)
        keep[list(overlays)] = True
        sel &= keep[:, None, None]
    if bins is not None:
        keep_b = np.zeros(a.N_BINS, dtype=bool)
        keep_b[list(bins)] = True
        sel &= keep_b[None, None, :]
    if exclude_comp is not None:
        sel[:, exclude_comp, :] = False
    return int(hist.reshape(-1, a.N_REGIONS * a.N_BINS)[:, sel.ravel()].sum())


def _lungs(hist: npt.NDArray[np.int64], info: ScanInfo, cautions: list[str], partial: str) -> list[Measurement]:
    out: list[Measurement] = []
    caution = "; ".join(cautions)
    total = total_low = 0
    for side, lab, nod in (("right", t.LUNG_RIGHT, a.NODULE_R), ("left", t.LUNG_LEFT, a.NODULE_L)):
        lung = _select(hist, lab)
        nodules = _select(hist, t.LUNG_NODULE, overlays=(nod,))
        low = _select(hist, lab, bins=(a.B_LAA,))
        n = lung + nodules
        total, total_low = total + n, total_low + low
        structure = f"lung_{side}"
        out.append(Measurement("lung volume", round(n * info.voxel_ml, 1), "mL", structure, side,
                               "voxels of the lung (< -400 HU, airways removed) plus its nodule candidates", partial))
        if n:
            out.append(Measurement("%LAA-950", round(100.0 * low / n, 2), "%", structure, side,
                                   "share of the lung's voxels (nodules included) below -950 HU", caution))
    out.append(Measurement("total lung volume", round(total * info.voxel_ml, 1), "mL", "lungs", "",
                           "right plus left lung volume", partial))
    if total:
        out.append(Measurement("%LAA-950", round(100.0 * total_low / total, 2), "%", "lungs", "",
                               "share of both lungs' voxels below -950 HU", caution))
    return out


_COUNTED = {"T12": "counted down from the lowest rib-bearing vertebra as T12",
            "sacrum": "counted up from the sacrum"}


def withheld_caution(problem: str) -> str:
    """The caution that replaces the body-composition areas when no vertebral level can be named."""
    return f"Body composition not reported: the vertebral level could not be identified ({problem})"


def level_caution(name: str, why: str) -> str:
    """The caution for areas measured at a level other than L3 ('' at L3)."""
    if name == "L3":
        return ""
    because = f" ({why})" if why else ""
    return (f"body composition is measured at {name}, not at L3{because}: the areas are not comparable with "
            f"L3 reference values")


def lung_coverage(counts: npt.NDArray[np.int64], voxel_ml: float) -> tuple[bool, str]:
    """Whether the lungs are measurable in this scan, and a caution when they are cut by its ends.

    A scan without lungs (or with only a sliver of a lung base, as in an abdominal
    CT) gets no lung measurements at all: "0 mL" would read as a finding. Lungs
    that reach the first or last slice are only partly scanned, so their volumes
    are lower bounds.
    """
    per_slice = counts[:, t.LUNG_RIGHT] + counts[:, t.LUNG_LEFT] + counts[:, t.LUNG_NODULE]
    if per_slice.sum() * voxel_ml < MIN_LUNG_ML:
        return False, ""
    if per_slice[0] > 0 or per_slice[-1] > 0:
        return True, ("the lungs extend beyond the scanned range: lung volumes are partial (lower bounds) "
                      "and %LAA-950 covers only the scanned part")
    return True, ""


def measure(hist: npt.NDArray[np.int64], marrow_hu_sum: float, info: ScanInfo) -> tuple[list[Measurement], list[str]]:
    """All measurements of the model and the cautions that apply to the scan."""
    cautions: list[str] = []
    counts = _label_counts(hist)
    has_lungs, partial = lung_coverage(counts, info.voxel_ml)
    hu_note = hu_caution(info.metadata)
    out: list[Measurement] = []
    if has_lungs:
        laa = laa_cautions(info.metadata, info.spacing_z_mm) + ([partial] if partial else [])
        cautions += laa
        out += _lungs(hist, info, laa, partial)
    else:
        info.notes.append("no lungs in the scanned range: lung volumes and %LAA-950 are not reported")
    hu_ranges = {t.MUSCLE: "-29..150", t.SUBCUTANEOUS_FAT: "-190..-30", t.VISCERAL_FAT: "-190..-30"}
    tissues = (("muscle", t.MUSCLE), ("subcutaneous fat", t.SUBCUTANEOUS_FAT), ("visceral fat", t.VISCERAL_FAT))
    if info.level is None:
        cautions.append(withheld_caution(info.level_problem))
    else:
        z = info.level.slice
        at_level = level_caution(info.level.name, info.level.why_not_l3)
        if at_level and not info.level.wall_cut:  # (a cut wall withholds every area)
            cautions.append(at_level)
        level = hist[z:z + 1]
        z_mm = float(info.slice_z_mm[z])
        how = _COUNTED.get(info.level.counted_from, info.level.counted_from)
        cut = {t.SUBCUTANEOUS_FAT: info.level.body_cut, t.MUSCLE: info.level.wall_cut,
               t.VISCERAL_FAT: info.level.wall_cut}
        if info.level.wall_cut:
            cautions.append(f"Muscle and visceral fat areas not reported: the muscle wall reaches the edge of the "
                            f"field of view at {info.level.name}, so part of it lies outside the image")
        if info.level.body_cut:
            cautions.append(f"Subcutaneous fat area not reported: the body reaches the edge of the field of view "
                            f"at {info.level.name}, so part of the subcutaneous fat lies outside the image")
        for name, lab in tissues:
            if cut[lab]:
                continue
            area = _select(level, lab, exclude_comp=st.LIMB) * info.pixel_mm2 / 100.0
            out.append(Measurement(f"{name} area", round(area, 2), "cm2", name.replace(" ", "_"), "",
                                   f"HU {hu_ranges[lab]} in the {name} compartment of the trunk (arms excluded), at "
                                   f"the middle of the {info.level.name} vertebral body ({how}; "
                                   f"canonical slice {z}, z = {z_mm:.1f} mm LPS)",
                                   "; ".join(c for c in (at_level, hu_note) if c)))
    for name, lab in tissues:
        volume = int(counts[:, lab].sum()) * info.voxel_ml
        out.append(Measurement(f"{name} volume", round(volume, 1), "mL", name.replace(" ", "_"), "",
                               f"all {name} voxels of the trunk in the scanned range (HU {hu_ranges[lab]}, by "
                               f"compartment; arms excluded)", hu_note))
    marrow_n = _select(hist, t.BONE_MARROW, overlays=(a.VERTEBRAL_MARROW,))
    if marrow_n:
        out.append(Measurement("bone mean HU", round(marrow_hu_sum / marrow_n, 1), "HU", "bone_marrow", "",
                               "mean HU of the trabecular bone enclosed by the cortex of the vertebral bodies "
                               "(enclosed regions >= 3 cm2 in an axial slice)", hu_note))
    else:
        info.notes.append("no vertebral body marrow found: bone mean HU is not reported")
    if hu_note:
        cautions.append(hu_note)
    return out, cautions
