"""The headless report pipeline: analysis (or a recorded one reused), draft, grounding check, document, exports.

``run_report`` is what ``workstation report`` and the frozen app's self-test
run; the window gathers its inputs with ``report_inputs`` and drafts on its
worker thread through the same pipeline (``workstation.services.drafting``). Steps:

1. resolve the study or series as ``analyze`` does, and check the language
   model folder first, so a bad ``--llm`` fails before minutes of analysis;
2. analyse (``workstation.services.analysis.analyze_source``, as ``analyze``
   does), or reuse the analysis kept in the analysis store (shared with the
   window), else the one recorded in the output folder
   (``workstation.services.analysis_record``: same series, model, files, grid);
   the output folder and the store both hold it afterwards;
3. gather the drafter's inputs: the study's notes from the index, with the
   patient's own name, ID and birth date removed from them (on top of the
   drafting package's generic scrub), technique facts from the volume, and
   the measured findings;
4. draft, clean, check and build the unsigned ``ReportDocument`` with
   ``draft_document`` (a local language model when one is configured, else
   the template): the one drafting pipeline, shared with the window;
5. autosave it (never over a draft a radiologist has touched), and write
   ``report.txt``, ``report.json`` (document + grounding), the draft PDF,
   SEG, measurement SR and draft report SR, each DICOM object checked with
   ``dciodvfy`` when installed.

Nothing here imports torch at module level, nor logs patient data or note text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.cancel import CancelToken
from inference.contract import AnalysisResult, ProgressCallback, no_progress
from inference.drafting import (
    ClinicalNote,
    GroundingReport,
    ReportDraft,
    ReportInputs,
    SentenceCheck,
    TechniqueFacts,
    make_drafter,
)
from inference.engine import BUILTIN_CT
from inference.followup.model import Comparison
from inference.volume import Volume
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import study_key
from workstation.document import AutosaveStore, ReportDocument, SentenceOrigin
from workstation.export import ExportError, ExportOptions, ValidationResult, export_study
from workstation.export.deid import Deidentifier, identifier_patterns, remove_identifiers
from workstation.export.files import safe_target, write_atomic
from workstation.index.db import StudyIndex
from workstation.services import audit_trail
from workstation.services.analysis import analyze_source, make_engine
from workstation.services.analysis_record import FINDINGS_FILE, LABELS_FILE, RECORD_FILE
from workstation.services.analysis_store import AnalysisStore, find_reusable, keep_everywhere
from workstation.services.drafting import DraftSubject, TokenCallback, draft_document
from workstation.services.followup import comparison_for_report, deidentified, write_comparison
from workstation.services.interpolation import InterpolationPolicy, check_interpolation, record_override
from workstation.services.studies import load_series_volumes, resolve_for_analysis
from workstation.settings import Settings

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
DRAFT_STATUS = "DRAFT - not signed"
DEFAULT_FORMATS = frozenset({"seg", "sr", "report_sr", "pdf", "txt"})
_ANALYSIS_END, _DRAFT_END = 0.6, 0.9


@dataclass
class ReportRunResult:
    """What ``run_report`` made: the unsigned document, its draft and check, the files written and their checks."""

    out_dir: Path
    study_key: str
    series_label: str
    inputs: ReportInputs
    draft: ReportDraft
    grounding: GroundingReport
    document: ReportDocument
    files: dict[str, Path] = field(default_factory=dict)
    validation: dict[str, ValidationResult] = field(default_factory=dict)
    reused_analysis: bool = False
    reused_from: str = ""  # "the analysis store" or "the output folder" when reused
    autosave: Path | None = None
    deidentified: bool = False
    notes: list[str] = field(default_factory=list)
    comparison: Comparison | None = None  # against the prior study (``workstation.services.followup``)

    @property
    def flagged(self) -> list[SentenceCheck]:
        """Sentences the grounding check flagged, with their reasons."""
        return self.grounding.flagged

    @property
    def subject(self) -> DraftSubject:
        """What was drafted, to draft it again through the same pipeline (the self-test's language model step)."""
        doc = self.document
        return DraftSubject(self.inputs, doc.study_key, doc.source.analysis_model, doc.source.analysis_model_version,
                            doc.study_description, doc.series_uid)

    @property
    def valid(self) -> bool:
        """No ``dciodvfy`` errors in any DICOM object written (objects not validated count as fine)."""
        return all(not v.errors for v in self.validation.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``--json``); without the study key and source label when de-identified."""
        out: dict[str, Any] = {
            "status": DRAFT_STATUS, "text": self.document.text(),
            "drafter": self.draft.metadata.get("drafter", ""), "source": self.document.source.to_dict(),
            "grounding": {"ok": self.grounding.ok, "sentences": len(self.grounding.sentences),
                          "flagged": [{"section": c.section, "text": c.text, "reasons": list(c.reasons)}
                                      for c in self.flagged]},
            "reused_analysis": self.reused_analysis, "reused_from": self.reused_from,
            "files": {k: str(v) for k, v in self.files.items()},
            "validation": {k: {"available": v.available, "errors": list(v.errors), "warnings": len(v.warnings)}
                           for k, v in self.validation.items()},
            "autosave": str(self.autosave) if self.autosave else None, "notes": list(self.notes),
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }
        if not self.deidentified:
            out.update({"study_key": self.study_key, "series": self.series_label})
        return out


# ----------------------------------------------------------------------------- inputs


def configured_llm_dir(settings: Settings) -> Path | None:
    """The language model folder of the settings (``llm_dir``), if the settings have one and it is set."""
    value = getattr(settings, "llm_dir", None)
    return Path(value) if value else None


def _note_source(source: str, kind: str, number: int) -> str:
    """A note's source as the drafter sees it: the DICOM field, or the kind and number (never a path)."""
    if source.startswith("DICOM "):
        return source
    return f"{kind or 'note'} {number}"


def report_inputs(index: StudyIndex | None, study_id: int | None, result: AnalysisResult, volume: Volume, *,
                  headers: Sequence[InstanceHeader] = (), comparison: Comparison | None = None) -> ReportInputs:
    """The drafter's inputs: the study's notes (de-identified), technique facts and the measured findings.

    Notes come from the index (``study_id``); for a series not in the index,
    from ``headers`` (their DICOM text fields and text files beside them).
    Each note's text has the patient's name parts, ID and birth date removed;
    sources are DICOM field names or "text file N", never file paths. A
    ``comparison`` with a prior (``workstation.services.followup``) is passed on
    for the Comparison section, with the same identifiers removed from the
    prior's description.
    """
    study = index.study(study_id) if index is not None and study_id is not None else None
    first = headers[0] if headers else None
    rows: list[tuple[str, str, str]]  # (source, kind, text) of each note
    if study is not None and index is not None:
        rows = [(n.source, n.kind, n.text) for n in index.notes(study.id)]
        patterns = identifier_patterns(study.patient.name, study.patient.patient_id, study.patient.birth_date)
        description = study.description
    else:
        rows = _notes_of_files(headers)
        patterns = identifier_patterns(first.patient_name, first.patient_id, first.patient_birth_date) if first else []
        description = first.study_description if first else ""
    notes = tuple(ClinicalNote(_note_source(source, kind, i), remove_identifiers(text, patterns))
                  for i, (source, kind, text) in enumerate(rows, start=1))
    prov = result.provenance
    technique = TechniqueFacts.from_metadata(volume.modality, volume.metadata,
                                             remove_identifiers(description, patterns))
    if comparison is not None:  # the prior's description is free text from the headers, too
        comparison = dataclasses.replace(comparison, prior_study_description=remove_identifiers(
            comparison.prior_study_description, patterns))
    return ReportInputs(findings=result.findings, technique=technique, notes=notes, label_table=result.label_table,
                        analysis=f"{prov.model_id} {prov.model_version}".strip(), comparison=comparison)


def _notes_of_files(headers: Sequence[InstanceHeader]) -> list[tuple[str, str, str]]:
    """``(source, kind, text)`` of the notes in the headers' DICOM fields and the text files beside them."""
    from workstation.notes import notes_from_folders, notes_from_headers

    found = [*notes_from_headers(headers), *notes_from_folders(h.ref for h in headers)]
    return [(n.source, n.kind, n.text) for n in found]


# ----------------------------------------------------------------------------- autosave


def _autosave(doc: ReportDocument, settings: Settings, notes: list[str]) -> Path | None:
    """Save the draft for the editor, unless the saved one holds a radiologist's work (then keep that)."""
    store = AutosaveStore(settings=settings)
    saved = store.load(doc.study_key)
    if saved is not None and (saved.signed or any(s.provenance is not SentenceOrigin.AI for _, s in saved.sentences())):
        notes.append("the saved report of this study has a radiologist's changes or signature and was left as it "
                     "is; this draft is in report.json")
        return None
    return store.save(doc)


# ----------------------------------------------------------------------------- the pipeline


def _scaled(progress: ProgressCallback, start: float, end: float) -> ProgressCallback:
    """The analysis' progress as a part of the whole run (its "done" is not the run's)."""
    def report(fraction: float, stage: str) -> None:
        progress(start + (end - start) * fraction, "analysis done" if stage == "done" else stage)

    return report


def _check_out_dir(out: Path, headers: Sequence[InstanceHeader]) -> None:
    """Refuse a folder holding source files, at any depth: they are never written beside, and a report.txt
    there would come back as a "clinical note" of the study on its next import."""
    for folder in {Path(h.file_ref.path).absolute().parent for h in headers}:
        if folder == out or out in folder.parents:
            raise ExportError(f"{out}: holds source files of the study; write the report to another folder")


def _study_id(index: StudyIndex, header: InstanceHeader) -> int | None:
    study = index.study_by_key(study_key(header))
    return study.id if study is not None else None


def run_report(settings: Settings, target: str, out_dir: Path, *, llm_dir: Path | None = None,
               model_id: str = BUILTIN_CT, device: str = "auto", reuse: bool = True,
               progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
               on_token: TokenCallback | None = None, export_formats: Iterable[str] = DEFAULT_FORMATS,
               deidentify: bool = False, max_new_tokens: int | None = None,
               allow_interpolated: bool = False, prior: str | None = None,
               compare: bool = True) -> ReportRunResult:
    """Analyse (or reuse), draft, check and export the report of a study or series into ``out_dir``.

    ``target`` is what ``analyze`` takes (``study:ID``, a UID, a series id, a
    folder). ``llm_dir`` overrides the settings' language model folder; with
    neither, the template drafter writes. ``report.txt`` and ``report.json``
    are always written; ``export_formats`` picks among SEG, SRs, PDF and NIfTI.
    Errors are ``WorkstationError``s naming what failed; a cancel raises ``CancelledError``.
    A series with more than ``settings.max_interpolated_share`` of its slices
    interpolated is refused (``InterpolatedSeriesError``) unless ``allow_interpolated``;
    the override is then a caution of the findings, quoted by the draft.
    With ``compare``, the study is compared with ``prior`` (a target as ``analyze`` takes it) or, when None,
    the newest comparable prior in the index (``findings.json`` gains ``"comparison"``).
    """
    cancel = cancel or CancelToken()
    out = Path(out_dir).expanduser().absolute()
    folder = llm_dir if llm_dir is not None else configured_llm_dir(settings)
    drafter = make_drafter(folder, device, max_new_tokens)  # a bad model folder fails here, before the analysis
    engine = make_engine(settings)
    model = engine.get(model_id)
    with StudyIndex(settings.db_path) as index:
        source = resolve_for_analysis(target, index, tuple(model.modalities))
        study_id = _study_id(index, source.headers[0])
    _check_out_dir(out, source.headers)
    notes: list[str] = []
    progress(0.0, "loading series")
    loaded = load_series_volumes(source)  # read once: the reuse check and the analysis both need it
    volume = loaded.volumes[0]
    policy = InterpolationPolicy(settings.max_interpolated_share, allow_interpolated)
    overridden = check_interpolation(volume, source.label, policy)  # refused here, before any reuse or run
    store = AnalysisStore.for_settings(settings)  # shared with the window: the first place to look
    result, found_in = find_reusable(store, out, source, model.id, model.version, volume) if reuse else (None, "")
    reused = result is not None
    if result is not None and overridden is not None:
        record_override(result, overridden)
    if result is None:
        result = analyze_source(source, engine, model_id=model_id, device=device, loaded=loaded, policy=policy,
                                progress=_scaled(progress, 0.02, _ANALYSIS_END), cancel=cancel)
    else:
        progress(_ANALYSIS_END, f"reusing the analysis in {found_in}")
        if len(loaded.volumes) > 1:  # a fresh analysis notes this in its provenance (analyze_source)
            notes.append(f"series holds {len(loaded.volumes)} volumes (time points/echoes); analysed the first")
    notes += keep_everywhere(store, out, source, result, found_in=found_in,
                             label=f"series #{source.headers[0].series_number}" if deidentify else source.label)
    cancel.raise_if_cancelled()
    comparison = None
    if compare:
        if prior is None:  # pacs.query_priors: a newer prior on the PACS is retrieved for the automatic choice
            from workstation.services.pacs_priors import fetch_newest_pacs_prior

            progress(_ANALYSIS_END, "looking for priors on the PACS")
            notes += [n for n in [fetch_newest_pacs_prior(settings, source, cancel=cancel)] if n]
        comparison, why_not = comparison_for_report(
            settings.db_path, source, volume, result, prior, engine=engine, store=store, model_id=model_id,
            device=device, progress=lambda _f, stage: progress(_ANALYSIS_END, stage), cancel=cancel)
        notes += [why_not] if why_not else []
        if comparison is not None:
            comparison = deidentified(comparison) if deidentify else comparison
            write_comparison(out, comparison, source, result)
    with StudyIndex(settings.db_path) as index:
        inputs = report_inputs(index, study_id, result, volume, headers=source.headers, comparison=comparison)
    progress(_ANALYSIS_END, f"drafting ({'language model ' + folder.name if folder else 'template'})")
    first = source.headers[0]
    subject = DraftSubject.of(study_key(first), inputs, result, study_description=inputs.technique.study_description,
                              series_uid=first.series_uid)
    drafted = draft_document(subject, drafter, on_token=on_token, cancel=cancel,
                             progress=_scaled(progress, _ANALYSIS_END, _DRAFT_END))
    draft, grounding, doc = drafted.draft, drafted.grounding, drafted.document
    autosave = _autosave(doc, settings, notes)
    progress(_DRAFT_END, "exporting report, SEG and SR")
    options = ExportOptions(formats=frozenset(export_formats) | {"txt"}, deidentify=deidentify)
    try:
        exported = export_study(result, source.headers, out, report=doc, options=options, comparison=comparison)
    except Exception as exc:
        audit_trail.export_written(doc.study_key, out, [], exc, signed=doc.signed, deidentified=deidentify)
        raise
    audit_trail.export_written(doc.study_key, out, exported.files.values(), signed=doc.signed,
                               deidentified=deidentify)
    files = {**_analysis_files(out), **exported.files, "json": out / REPORT_JSON}
    run = ReportRunResult(out, doc.study_key, source.label, inputs, draft, grounding, doc, files,
                          dict(exported.validation), reused, found_in, autosave, deidentify,
                          [*notes, *exported.notes, *result.provenance.notes], comparison)
    _write_report_json(run, source.headers, exported.salt)
    progress(1.0, "done")
    logger.info("report drafted (%s): %d sentences, %d flagged, analysis %s", draft.metadata.get("drafter", "?"),
                len(grounding.sentences), len(grounding.flagged), "reused" if reused else "run")
    return run


def _analysis_files(out: Path) -> dict[str, Path]:
    names = {"labels": LABELS_FILE, "findings": FINDINGS_FILE, "montage": "montage.png", "analysis_record": RECORD_FILE}
    return {k: out / name for k, name in names.items() if (out / name).is_file()}


def _write_report_json(run: ReportRunResult, headers: Sequence[InstanceHeader], salt: str | None) -> Path:
    """``report.json``: the document, the grounding check, the draft's metadata, exports and validation.

    De-identified, the study and series UIDs are replaced as in the DICOM
    exports (same salt) and the source label is left out.
    """
    document = run.document.to_dict()
    meta = dict(run.draft.metadata)
    data: dict[str, Any] = {
        "status": DRAFT_STATUS, "document": document, "grounding": run.grounding.to_dict(), "draft": meta,
        "analysis": {"model_id": run.inputs.analysis, "reused": run.reused_analysis,
                     **({} if run.deidentified else {"series": run.series_label})},
        "files": {k: v.name for k, v in run.files.items()},
        "validation": {k: {"available": v.available, "errors": v.errors, "warnings": v.warnings, "iod": v.iod}
                       for k, v in run.validation.items()},
        "notes": run.notes,
    }
    if run.deidentified:
        deid = Deidentifier(salt)
        document["study_key"] = deid.uid(document["study_key"])
        document["series_uid"] = deid.uid(document["series_uid"])
        first = headers[0]
        deid.learn(first.patient_name, first.patient_id, first.accession, first.patient_birth_date)
        data = _scrub_values(data, deid)
    target = safe_target(run.out_dir / REPORT_JSON, [h.file_ref.path for h in headers])
    payload = json.dumps(data, indent=1, ensure_ascii=False, default=str).encode("utf-8")
    return write_atomic(target, lambda tmp: tmp.write_bytes(payload))


def _scrub_values(value: Any, deid: Deidentifier) -> Any:
    """Every string in a JSON-ready structure with the known identifiers removed (keys kept)."""
    if isinstance(value, str):
        return deid.scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_values(v, deid) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_values(v, deid) for v in value]
    return value


def validation_lines(validation: Mapping[str, ValidationResult]) -> list[str]:
    """One line per validated object (for the terminal)."""
    return [v.summary() for v in validation.values()]
