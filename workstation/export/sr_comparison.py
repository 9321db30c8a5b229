"""The comparison with a prior study in the TID 1500 measurement SR: two time points per tracked lesion.

With a comparison whose registration passed its check (``inference.followup.model``):

- every current lesion's TID 1411 group gets a TID 1502 time point context
  ("current", order 2), its status as a qualitative evaluation
  ``(111049, DCM, "Qualitative Difference")`` with a CID 6134/6002 value
  (Increase in size, Decrease in size, No significant changes in the finding,
  New finding; "resolved" and "not covered" -- outside the other study's field
  of view, no comparison possible -- have no standard code and use the local
  scheme; a not covered lesion gets no volume change or doubling time), and,
  for a matched lesion, the volume change (%) and the volume doubling time
  (days, UCUM ``d``) as measurements (local concepts: no standard code exists);
- every lesion of the prior gets a TID 1501 group at time point "prior"
  (order 1) with its long and short axis and volume, its status, and as
  observation context the prior study (``(121018, DCM, "Procedure Study
  Instance UID")``), its series (``(112002, DCM, "Series Instance UID")``) and
  date (``(111060, DCM, "Study Date")``). A matched prior lesion carries the
  current lesion's tracking identifier and UID: the same lesion, followed
  over time, as tracking UIDs are meant to say.

A failed registration writes no prior measurements (nothing was matched); the
report's text says why. De-identification remaps the UIDs and shifts the date
like every other UID and date of the object.
"""

from __future__ import annotations

import logging
from typing import Any

from inference.contract import AnalysisResult
from inference.findings import Lesion
from inference.followup.model import ChangeStatus, Comparison, LesionChange, LesionSnapshot
from workstation.export import codes
from workstation.export.seg import SegExport

logger = logging.getLogger(__name__)

QUALITATIVE_DIFFERENCE = ("111049", "DCM", "Qualitative Difference")
STATUS_CODES: dict[ChangeStatus, tuple[str, str, str]] = {
    ChangeStatus.GROWN: ("15454001", "SCT", "Increase in size"),
    ChangeStatus.SHRUNK: ("19776001", "SCT", "Decrease in size"),
    ChangeStatus.STABLE: ("129723006", "SCT", "No significant changes in the finding"),
    ChangeStatus.NEW: ("129721008", "SCT", "New finding"),
    ChangeStatus.RESOLVED: codes.local("Resolved since the prior study"),
    ChangeStatus.NOT_COVERED: codes.local("Not in the other examination's field of view"),
}
VOLUME_CHANGE = codes.local("Volume change since the prior study")
DOUBLING_TIME = codes.local("Volume doubling time")
PROCEDURE_STUDY_UID = ("121018", "DCM", "Procedure Study Instance UID")
SERIES_UID = ("112002", "DCM", "Series Instance UID")
STUDY_DATE = ("111060", "DCM", "Study Date")


def usable(comparison: Comparison | None) -> bool:
    """Whether the comparison adds anything to the SR (a registration that passed its check)."""
    return comparison is not None and comparison.registration.passed


def time_point(prior: bool) -> Any:
    """The TID 1502 time point context of the prior (order 1) or the current study (order 2)."""
    import highdicom as hd

    return hd.sr.TimePointContext(time_point="prior study" if prior else "current study",
                                  time_point_order=1 if prior else 2)


def status_evaluation(status: ChangeStatus) -> Any:
    """The lesion's change as a qualitative evaluation."""
    import highdicom as hd

    return hd.sr.QualitativeEvaluation(name=codes.concept(QUALITATIVE_DIFFERENCE),
                                       value=codes.concept(STATUS_CODES[status]))


def _measurement(name: tuple[str, str, str], value: float, unit: str) -> Any:
    import highdicom as hd

    return hd.sr.Measurement(name=codes.concept(name), value=float(value), unit=codes.concept(codes.unit(unit)))


def current_extras(comparison: Comparison | None, les: Lesion) -> dict[str, Any]:
    """Keyword arguments for a current lesion's group: time point, status, volume change and doubling time."""
    if comparison is None or not usable(comparison):
        return {}
    change = comparison.change_for_current(les.number)
    if change is None:
        return {"time_point_context": time_point(prior=False)}
    extra = []
    if change.volume_change_percent is not None:
        extra.append(_measurement(VOLUME_CHANGE, change.volume_change_percent, "%"))
    if change.doubling_time_days is not None:
        extra.append(_measurement(DOUBLING_TIME, change.doubling_time_days, "d"))
    return {"time_point_context": time_point(prior=False),
            "qualitative_evaluations": [status_evaluation(change.status)], "extra_measurements": extra}


def _prior_group(comparison: Comparison, change: LesionChange, prior: LesionSnapshot, result: AnalysisResult,
                 seg: SegExport, algorithm: Any) -> Any:
    import highdicom as hd

    tracking = None
    finding = codes.ALTERED_STRUCTURE
    current = next((x for x in result.findings.lesions if x.number == change.current_id), None)
    if current is not None:
        info = seg.segment_for(current.label, current.number)
        if info is not None:
            tracking = hd.sr.TrackingIdentifier(uid=info.tracking_uid, identifier=info.tracking_id)
            finding = info.type
    if tracking is None:
        tracking = hd.sr.TrackingIdentifier(uid=str(hd.UID()), identifier=f"prior lesion {prior.number}")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, time_point_context=time_point(prior=True), finding_type=codes.concept(finding),
        algorithm_id=algorithm,
        measurements=[_measurement(codes.LONG_AXIS, prior.long_axis_mm, "mm"),
                      _measurement(codes.SHORT_AXIS, prior.short_axis_mm, "mm"),
                      _measurement(codes.VOLUME, prior.volume_ml, "mL")],
        qualitative_evaluations=[status_evaluation(change.status)])
    context = [hd.sr.UIDRefContentItem(codes.concept(PROCEDURE_STUDY_UID), comparison.prior_study_uid,
                                       relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT),
               hd.sr.DateContentItem(codes.concept(STUDY_DATE), comparison.prior_study_date,
                                     relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT)]
    if comparison.prior_series_uid:
        context.insert(1, hd.sr.UIDRefContentItem(codes.concept(SERIES_UID), comparison.prior_series_uid,
                                                  relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT))
    items = group[0].ContentSequence
    for k, item in enumerate(context):
        items.insert(1 + k, item)  # after the tracking identifier: observation context before the observations
    return group


def prior_groups(comparison: Comparison | None, result: AnalysisResult, seg: SegExport, algorithm: Any) -> list[Any]:
    """One TID 1501 group per lesion of the prior (module docstring); none without a usable comparison."""
    if comparison is None or not usable(comparison):
        return []
    out = [_prior_group(comparison, ch, ch.prior, result, seg, algorithm) for ch in comparison.changes
           if ch.prior is not None]
    logger.info("measurement SR: %d prior lesion groups", len(out))
    return out
