"""Follow-up reading without Qt: find the prior of an open study, align it, analyse it, compare.

``find_priors`` lists the same patient's earlier studies in the index with
their most comparable series (same modality, same body region when both say,
nearest slice thickness), newest first; ``compare_with_prior`` registers the
prior series to the current one (``inference.followup.registration``), gets
the prior's analysis by the same model and version (the analysis store's copy
when there is one, else analysed now and kept there), matches the lesions and
derives the guideline recommendation. ``workstation report --prior`` and the
window both call these.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from inference.cancel import CancelledError, CancelToken
from inference.contract import AnalysisResult, ProgressCallback, no_progress
from inference.engine import Engine
from inference.errors import NotAVolumeError, WorkstationError
from inference.followup.guidelines import recommend
from inference.followup.matching import match_lesions
from inference.followup.model import ChangeStatus, Comparison
from inference.followup.registration import register
from inference.followup.space import FieldOfView
from inference.volume import Volume
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import study_key
from workstation.index.db import StudyIndex
from workstation.index.rows import SeriesRow, StudyRow
from workstation.services.analysis import analyze_source
from workstation.services.analysis_record import FINDINGS_FILE, record_analysis
from workstation.services.analysis_store import AnalysisStore
from workstation.services.studies import SeriesSource, load_series_volumes, resolve_for_analysis

logger = logging.getLogger(__name__)

SCREENING_WORDS = ("screening", "lung cancer screen", "ldct", "low-dose", "low dose")
"""Words in the request or notes that make the exam a screening CT (Lung-RADS instead of Fleischner)."""


@dataclass(frozen=True)
class PriorCandidate:
    """An earlier study of the same patient and its series most comparable to the current one."""

    study: StudyRow
    series: SeriesRow
    slice_thickness_mm: float | None

    @property
    def study_date(self) -> date | None:
        """The prior's StudyDate (None when missing or malformed)."""
        return parse_da(self.study.date)

    @property
    def target(self) -> str:
        """The series as ``resolve_series`` takes it (its index id)."""
        return str(self.series.id)


def parse_da(value: str) -> date | None:
    """A DICOM DA (``YYYYMMDD``) as a date, None when it is not one."""
    text = value.strip().replace("-", "").replace(".", "")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
    except ValueError:
        return None


def _current_study(index: StudyIndex, header: InstanceHeader) -> StudyRow | None:
    return index.study_by_key(study_key(header))


def find_priors(index: StudyIndex, current: SeriesSource) -> list[PriorCandidate]:
    """The same patient's earlier studies holding a comparable volume series, newest first.

    Comparable: the current series' modality and, when both series say, the
    same BodyPartExamined; among those, the nearest slice thickness (then most images).
    """
    first = current.headers[0]
    study = _current_study(index, first)
    when = parse_da(first.study_date)
    if study is None or when is None:
        return []
    found: list[PriorCandidate] = []
    for other in index.studies():
        if other.id == study.id or other.patient.id != study.patient.id:
            continue
        other_date = parse_da(other.date)
        if other_date is None or other_date >= when:
            continue
        best: tuple[float, int, SeriesRow, float | None] | None = None
        for row in index.series_of_study(other.id):
            if row.kind not in ("volume", "multi_volume") or row.modality != first.modality:
                continue
            headers = index.series_headers(row.id)
            if not headers:
                continue
            h = headers[0]
            if first.body_part and h.body_part and h.body_part.upper() != first.body_part.upper():
                continue
            gap = abs((h.slice_thickness or 0.0) - (first.slice_thickness or 0.0))
            key = (gap, -len(headers), row, h.slice_thickness)
            if best is None or key[:2] < best[:2]:
                best = key
        if best is not None:
            found.append(PriorCandidate(other, best[2], best[3]))
    found.sort(key=lambda c: c.study.date, reverse=True)
    return found


