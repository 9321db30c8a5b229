"""Follow-up reading records: how a prior was aligned, how each lesion changed, what the guideline says.

These typed records are the contract between the follow-up engine
(``registration``, ``matching``, ``guidelines``) and everything that shows or
writes a comparison (the draft's Comparison section and its grounding check,
PDF, SR, the side-by-side view). Every number a report may quote is a field
here, in the unit its name states; nothing is recomputed downstream.

Conventions:

- Points are LPS mm (``inference.volume``). ``RegistrationResult.matrix`` maps a
  point of the *current* study to the same anatomy in the *prior* study
  (``p_prior = M @ [x, y, z, 1]``); ``to_current`` is its inverse. It lives in
  ``inference.followup.space`` with each study's ``FieldOfView`` (re-exported here).
- Volumes are stored in mL like ``inference.findings.model.Lesion.volume_ml``;
  the ``*_mm3`` properties give nodule volumetry's unit.
- ``Comparison.to_dict`` is the ``"comparison"`` block of ``findings.json``;
  ``Comparison.from_dict`` reads it back exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from inference.findings.model import Lesion
from inference.followup.space import ComparisonFormatError as ComparisonFormatError
from inference.followup.space import RegistrationResult as RegistrationResult

logger = logging.getLogger(__name__)


class ChangeStatus(StrEnum):
    """How a lesion changed between the prior and the current study.

    ``NEW`` and ``RESOLVED`` claim that the other study imaged the place and
    showed no lesion there. ``NOT_COVERED`` is an unmatched lesion whose centre,
    carried through the registration into the other study, lies outside that
    study's field of view (``inference.followup.space.FieldOfView``: its voxel
    grid, with half the lesion's long axis as the margin): the other study never
    imaged it, so nothing is known of its change. A current lesion then reads
    "not included in the prior examination's field of view; no comparison
    possible", a prior one "not included in the current examination's field of
    view"; guidelines treat it as at baseline (never new, never growing).
    """

    NEW = "new"
    GROWN = "grown"
    STABLE = "stable"
    SHRUNK = "shrunk"
    RESOLVED = "resolved"
    NOT_COVERED = "not covered"


@dataclass(frozen=True)
class ChangeCriteria:
    """The thresholds a status is decided by, stated so a report can quote them.

    Growth per Fleischner 2017 / Lung-RADS v2022 is an increase of more than
    ``diameter_mm`` in mean diameter; a volume change of more than
    ``volume_fraction`` (25 %) counts as well, since volumetry is more sensitive
    than calipers. Shrinkage is the mirror image. ``match_distance_mm`` plus
    ``match_size_factor`` times the larger long axis bounds how far apart (after
    registration) a current and a prior lesion may lie and still be the same one.
    """

    diameter_mm: float = 1.5
    volume_fraction: float = 0.25
    match_distance_mm: float = 10.0
    match_size_factor: float = 1.0

    def describe(self) -> str:
        """The thresholds in words, e.g. for the report's Comparison section."""
        return (
            f"growth or shrinkage: change of more than {self.diameter_mm:g} mm in mean diameter "
            f"(Fleischner 2017, Lung-RADS v2022) or more than {self.volume_fraction * 100:g} % in volume; "
            f"lesions matched within {self.match_distance_mm:g} mm + {self.match_size_factor:g} x long axis "
            "after registration"
        )


