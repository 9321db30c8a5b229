"""What a report is written for: the study's key, the analysis, the drafter's inputs and the grounding facts. No Qt.

``ReportContext`` bundles the analysis result, the drafter's inputs and the
study key (which names the autosave file); ``context_for_series`` builds one
from the study index the way the reading session sees a series, so the window
never opens the index or reaches into the drafting package's internals (its
grounding facts are computed here). ``submit_context`` builds one on a job
runner (it reads the index and de-identifies the notes: milliseconds the GUI
thread must not spend) and posts the typed outcome (``ContextBuilt`` or
``ContextFailed``) to the owner's thread. Nothing here imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from inference.contract import AnalysisResult
from inference.drafting import SECTIONS, FindingLink, ReportInputs
from inference.drafting.facts import GroundingFacts, collect_facts
from workstation.services.drafting import DraftSubject

if TYPE_CHECKING:
    from pathlib import Path

    from inference.followup.model import Comparison
    from workstation.dicomio.headers import InstanceHeader
    from workstation.document import ReportDocument
    from workstation.export import ExportOptions, ExportResult
    from workstation.services.catalog import Catalog
    from workstation.services.dispatch import Post
    from workstation.services.runner import JobContext, JobDone, JobRunner, Ticket

logger = logging.getLogger(__name__)

HeadersLoader = Callable[[], Sequence["InstanceHeader"]]
_KIND_ORDER = {"lesion": 0, "structure": 1, "measurement": 2}
CONTEXT_KIND = "report-context"


@dataclass(frozen=True)
class ReportContext:
    """The study a report is written for: its key, the analysis, the drafter's inputs.

    ``headers`` loads the analysed series' DICOM headers (run on the export
    thread: exports reference the source images); without it the panel
    cannot export. ``series_id`` is the index's id of the analysed series.
    """

    study_key: str
    result: AnalysisResult
    inputs: ReportInputs
    study_description: str = ""
    series_uid: str = ""
    series_id: int | None = None
    headers: HeadersLoader | None = None

    @cached_property
    def subject(self) -> DraftSubject:
        """What the drafting pipeline drafts for: the inputs, and the study and analysis of the document."""
        return DraftSubject.of(
            self.study_key,
            self.inputs,
            self.result,
            study_description=self.study_description,
            series_uid=self.series_uid,
        )

    @cached_property
    def facts(self) -> GroundingFacts:
        """The measured facts and source texts a sentence is checked against (computed once per context)."""
        return collect_facts(self.inputs)

    @cached_property
    def links(self) -> dict[str, FindingLink]:
        """Every finding link of the analysis by key (sentences store only the keys)."""
        facts = self.facts
        out = {f.link.key: f.link for f in facts.facts}
        for src in facts.texts:
            out.setdefault(src.link.key, src.link)
        return out


def check_section(title: str) -> str:
    """The section name the grounding check uses for a document section titled ``title``."""
    low = title.strip().lower()
    return next((s for s in SECTIONS if s.lower() == low), "Findings")


def preferred_link(links: Sequence[FindingLink]) -> FindingLink | None:
    """The link a click navigates to: the first lesion, else structure, else measurement with a position."""
    placed = [ln for ln in links if ln.centroid_lps is not None]
    if not placed:
        return None
    return min(placed, key=lambda ln: _KIND_ORDER.get(ln.kind, 3))


def context_for_series(catalog: Catalog, series_id: int, result: AnalysisResult, volume: Any,
                       comparison: Comparison | None = None) -> ReportContext:
    """The context of an analysed series of the index: study key, de-identified notes, technique, findings
    (and the ``comparison`` with a prior, for the draft's Comparison section, when the reader made one)."""
    from workstation.services.reporting import report_inputs

    with catalog.index() as index:
        row = index.find_series(str(series_id))
        study_id = row.study_id if row is not None else None
        study = index.study(study_id) if study_id is not None else None
        inputs = report_inputs(index, study_id, result, volume, comparison=comparison)
    key = study.study_key if study is not None else f"series-{series_id}"
    return ReportContext(
        study_key=key,
        result=result,
        inputs=inputs,
        study_description=inputs.technique.study_description,
        series_uid=row.series_uid if row is not None else "",
        series_id=series_id,
        headers=catalog.headers_loader(series_id),
    )


@dataclass(frozen=True)
class ContextBuilt:
    """``submit_context``'s answer: the context of ``series_id``."""

    series_id: int
    context: ReportContext


@dataclass(frozen=True)
class ContextFailed:
    """``submit_context``'s answer when the context could not be built; ``message`` is the user's sentence."""

    series_id: int
    message: str


ContextOutcome = ContextBuilt | ContextFailed


def submit_context(runner: JobRunner, post: Post, catalog: Catalog, series_id: int, result: AnalysisResult,
                   volume: Any, answer: Callable[[ContextOutcome], None], *, comparison: Comparison | None = None,
                   kind: str = CONTEXT_KIND) -> Ticket:
    """Build ``context_for_series`` on ``runner`` (an I/O runner) and ``post`` ``answer(outcome)`` back.

    The newest request of a ``kind`` wins (give each caller its own ``kind``): one superseded or cancelled
    before it ran is never answered; one that ran is, so the owner still checks the answer is for what it
    shows. A failure is answered as ``ContextFailed`` (a bug is logged with its traceback).
    """
    from workstation.services.failures import is_expected, user_message

    def work(_ctx: JobContext) -> ReportContext:
        return context_for_series(catalog, series_id, result, volume, comparison=comparison)

    def done(d: JobDone[ReportContext]) -> None:
        outcome: ContextOutcome
        if d.status == "finished" and d.value is not None:
            outcome = ContextBuilt(series_id, d.value)
        elif d.status == "failed":
            exc = d.error or RuntimeError("unknown error")
            if not is_expected(exc):
                logger.error("series %d: report context not built", series_id, exc_info=exc)
            outcome = ContextFailed(series_id, user_message(exc, "gathering the report's facts"))
        else:
            return
        post(lambda: answer(outcome))

    return runner.submit(kind, work, on_done=done)


def export_report(
    doc: ReportDocument, ctx: ReportContext, folder: Path, options: ExportOptions | None = None
) -> ExportResult:
    """Write a signed report's exports (SEG, SRs, PDF, text) for ``ctx`` into ``folder``; audited either way.

    Runs on a job runner's thread (it takes seconds); returns the ``ExportResult``.
    Raises ``WorkstationError`` when the analysed series' images are not known.
    """
    from inference.errors import WorkstationError
    from workstation.export import export_study
    from workstation.services.audit_trail import export_written

    if ctx.headers is None:
        raise WorkstationError("the analysed series' images are not known; open the study to export")
    headers = list(ctx.headers())
    try:
        result = export_study(ctx.result, headers, folder, report=doc, options=options)
    except Exception as exc:
        export_written(doc.study_key, folder, [], exc, signed=doc.signed)
        raise
    export_written(doc.study_key, folder, result.files.values(), signed=doc.signed)
    return result
