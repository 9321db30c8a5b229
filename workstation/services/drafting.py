"""The one drafting pipeline: draft, clean, check, document.

``draft_document`` is the only code path that turns an analysis' findings and
a study's notes into a draft ``ReportDocument``. ``workstation report``
(``workstation.services.reporting.run_report``), the self-test and the window's
drafting worker all call it, so a draft is cleaned, checked and flagged the
same way wherever it is written:

1. the drafter writes (a local language model, streamed to ``on_token``, or
   the template);
2. ``clean_draft`` removes control characters and U+FFFD (undecodable bytes a
   model can emit, or a note's stray bytes the template quotes), which mean
   nothing in a report and make DICOM text values invalid;
3. ``check_draft`` checks every sentence against the findings and notes;
4. ``build_document`` makes the unsigned document ("AI (unreviewed)") of the
   cleaned sentences with the check's flags and finding links, and records
   the draft in the audit trail.

A cancelled draft raises ``CancelledError`` before it is checked (and is not
recorded). Qt-free; nothing here imports torch, nor logs report text or notes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from inference.cancel import CancelledError, CancelToken
from inference.contract import AnalysisResult, ProgressCallback, no_progress
from inference.drafting import SECTIONS, Drafter, GroundingReport, ReportDraft, ReportInputs, SentenceCheck, check_draft
from inference.gil import share_gil
from workstation.document import DraftSource, ReportDocument, ReportError
from workstation.services import audit_trail

logger = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]
CHECK_STAGE = "checking the draft against the findings and notes"
CHECK_FRACTION = 0.93  # of the drafting step: the check is quick next to the drafting
_UNPRINTABLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")


@dataclass(frozen=True)
class DraftSubject:
    """What a draft is written for: the drafter's inputs, and the study and analysis its document belongs to.

    ``model_id``/``model_version`` name the analysis the findings come from (the
    document's source); ``study_key`` names the study (and its autosave file).
    """

    inputs: ReportInputs
    study_key: str = ""
    model_id: str = ""
    model_version: str = ""
    study_description: str = ""
    series_uid: str = ""

    @classmethod
    def of(cls, study_key: str, inputs: ReportInputs, result: AnalysisResult, *, study_description: str = "",
           series_uid: str = "") -> DraftSubject:
        """The subject of a draft of ``result``'s findings (its provenance names the analysis)."""
        prov = result.provenance
        return cls(inputs, study_key, prov.model_id, prov.model_version, study_description, series_uid)


@dataclass(frozen=True)
class DraftOutcome:
    """A finished draft: the cleaned draft, its grounding check, and the document built from both."""

    draft: ReportDraft
    grounding: GroundingReport
    document: ReportDocument

    @property
    def flagged(self) -> list[SentenceCheck]:
        """Sentences the grounding check flagged, with their reasons."""
        return self.grounding.flagged


def clean_draft(draft: ReportDraft) -> ReportDraft:
    """The draft without control characters or U+FFFD (undecodable bytes a model can emit), spaces normalised.

    Such characters mean nothing in a report and make DICOM text values
    invalid; the model's raw output stays in the metadata (``raw_text``).
    A sentence left empty is dropped (``ReportDraft`` keeps no empty sentence).
    """
    sections = {s: [" ".join(_UNPRINTABLE.sub("", t).split()) for t in draft[s]] for s in SECTIONS}
    return ReportDraft(sections, dict(draft.metadata))


def draft_document(subject: DraftSubject, drafter: Drafter, *, on_token: TokenCallback | None = None,
                   cancel: CancelToken | None = None, progress: ProgressCallback = no_progress) -> DraftOutcome:
    """Draft ``subject``'s report with ``drafter``, clean it, check it and build its unsigned document.

    Text is streamed to ``on_token`` as the drafter writes; ``progress`` hears
    ``CHECK_STAGE`` once the draft is written. A cancel (``cancel`` set, or the
    draft marked ``cancelled``) raises ``CancelledError``; a document that
    disagrees with its check raises ``ReportError``.
    """
    draft = clean_draft(drafter.draft(subject.inputs, on_token=on_token, cancel=cancel))
    if draft.metadata.get("cancelled") or (cancel is not None and cancel.cancelled):
        raise CancelledError("report drafting cancelled")
    progress(CHECK_FRACTION, CHECK_STAGE)
    grounding = check_draft(draft, subject.inputs)
    share_gil()  # between the pipeline's pure-Python steps (see inference.gil)
    document = _document(draft, grounding, study_key=subject.study_key, model_id=subject.model_id,
                         model_version=subject.model_version, study_description=subject.study_description,
                         series_uid=subject.series_uid)
    logger.info("report drafted (%s): %d sentences, %d flagged", draft.metadata.get("drafter", "?"),
                len(grounding.sentences), len(grounding.flagged))
    return DraftOutcome(draft, grounding, document)


def build_document(study_key: str, draft: ReportDraft, grounding: GroundingReport, result: AnalysisResult, *,
                   study_description: str = "", series_uid: str = "") -> ReportDocument:
    """An unsigned document of the draft's sentences ("AI (unreviewed)"), each with its check's flags and links.

    The document step of ``draft_document``, for a draft made elsewhere (a
    test's hand-written one). Sentences are addressed as the check addresses
    them, (section, index); a mismatch raises ``ReportError`` rather than losing a flag.
    """
    prov = result.provenance
    return _document(draft, grounding, study_key=study_key, model_id=prov.model_id, model_version=prov.model_version,
                     study_description=study_description, series_uid=series_uid)


def _document(draft: ReportDraft, grounding: GroundingReport, *, study_key: str, model_id: str, model_version: str,
              study_description: str, series_uid: str) -> ReportDocument:
    source = DraftSource.from_metadata(draft.metadata, model_id, model_version)
    doc = ReportDocument.from_draft(study_key, [(s, draft[s]) for s in SECTIONS], source,
                                    study_description=study_description, series_uid=series_uid)
    for check in grounding.sentences:
        if not check.reasons and not check.links:
            continue
        sentence = doc.sentence_at(check.section, check.index)
        if sentence.text != check.text.strip():
            raise ReportError(f"grounding check and document disagree on sentence {check.index} of {check.section}")
        doc.apply_grounding(sentence.id, check.reasons, [link.key for link in check.links])
    audit_trail.report_drafted(study_key, str(draft.metadata.get("drafter") or "unknown"), model_id=model_id,
                               sentences=len(grounding.sentences), flagged=len(grounding.flagged))
    return doc