@dataclass(frozen=True)
class LesionSnapshot:
    """One lesion at one time point: what was measured and which image shows it.

    ``number`` is the lesion's ``Lesion.number`` in its own study's findings
    (its id there). ``mean_diameter_mm`` is the mean of the long and short axial
    axes, the diameter Fleischner and Lung-RADS use.
    """

    number: int
    centroid_lps: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float
    volume_ml: float
    series_number: int | None = None
    instance_number: int | None = None
    zone: str = ""

    @classmethod
    def from_lesion(cls, lesion: Lesion) -> LesionSnapshot:
        """The snapshot of a measured lesion (its number, axial axes, volume, image reference, zone)."""
        return cls(
            number=lesion.number,
            centroid_lps=(float(lesion.centroid_lps[0]), float(lesion.centroid_lps[1]), float(lesion.centroid_lps[2])),
            long_axis_mm=float(lesion.long_axis_mm),
            short_axis_mm=float(lesion.short_axis_mm),
            volume_ml=float(lesion.volume_ml),
            series_number=lesion.series_number,
            instance_number=lesion.instance_number,
            zone=lesion.zone,
        )

    @property
    def mean_diameter_mm(self) -> float:
        """Mean of the long and short axial axes, mm."""
        return (self.long_axis_mm + self.short_axis_mm) / 2.0

    @property
    def volume_mm3(self) -> float:
        """Volume in mm³."""
        return self.volume_ml * 1000.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the issue's per-time-point keys plus the short axis, mean diameter, zone)."""
        return {
            "number": self.number,
            "centroid_lps": list(self.centroid_lps),
            "long_axis_mm": self.long_axis_mm,
            "short_axis_mm": self.short_axis_mm,
            "mean_diameter_mm": self.mean_diameter_mm,
            "volume_ml": self.volume_ml,
            "series_number": self.series_number,
            "instance_number": self.instance_number,
            "zone": self.zone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LesionSnapshot:
        """The inverse of ``to_dict``."""
        c = [float(v) for v in data["centroid_lps"]]
        if len(c) != 3:
            raise ComparisonFormatError(f"centroid_lps needs 3 numbers, got {data['centroid_lps']!r}")
        return cls(
            number=int(data["number"]),
            centroid_lps=(c[0], c[1], c[2]),
            long_axis_mm=float(data["long_axis_mm"]),
            short_axis_mm=float(data["short_axis_mm"]),
            volume_ml=float(data["volume_ml"]),
            series_number=_opt_int(data.get("series_number")),
            instance_number=_opt_int(data.get("instance_number")),
            zone=str(data.get("zone", "")),
        )


@dataclass(frozen=True)
class LesionChange:
    """One lesion followed from the prior to the current study.

    ``current`` is None for a ``resolved`` lesion, ``prior`` None for a ``new``
    one; a ``not covered`` lesion has only the snapshot of the study that
    imaged it. ``volume_change_percent`` and ``diameter_change_mm`` are None unless
    both time points exist. ``doubling_time_days`` is the volume doubling time
    ``interval * ln 2 / ln(V_now / V_then)``; None with ``doubling_time_reason``
    saying why whenever it is not quoted (not growing, new, resolved, not covered...).
    ``distance_mm`` is how far apart the two centres lay after registration.
    """

    status: ChangeStatus
    current: LesionSnapshot | None
    prior: LesionSnapshot | None
    volume_change_percent: float | None = None
    diameter_change_mm: float | None = None
    doubling_time_days: float | None = None
    doubling_time_reason: str = ""
    distance_mm: float | None = None

    @property
    def status_label(self) -> str:
        """The status for a table cell: its value, or "not in prior field" / "not in current field"."""
        if self.status is ChangeStatus.NOT_COVERED:
            return "not in prior field" if self.current is not None else "not in current field"
        return self.status.value

    @property
    def current_id(self) -> int | None:
        """The current lesion's number in the current findings."""
        return self.current.number if self.current else None

    @property
    def prior_id(self) -> int | None:
        """The prior lesion's number in the prior findings."""
        return self.prior.number if self.prior else None

    @property
    def diameter_then_mm(self) -> float | None:
        """Mean diameter in the prior, mm."""
        return self.prior.mean_diameter_mm if self.prior else None

    @property
    def diameter_now_mm(self) -> float | None:
        """Mean diameter now, mm."""
        return self.current.mean_diameter_mm if self.current else None

    @property
    def volume_then_mm3(self) -> float | None:
        """Volume in the prior, mm³."""
        return self.prior.volume_mm3 if self.prior else None

    @property
    def volume_now_mm3(self) -> float | None:
        """Volume now, mm³."""
        return self.current.volume_mm3 if self.current else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"status", "current", "prior", "doubling_time_days", ...}``."""
        return {
            "status": self.status.value,
            "current": self.current.to_dict() if self.current else None,
            "prior": self.prior.to_dict() if self.prior else None,
            "volume_change_percent": self.volume_change_percent,
            "diameter_change_mm": self.diameter_change_mm,
            "doubling_time_days": self.doubling_time_days,
            "doubling_time_reason": self.doubling_time_reason,
            "distance_mm": self.distance_mm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LesionChange:
        """The inverse of ``to_dict``."""
        cur, pri = data.get("current"), data.get("prior")
        return cls(
            status=ChangeStatus(data["status"]),
            current=LesionSnapshot.from_dict(cur) if cur is not None else None,
            prior=LesionSnapshot.from_dict(pri) if pri is not None else None,
            volume_change_percent=_opt_float(data.get("volume_change_percent")),
            diameter_change_mm=_opt_float(data.get("diameter_change_mm")),
            doubling_time_days=_opt_float(data.get("doubling_time_days")),
            doubling_time_reason=str(data.get("doubling_time_reason", "")),
            distance_mm=_opt_float(data.get("distance_mm")),
        )


@dataclass(frozen=True)
class Recommendation:
    """A follow-up recommendation and the published rule it comes from.

    ``rule`` cites the guideline and the row applied, e.g. "Fleischner 2017:
    solid nodule, single, 6-8 mm, low risk" or "Lung-RADS v2022 category 4A".
    ``category`` is the Lung-RADS category ("2", "3", "4A"...) or "" for
    Fleischner. ``basis`` lists the measured numbers it was derived from and
    ``assumptions`` what was assumed for lack of information (e.g. risk).
    """

    text: str
    rule: str
    guideline: str
    category: str = ""
    basis: str = ""
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "text": self.text,
            "rule": self.rule,
            "guideline": self.guideline,
            "category": self.category,
            "basis": self.basis,
            "assumptions": list(self.assumptions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recommendation:
        """The inverse of ``to_dict``."""
        return cls(
            text=str(data["text"]),
            rule=str(data["rule"]),
            guideline=str(data["guideline"]),
            category=str(data.get("category", "")),
            basis=str(data.get("basis", "")),
            assumptions=tuple(str(a) for a in data.get("assumptions", ())),
        )


@dataclass(frozen=True)
class Comparison:
    """The current study compared with one prior: which prior, how aligned, what changed, what to do.

    ``interval_days`` is current StudyDate minus prior StudyDate. When
    ``registration.passed`` is False the lesion ``changes`` are empty (matching
    through a failed transform would be guesswork) and ``cautions`` says so.
    ``recommendation`` is None when the numbers do not support one;
    ``recommendation_reason`` then says why.
    """

    prior_study_date: date
    prior_study_uid: str
    prior_study_description: str
    prior_series_number: int | None
    prior_series_uid: str
    current_study_date: date
    registration: RegistrationResult
    changes: tuple[LesionChange, ...] = ()
    recommendation: Recommendation | None = None
    recommendation_reason: str = ""
    criteria: ChangeCriteria = field(default_factory=ChangeCriteria)
    cautions: tuple[str, ...] = ()

    @property
    def interval_days(self) -> int:
        """Days between the prior and the current study."""
        return (self.current_study_date - self.prior_study_date).days

    def by_status(self, status: ChangeStatus) -> list[LesionChange]:
        """The changes with this status, in stored order."""
        return [c for c in self.changes if c.status is status]

    def change_for_current(self, number: int) -> LesionChange | None:
        """The change record of the current lesion numbered ``number``."""
        return next((c for c in self.changes if c.current_id == number), None)

    def to_dict(self) -> dict[str, Any]:
        """The ``"comparison"`` block of ``findings.json``."""
        return {
            "prior": {
                "study_date": self.prior_study_date.isoformat(),
                "study_instance_uid": self.prior_study_uid,
                "study_description": self.prior_study_description,
                "series_number": self.prior_series_number,
                "series_instance_uid": self.prior_series_uid,
            },
            "current_study_date": self.current_study_date.isoformat(),
            "interval_days": self.interval_days,
            "registration": self.registration.to_dict(),
            "criteria": {
                "diameter_mm": self.criteria.diameter_mm,
                "volume_fraction": self.criteria.volume_fraction,
                "match_distance_mm": self.criteria.match_distance_mm,
                "match_size_factor": self.criteria.match_size_factor,
                "text": self.criteria.describe(),
            },
            "lesions": [c.to_dict() for c in self.changes],
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "recommendation_reason": self.recommendation_reason,
            "cautions": list(self.cautions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """The inverse of ``to_dict``; ``ComparisonFormatError`` on a malformed block."""
        try:
            prior = data["prior"]
            crit = data.get("criteria", {})
            rec = data.get("recommendation")
            return cls(
                prior_study_date=date.fromisoformat(str(prior["study_date"])),
                prior_study_uid=str(prior["study_instance_uid"]),
                prior_study_description=str(prior.get("study_description", "")),
                prior_series_number=_opt_int(prior.get("series_number")),
                prior_series_uid=str(prior.get("series_instance_uid", "")),
                current_study_date=date.fromisoformat(str(data["current_study_date"])),
                registration=RegistrationResult.from_dict(data["registration"]),
                changes=tuple(LesionChange.from_dict(c) for c in data.get("lesions", ())),
                recommendation=Recommendation.from_dict(rec) if rec is not None else None,
                recommendation_reason=str(data.get("recommendation_reason", "")),
                criteria=ChangeCriteria(
                    diameter_mm=float(crit.get("diameter_mm", 1.5)),
                    volume_fraction=float(crit.get("volume_fraction", 0.25)),
                    match_distance_mm=float(crit.get("match_distance_mm", 10.0)),
                    match_size_factor=float(crit.get("match_size_factor", 1.0)),
                ),
                cautions=tuple(str(c) for c in data.get("cautions", ())),
            )
        except ComparisonFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ComparisonFormatError(f"bad comparison record: {exc!r}") from exc


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
