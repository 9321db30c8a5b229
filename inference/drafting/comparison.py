"""The report's words for a comparison with a prior study: the Comparison section, the impression's items.

Everything is read from the ``Comparison`` record (``inference.followup.model``);
nothing is recomputed, so the grounding check
(``inference.drafting.grounding_comparison``) can verify every number against
the same record. Wording, fixed so that each number carries its time point:

- the prior study: its date, description and series, and the interval in
  days (and months from two months on): "Prior study: CT CHEST of 2025-11-06,
  series 3; interval 366 days (12 months).";
- a registration that failed its quality check: "Comparison not made:
  registration failed: <reason>." and no change numbers at all;
- otherwise the registration's quality figure, the change criteria, and one
  line per lesion: "Nodule 1 (prior nodule 2; right upper zone): grown; mean
  diameter prior 7.5 mm, now 11.0 mm (+3.5 mm); long x short axis prior 8 x 7
  mm, now 12 x 10 mm; volume prior 268 mm³, now 905 mm³ (+238%); volume
  doubling time 212 days; prior series 3, image 40; current series 2, image 78.";
  new lesions give only "now", resolved ones ("Prior nodule 3") only "prior";
  a lesion outside the other study's field of view (``not covered``) says so
  and that no comparison is possible, with no change, no doubling time:
  "Nodule 4 (left lower zone): not included in the prior examination's field
  of view; no comparison possible; now 12 x 10 mm (mean 11.0 mm), ...";
- the impression: the change of each lesion that answers a follow-up request
  (``change_clause``), a summary of the changes, and the guideline
  recommendation exactly as the record holds it, with its rule; with no
  recommendation in the record, the record's reason and no advice.
"""

from __future__ import annotations

import logging

from inference.drafting.facts import lesion_noun
from inference.drafting.inputs import ReportInputs, scrub_identifiers
from inference.drafting.quantities import format_value
from inference.findings import lesion_volume_text
from inference.followup.model import ChangeStatus, Comparison, LesionChange, LesionSnapshot
from inference.image_refs import image_text

logger = logging.getLogger(__name__)

MAX_LISTED_CHANGES = 10
DAYS_PER_MONTH = 365.25 / 12.0
NO_PRIOR = "No prior imaging was available for comparison."
OUTSIDE_PRIOR = "not included in the prior examination's field of view; no comparison possible"
OUTSIDE_CURRENT = "not included in the current examination's field of view; no comparison possible"


def months(days: int) -> float:
    """An interval in months (mean Gregorian month)."""
    return days / DAYS_PER_MONTH


def interval_text(c: Comparison) -> str:
    """"366 days (12 months)"; months only from two months on."""
    days = c.interval_days
    text = f"{days} day{'s' if days != 1 else ''}"
    if days >= 60:
        text += f" ({format_value(months(days), 0)} months)"
    return text


def prior_study_text(c: Comparison) -> str:
    """"CT CHEST of 2025-11-06, series 3" (description scrubbed of identifiers)."""
    desc = scrub_identifiers(" ".join(c.prior_study_description.split()))
    head = f"{desc} of {c.prior_study_date.isoformat()}" if desc else c.prior_study_date.isoformat()
    return head + (f", series {c.prior_series_number}" if c.prior_series_number is not None else "")


def noun_for(inputs: ReportInputs, number: int | None) -> str:
    """What to call a compared lesion: its current label's noun, else the first lesion label's, else "lesion"."""
    lesions = inputs.findings.lesions
    les = next((x for x in lesions if x.number == number), None) if number is not None else None
    if les is None and lesions:
        les = lesions[0]
    return lesion_noun(les.name) if les is not None else "lesion"


def _signed(value: float, decimals: int) -> str:
    """A change with its sign: "+3.5", "-2.0", "±0.0" (a sign marks it as a change for the grounding check)."""
    text = format_value(value, decimals)
    return text if text.startswith("-") else f"±{text}" if float(text) == 0.0 else f"+{text}"


def _axes(s: LesionSnapshot) -> str:
    return f"{format_value(s.long_axis_mm, 0)} x {format_value(s.short_axis_mm, 0)} mm"


def _mean(s: LesionSnapshot) -> str:
    return f"{format_value(s.mean_diameter_mm, 1)} mm"