def is_screening(texts: list[str]) -> bool:
    """Whether the request or notes call the exam a screening CT."""
    joined = " ".join(texts).lower()
    return any(word in joined for word in SCREENING_WORDS)


def prior_analysis(
    source: SeriesSource,
    volume: Volume,
    engine: Engine,
    store: AnalysisStore,
    *,
    model_id: str,
    device: str,
    progress: ProgressCallback,
    cancel: CancelToken,
) -> AnalysisResult:
    """The prior's analysis by the same model and version: the store's when it has one, else run and kept."""
    model = engine.get(model_id)
    kept = store.load(source, model.id, model.version, volume)
    if kept is not None:
        progress(1.0, "reusing the prior's analysis")
        return kept
    result = analyze_source(source, engine, model_id=model_id, device=device, progress=progress, cancel=cancel)
    try:
        store.save(source, result)
    except OSError as exc:
        logger.warning("prior's analysis not kept in the store: %s", exc)
    return result


def compare_with_prior(
    current: SeriesSource,
    current_volume: Volume,
    current_result: AnalysisResult,
    prior: SeriesSource,
    *,
    engine: Engine,
    store: AnalysisStore,
    model_id: str,
    device: str = "auto",
    screening: bool = False,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
    prior_volume: Volume | None = None,
    prior_analysed: Callable[[AnalysisResult], None] | None = None,
) -> Comparison:
    """Register, analyse the prior (or reuse), match lesions and recommend: the ``Comparison``.

    ``prior_volume``: the prior series already loaded (the window shows it while this runs), so it is
    not read twice. ``prior_analysed`` gets the prior's analysis (its label map on the prior's grid, which
    the record does not hold) as soon as it is there: the window outlines the prior's lesions with it.

    A registration that fails its check gives a comparison without lesion
    changes and with the reason among its cautions (never used silently).
    Lesions outside the other study's field of view (a chest-only prior to a
    longer current) are ``not covered``, never ``new`` or ``resolved``.
    """
    token = cancel or CancelToken()
    first, prior_first = current.headers[0], prior.headers[0]
    now, then = parse_da(first.study_date), parse_da(prior_first.study_date)
    if now is None or then is None:
        raise NotAVolumeError(f"{prior.label}: study dates missing; the interval cannot be stated")
    if prior_volume is None:
        progress(0.0, "loading the prior series")
        prior_volume = load_series_volumes(prior).volumes[0]
    token.raise_if_cancelled()
    registration = register(current_volume, prior_volume, progress=_scaled(progress, 0.05, 0.4), cancel=token)
    prior_result = prior_analysis(
        prior,
        prior_volume,
        engine,
        store,
        model_id=model_id,
        device=device,
        progress=_scaled(progress, 0.4, 0.95),
        cancel=token,
    )
    if prior_analysed is not None:
        prior_analysed(prior_result)
    interval = (now - then).days
    cautions: tuple[str, ...] = ()
    if registration.passed:
        changes = match_lesions(current_result.findings.lesions, prior_result.findings.lesions, registration, interval,
                                current_field=FieldOfView.of(current_volume), prior_field=FieldOfView.of(prior_volume))
    else:
        changes = ()
        cautions = (f"lesions were not compared: {registration.reason}",)
    outcome = recommend(current_result.findings.lesions, changes, screening=screening, interval_days=interval)
    progress(1.0, "comparison done")
    return Comparison(
        prior_study_date=then,
        prior_study_uid=prior_first.study_uid,
        prior_study_description=prior_first.study_description,
        prior_series_number=prior_first.series_number,
        prior_series_uid=prior_first.series_uid,
        current_study_date=now,
        registration=registration,
        changes=changes,
        recommendation=outcome.recommendation,
        recommendation_reason=outcome.reason,
        cautions=cautions,
    )


