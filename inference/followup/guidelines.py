"""Follow-up recommendations for solid lung nodules from measured size and change, with the rule cited.

Two published schemes, chosen by the clinical setting:

- **Fleischner Society 2017** (MacMahon et al., Radiology 2017;284:228-243),
  incidental solid nodules in adults >= 35 years, by mean diameter (average of
  long and short axis) of the largest nodule, single or multiple, low or high
  risk:

  ==========  ==========================================  ==========================================
  size        single                                      multiple
  ==========  ==========================================  ==========================================
  < 6 mm      low: no routine follow-up;                  low: no routine follow-up;
              high: optional CT at 12 months              high: optional CT at 12 months
  6-8 mm      low: CT at 6-12 months, then consider       low: CT at 3-6 months, then consider
              CT at 18-24 months; high: CT at 6-12        CT at 18-24 months; high: CT at 3-6
              months, then CT at 18-24 months             months, then at 18-24 months
  > 8 mm      consider CT at 3 months, PET/CT or          CT at 3-6 months, then consider CT at
              tissue sampling                             18-24 months
  ==========  ==========================================  ==========================================

  A solid nodule that grows is suspicious and leaves the incidental table
  (further evaluation); one unchanged for 2 years needs no further follow-up.
  When the risk is not known the high-risk row is used and the assumption is
  stated.

- **Lung-RADS v2022** (American College of Radiology), lung cancer screening,
  solid nodules by mean diameter: category 2 (< 6 mm at baseline, new < 4 mm,
  or an existing nodule not growing on follow-up), 3 (6 to < 8 mm at baseline,
  new 4 to < 6 mm), 4A (8 to < 15 mm at baseline, growing < 8 mm, new 6 to
  < 8 mm), 4B (>= 15 mm at baseline, new or growing >= 8 mm); the exam's
  category is that of its most suspicious nodule.

A nodule ``not covered`` by the prior (outside its field of view) has no
change information: Lung-RADS grades it as at baseline, Fleischner by its size
(it never counts as new, growing or stable for 2 years), and the basis says so.

Only solid nodules are covered (mean attenuation at or above
``SOLID_MIN_HU``); for anything else, or when nothing was measured, no
recommendation is made and the reason is given instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from inference.findings.model import Lesion
from inference.followup.model import ChangeStatus, LesionChange, Recommendation

logger = logging.getLogger(__name__)

FLEISCHNER = "Fleischner 2017"
LUNG_RADS = "Lung-RADS v2022"
SOLID_MIN_HU = -300.0
"""Mean HU at or above which a nodule is taken as solid (ground glass lies around -600 to -700 HU)."""
STABLE_2_YEARS_DAYS = 730

LUNG_RADS_MANAGEMENT = {
    "1": "Continue annual screening with low-dose CT in 12 months.",
    "2": "Continue annual screening with low-dose CT in 12 months.",
    "3": "Low-dose CT in 6 months.",
    "4A": "Low-dose CT in 3 months; PET/CT may be considered if there is a solid component of 8 mm or more.",
    "4B": (
        "Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a solid "
        "component of 8 mm or more; tissue sampling and/or referral for further clinical evaluation."
    ),
}
_RANK = {"1": 1, "2": 2, "3": 3, "4A": 4, "4B": 5}


@dataclass(frozen=True)
class GuidelineOutcome:
    """A recommendation, or None with the reason none could be given."""

    recommendation: Recommendation | None
    reason: str = ""


def is_lung_nodule(lesion: Lesion) -> bool:
    """A lesion the lung nodule guidelines apply to (a nodule label)."""
    return "nodule" in lesion.name.lower()


def is_solid(lesion: Lesion) -> bool:
    """Solid by mean attenuation (unknown attenuation is not assumed solid)."""
    return lesion.mean is not None and lesion.mean >= SOLID_MIN_HU


def mean_diameter(lesion: Lesion) -> float:
    """Mean of long and short axial axes, mm (both guidelines' size)."""
    return (lesion.long_axis_mm + lesion.short_axis_mm) / 2.0


def _nodules(lesions: Sequence[Lesion]) -> tuple[list[Lesion], str]:
    nodules = [x for x in lesions if is_lung_nodule(x)]
    if not nodules:
        return [], "no lung nodule was measured"
    if not all(is_solid(x) for x in nodules):
        return [], (
            f"not every nodule is solid (mean attenuation below {SOLID_MIN_HU:g} HU or unknown); "
            "the recommendation for subsolid nodules needs their solid component, which was not measured"
        )
    return nodules, ""


def fleischner(
    lesions: Sequence[Lesion],
    changes: Sequence[LesionChange] = (),
    *,
    interval_days: int | None = None,
    high_risk: bool | None = None,
) -> GuidelineOutcome:
    """Fleischner 2017 for incidental solid nodules (current ``lesions``, ``changes`` against a prior if any)."""
    nodules, why = _nodules(lesions)
    if not nodules:
        return GuidelineOutcome(None, why)
    assumptions: tuple[str, ...] = ()
    if high_risk is None:
        high_risk = True
        assumptions = ("patient risk not stated: high-risk recommendations applied",)
    risk = "high risk" if high_risk else "low risk"
    numbers = {x.number for x in nodules}
    relevant = [c for c in changes if c.current_id in numbers]
    grown = [c for c in relevant if c.status is ChangeStatus.GROWN]
    if grown:
        c = max(grown, key=lambda g: g.diameter_now_mm or 0.0)
        basis = (
            f"nodule {c.current_id} grew from {c.diameter_then_mm:.1f} mm to {c.diameter_now_mm:.1f} mm "
            f"mean diameter ({c.volume_change_percent:+.0f}% volume)"
        )
        return GuidelineOutcome(
            Recommendation(
                text=(
                    "Growing solid nodule: suspicious for malignancy; further evaluation (PET/CT, tissue "
                    "sampling or multidisciplinary review) is recommended."
                ),
                rule=f"{FLEISCHNER}: growing solid nodule",
                guideline=FLEISCHNER,
                basis=basis,
                assumptions=assumptions,
            )
        )
    if (
        relevant
        and interval_days is not None
        and interval_days >= STABLE_2_YEARS_DAYS
        and len(relevant) == len(nodules)
        and all(c.status in (ChangeStatus.STABLE, ChangeStatus.SHRUNK) for c in relevant)
    ):
        return GuidelineOutcome(
            Recommendation(
                text="Solid nodules unchanged for 2 years or more: no further routine follow-up.",
                rule=f"{FLEISCHNER}: solid nodule stable for 2 years",
                guideline=FLEISCHNER,
                basis=f"all {len(nodules)} nodules stable over {interval_days} days",
                assumptions=assumptions,
            )
        )
    largest = max(nodules, key=mean_diameter)
    size = mean_diameter(largest)
    multiple = len(nodules) > 1
    band = "<6 mm" if size < 6.0 else ("6-8 mm" if size <= 8.0 else ">8 mm")
    unseen = sorted(n for c in relevant if c.status is ChangeStatus.NOT_COVERED and (n := c.current_id) is not None)
    text = _FLEISCHNER_TABLE[(band, multiple, high_risk)]
    rule = f"{FLEISCHNER}: solid nodule, {'multiple' if multiple else 'single'}, {band}, {risk}"
    basis = f"largest nodule (nodule {largest.number}) {size:.1f} mm mean diameter; {len(nodules)} nodule(s)"
    if unseen:
        basis += (f"; nodule{'s' if len(unseen) > 1 else ''} {', '.join(map(str, unseen))} not in the prior's "
                  "field of view: assessed by size")
    return GuidelineOutcome(
        Recommendation(text=text, rule=rule, guideline=FLEISCHNER, basis=basis, assumptions=assumptions)
    )


_FLEISCHNER_TABLE: dict[tuple[str, bool, bool], str] = {
    ("<6 mm", False, False): "No routine follow-up.",
    ("<6 mm", False, True): "Optional CT at 12 months.",
    ("6-8 mm", False, False): "CT at 6-12 months, then consider CT at 18-24 months.",
    ("6-8 mm", False, True): "CT at 6-12 months, then CT at 18-24 months.",
    (">8 mm", False, False): "Consider CT at 3 months, PET/CT, or tissue sampling.",
    (">8 mm", False, True): "Consider CT at 3 months, PET/CT, or tissue sampling.",
    ("<6 mm", True, False): "No routine follow-up.",
    ("<6 mm", True, True): "Optional CT at 12 months.",
    ("6-8 mm", True, False): "CT at 3-6 months, then consider CT at 18-24 months.",
    ("6-8 mm", True, True): "CT at 3-6 months, then at 18-24 months.",
    (">8 mm", True, False): "CT at 3-6 months, then consider CT at 18-24 months.",
    (">8 mm", True, True): "CT at 3-6 months, then consider CT at 18-24 months.",
}


def lung_rads_category(size_mm: float, status: ChangeStatus | None) -> str:
    """The Lung-RADS v2022 category of one solid nodule.

    ``status`` None means a baseline exam (no prior); ``NEW``/``GROWN`` use the
    new and growing rows; ``STABLE``/``SHRUNK`` an existing nodule not growing;
    ``NOT_COVERED`` (the prior did not image it) the baseline rows.
    """
    if status is ChangeStatus.NEW:
        return "2" if size_mm < 4.0 else "3" if size_mm < 6.0 else "4A" if size_mm < 8.0 else "4B"
    if status is ChangeStatus.GROWN:
        return "4A" if size_mm < 8.0 else "4B"
    if status in (ChangeStatus.STABLE, ChangeStatus.SHRUNK):
        return "2"
    return "2" if size_mm < 6.0 else "3" if size_mm < 8.0 else "4A" if size_mm < 15.0 else "4B"


def lung_rads(lesions: Sequence[Lesion], changes: Sequence[LesionChange] = ()) -> GuidelineOutcome:
    """Lung-RADS v2022 category and management for a screening CT (``changes`` against the prior, if any)."""
    nodules, why = _nodules(lesions)
    if not nodules and why == "no lung nodule was measured":
        return GuidelineOutcome(
            Recommendation(
                text=LUNG_RADS_MANAGEMENT["1"],
                rule=f"{LUNG_RADS} category 1",
                guideline=LUNG_RADS,
                category="1",
                basis="no lung nodules measured",
            )
        )
    if not nodules:
        return GuidelineOutcome(None, why)
    by_current = {c.current_id: c.status for c in changes if c.current_id is not None}
    graded = []
    for x in nodules:
        status = by_current.get(x.number) if changes else None
        graded.append((lung_rads_category(mean_diameter(x), status), x, status))
    cat, worst, status = max(graded, key=lambda g: (_RANK[g[0]], mean_diameter(g[1])))
    if status is None:
        how = ", baseline"
    elif status is ChangeStatus.NOT_COVERED:
        how = ", not in the prior's field of view: graded as at baseline"
    else:
        how = f", {status.value}"
    basis = f"nodule {worst.number}: {mean_diameter(worst):.1f} mm mean diameter{how}; {len(nodules)} nodule(s)"
    return GuidelineOutcome(
        Recommendation(
            text=LUNG_RADS_MANAGEMENT[cat],
            rule=f"{LUNG_RADS} category {cat}",
            guideline=LUNG_RADS,
            category=cat,
            basis=basis,
        )
    )


def recommend(
    lesions: Sequence[Lesion],
    changes: Sequence[LesionChange] = (),
    *,
    screening: bool = False,
    interval_days: int | None = None,
    high_risk: bool | None = None,
) -> GuidelineOutcome:
    """Lung-RADS v2022 when the exam is a screening CT, else Fleischner 2017."""
    if screening:
        return lung_rads(lesions, changes)
    return fleischner(lesions, changes, interval_days=interval_days, high_risk=high_risk)