def status_text(ch: LesionChange) -> str:
    """The status as the report words it: its name, or for a ``not covered`` lesion which study did not image it."""
    if ch.status is ChangeStatus.NOT_COVERED:
        return OUTSIDE_PRIOR if ch.current is not None else OUTSIDE_CURRENT
    return ch.status.value


def change_line(ch: LesionChange, inputs: ReportInputs) -> str:
    """One lesion's line of the Comparison section (module docstring)."""
    noun = noun_for(inputs, ch.current_id)
    snap = ch.current or ch.prior
    zone = snap.zone if snap is not None else ""
    if ch.current is not None:
        extra = [f"prior {noun} {ch.prior.number}"] if ch.prior is not None else []
        head = f"{noun.capitalize()} {ch.current.number}"
    else:
        extra = []
        head = f"Prior {noun} {ch.prior.number}" if ch.prior is not None else noun.capitalize()
    inside = "; ".join([*extra, *([zone] if zone else [])])
    parts = [f"{head}{f' ({inside})' if inside else ''}: {status_text(ch)}"]
    pri, cur = ch.prior, ch.current
    if pri is not None and cur is not None:
        dmean = f" ({_signed(ch.diameter_change_mm, 1)} mm)" if ch.diameter_change_mm is not None else ""
        pct = f" ({_signed(ch.volume_change_percent, 0)}%)" if ch.volume_change_percent is not None else ""
        parts += [f"mean diameter prior {_mean(pri)}, now {_mean(cur)}{dmean}",
                  f"long x short axis prior {_axes(pri)}, now {_axes(cur)}",
                  f"volume prior {lesion_volume_text(pri.volume_ml)}, now {lesion_volume_text(cur.volume_ml)}{pct}"]
    elif cur is not None:
        parts.append(f"now {_axes(cur)} (mean {_mean(cur)}), volume {lesion_volume_text(cur.volume_ml)}")
    elif pri is not None:
        parts.append(f"prior {_axes(pri)} (mean {_mean(pri)}), volume {lesion_volume_text(pri.volume_ml)}")
    if ch.doubling_time_days is not None:
        parts.append(f"volume doubling time {format_value(ch.doubling_time_days, 0)} days")
    if pri is not None and (ref := image_text(pri.series_number, pri.instance_number, style="long")):
        parts.append(f"prior {ref}")
    if cur is not None and (ref := image_text(cur.series_number, cur.instance_number, style="long")):
        parts.append(f"current {ref}")
    return "; ".join(parts) + "."


def comparison_section(inputs: ReportInputs) -> list[str]:
    """The Comparison section's sentences; with no comparison, the statement that none was available."""
    c = inputs.comparison
    if c is None:
        return [NO_PRIOR]
    out = [f"Prior study: {prior_study_text(c)}; interval {interval_text(c)}."]
    reg = c.registration
    quality = (f"{reg.quality_name} {format_value(reg.quality_value, 2)} "
               f"(threshold {format_value(reg.quality_threshold, 2)})")
    if not reg.passed:
        reason = reg.reason.strip().rstrip(".") or "its quality check failed"
        out.append(f"Comparison not made: registration failed: {reason}; quality: {quality}.")
        out += [f"Caution: {x.strip().rstrip('.')}." for x in c.cautions if x.strip()]
        return out
    out.append(f"Registration: {reg.kind}, {quality}.")
    out.append(f"Change criteria: {c.criteria.describe()}.")
    if not c.changes:
        out.append(f"No {noun_for(inputs, None)} was measured in either study.")
    out += [change_line(ch, inputs) for ch in c.changes[:MAX_LISTED_CHANGES]]
    if len(c.changes) > MAX_LISTED_CHANGES:
        out.append(f"Further changes are not listed ({len(c.changes) - MAX_LISTED_CHANGES}); see the findings file.")
    out += [f"Caution: {x.strip().rstrip('.')}." for x in c.cautions if x.strip()]
    return out


def usable(c: Comparison | None) -> bool:
    """Whether lesion changes may be quoted: a comparison whose registration passed its check."""
    return c is not None and c.registration.passed