def comparison_for_report(
    db_path: Path,
    current: SeriesSource,
    current_volume: Volume,
    current_result: AnalysisResult,
    prior_target: str | None,
    *,
    engine: Engine,
    store: AnalysisStore,
    model_id: str,
    device: str = "auto",
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[Comparison | None, str]:
    """The comparison ``workstation report`` adds, or None and why not ("" when there is simply no prior).

    With ``prior_target`` (as ``analyze`` takes it) that prior, whose failures
    raise; else the newest comparable prior in the index, whose failures
    become the returned note (a report is not refused for an unusable prior).
    Screening CTs (by their notes) use Lung-RADS, others Fleischner.
    """
    model = engine.get(model_id)
    with StudyIndex(db_path) as index:
        if prior_target is not None:
            prior = resolve_for_analysis(prior_target, index, tuple(model.modalities))
        else:
            candidates = find_priors(index, current)
            if not candidates:
                logger.info("no prior study of this patient in the index")
                return None, ""
            prior = SeriesSource(
                f"series {candidates[0].series.id} ({candidates[0].series.description})",
                index.series_headers(candidates[0].series.id),
            )
        study = _current_study(index, current.headers[0])
        texts = [n.text for n in index.notes(study.id)] if study is not None else []
    first = current.headers[0]
    texts.append(first.study_description)
    try:
        comparison = compare_with_prior(
            current,
            current_volume,
            current_result,
            prior,
            engine=engine,
            store=store,
            model_id=model_id,
            device=device,
            screening=is_screening(texts),
            progress=progress,
            cancel=cancel,
        )
    except CancelledError:
        raise
    except WorkstationError as exc:
        if prior_target is not None:
            raise
        logger.warning("comparison with the prior not made: %s", exc)
        return None, f"comparison with the prior study ({prior.label}) not made: {exc}"
    return comparison, ""


def deidentified(comparison: Comparison) -> Comparison:
    """The comparison without the prior's UIDs (its date and series number stay: the report quotes them)."""
    return replace(comparison, prior_study_uid="", prior_series_uid="")


def write_comparison(out_dir: Path, comparison: Comparison, source: SeriesSource, result: AnalysisResult) -> Path:
    """Add the ``"comparison"`` block to ``out_dir/findings.json`` and re-record the folder's analysis."""
    path = out_dir / FINDINGS_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["comparison"] = comparison.to_dict()
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    record_analysis(out_dir, source, result)  # the record hashes findings.json: keep it matching
    return path


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison as short lines for the terminal: prior, alignment, each lesion, recommendation."""
    c, reg = comparison, comparison.registration
    lines = [
        f"comparison with prior of {c.prior_study_date.isoformat()} (series {c.prior_series_number or '-'}, "
        f"{c.interval_days} days earlier)",
        f"  alignment: {reg.kind}, {reg.quality_name} {reg.quality_value:.3f} "
        f"({'passed' if reg.passed else 'FAILED: ' + reg.reason})",
    ]
    for ch in c.changes:
        gone = "not imaged" if ch.status is ChangeStatus.NOT_COVERED else "absent"
        then = f"{ch.diameter_then_mm:.1f} mm" if ch.diameter_then_mm is not None else gone
        now = f"{ch.diameter_now_mm:.1f} mm" if ch.diameter_now_mm is not None else gone
        vdt = f", doubling time {ch.doubling_time_days:.0f} days" if ch.doubling_time_days is not None else ""
        name = f"lesion {ch.current_id}" if ch.current_id is not None else f"prior lesion {ch.prior_id}"
        lines.append(f"  {name}: {ch.status.value}, {then} -> {now}{vdt}")
    if c.recommendation is not None:
        lines.append(f"  recommendation ({c.recommendation.rule}): {c.recommendation.text}")
    elif c.recommendation_reason:
        lines.append(f"  no recommendation: {c.recommendation_reason}")
    lines += [f"  caution: {x}" for x in c.cautions]
    return lines


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    def report(fraction: float, stage: str) -> None:
        progress(start + (end - start) * max(0.0, min(1.0, fraction)), stage)

    return report