def change_clause(ch: LesionChange, c: Comparison) -> str:
    """A current lesion's change for the impression: "grown since 2025-11-06 (mean diameter prior 7.5 mm, now
    11.0 mm, volume +238%, volume doubling time 212 days)"."""
    since = f"since {c.prior_study_date.isoformat()}"
    if ch.status is ChangeStatus.NOT_COVERED:
        return (f"not included in the field of view of the prior of {c.prior_study_date.isoformat()}; "
                "no comparison possible")
    if ch.status is ChangeStatus.NEW or ch.prior is None or ch.current is None:
        return f"new {since}"
    parts = [f"mean diameter prior {_mean(ch.prior)}, now {_mean(ch.current)}"]
    if ch.volume_change_percent is not None:
        parts.append(f"volume {_signed(ch.volume_change_percent, 0)}%")
    if ch.doubling_time_days is not None:
        parts.append(f"volume doubling time {format_value(ch.doubling_time_days, 0)} days")
    return f"{ch.status.value} {since} ({', '.join(parts)})"


def not_compared_clause(c: Comparison) -> str:
    """Why an asked-about lesion's change is not given although a prior was found."""
    reason = c.registration.reason.strip().rstrip(".") or "its quality check failed"
    return f"comparison with the prior of {c.prior_study_date.isoformat()} not made: registration failed: {reason}"


_SUMMARY_ORDER = (ChangeStatus.GROWN, ChangeStatus.NEW, ChangeStatus.SHRUNK, ChangeStatus.STABLE,
                  ChangeStatus.RESOLVED)


def summary_item(inputs: ReportInputs) -> str | None:
    """The impression's change summary: "Since the prior of 2025-11-06 (366 days): 1 grown nodule (nodule 1,
    volume doubling time 212 days), 1 new nodule (nodule 4), 1 resolved nodule (prior nodule 3)."."""
    c = inputs.comparison
    if c is None:
        return None
    if not c.registration.passed:
        return _cap(not_compared_clause(c)) + "."
    if not c.changes:
        return None
    parts = []
    unseen = c.by_status(ChangeStatus.NOT_COVERED)
    groups: list[tuple[ChangeStatus, list[LesionChange]]] = [(status, c.by_status(status)) for status in _SUMMARY_ORDER]
    groups += [(ChangeStatus.NOT_COVERED, [ch for ch in unseen if ch.current is not None]),
               (ChangeStatus.NOT_COVERED, [ch for ch in unseen if ch.current is None])]
    for status, group in groups:
        if not group:
            continue
        noun = noun_for(inputs, group[0].current_id)
        names = []
        for ch in group:
            name = (f"{noun} {ch.current_id}" if ch.current_id is not None else f"prior {noun} {ch.prior_id}")
            if ch.doubling_time_days is not None:
                name += f", volume doubling time {format_value(ch.doubling_time_days, 0)} days"
            names.append(name)
        plural = "s" if len(group) != 1 else ""
        if status is ChangeStatus.NOT_COVERED:  # no change to count: say where it lay instead
            which = "prior" if group[0].current is not None else "current"
            parts.append(f"{len(group)} {noun}{plural} outside the {which} examination's field of view, not "
                         f"compared ({'; '.join(names)})")
            continue
        parts.append(f"{len(group)} {status.value} {noun}{plural} ({'; '.join(names)})")
    return f"Since the prior of {c.prior_study_date.isoformat()} ({c.interval_days} days): {', '.join(parts)}."


def recommendation_item(inputs: ReportInputs) -> str | None:
    """The record's guideline recommendation with its rule, or the record's reason for giving none."""
    c = inputs.comparison
    if c is None:
        return None
    rec = c.recommendation
    if rec is None:
        why = c.recommendation_reason.strip().rstrip(".")
        return f"No guideline follow-up recommendation is given: {why}." if why else None
    text = f"Follow-up recommendation ({rec.rule}): {rec.text.strip()}"
    text = text if text.endswith(".") else text + "."
    if rec.basis:
        text += f" Basis: {rec.basis.strip().rstrip('.')}."
    if rec.assumptions:
        text += f" Assumed: {'; '.join(a.strip().rstrip('.') for a in rec.assumptions)}."
    return text


def prompt_lines(inputs: ReportInputs) -> list[str]:
    """The comparison facts for a language model's prompt: the Comparison section's own lines."""
    return comparison_section(inputs) if inputs.comparison is not None else []


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
