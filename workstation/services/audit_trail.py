"""The audit-trail events of the reading workflow, in one place the command line and the window share.

Each helper turns a use case's objects (an analysis request and its result, a
report document, an export) into one ``workstation.audit`` record with the same
details whichever front end did it: study opened, model run, draft generated,
report signed or amended, export written. ``sign_report``/``amend_report`` do
the domain operation and record it, so a sign-off can never go unrecorded.
Only UIDs, model ids, counts, folder and file names go in, never patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.cancel import CancelledError
from workstation import audit

if TYPE_CHECKING:  # the contract, report document (and the drafting rules it imports) are not loaded by `convert`
    from inference.contract import AnalysisRequest, AnalysisResult
    from inference.volume import Volume
    from workstation.document.editing import ReportDocument
    from workstation.document.model import Addendum, SignOff

logger = logging.getLogger(__name__)


def study_uid_of(volume: Volume) -> str:
    """The Study Instance UID a volume was loaded from ("" when unknown)."""
    return str(volume.metadata.get("study_uid") or "")


def outcome_of(exc: BaseException | None) -> str:
    """"ok", "cancelled", "refused" (a rule said no) or "failed"."""
    if exc is None:
        return "ok"
    if isinstance(exc, CancelledError | KeyboardInterrupt):
        return "cancelled"
    if type(exc).__name__ in ("InterpolatedSeriesError", "UntrustedCodeError"):
        return "refused"
    return "failed"


def study_opened(volume: Volume, how: str) -> None:
    """A series of a study was loaded for reading or analysis (``how``: "viewer", "command line"...)."""
    series_opened(study_uid_of(volume), str(volume.metadata.get("series_uid") or ""), how)


def series_opened(study_uid: str, series_uid: str, how: str) -> None:
    """``study_opened`` for a series read without making a ``Volume`` of it (the streamed NIfTI export)."""
    audit.record("study.opened", study_uid=study_uid, series_uid=series_uid, how=how)


def model_run(request: AnalysisRequest, result: AnalysisResult | None, exc: BaseException | None = None) -> None:
    """An analysis ended: which model, where, how, and with what outcome."""
    details: dict[str, Any] = {"model_id": request.model_id,
                               "series_uid": str(request.volume.metadata.get("series_uid") or "")}
    if result is not None:
        prov = result.provenance
        details.update(model_version=prov.model_version, device=prov.device,
                       seconds=round(prov.timings_s.get("total", 0.0), 2))
        trusted = [n for n in prov.notes if "outside the allow-list" in n]
        if trusted:
            details["trusted_code"] = trusted[0]
    if exc is not None:
        details["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    audit.record("model.run", study_uid=study_uid_of(request.volume), outcome=outcome_of(exc), **details)


def report_drafted(study_uid: str, drafter: str, exc: BaseException | None = None, **details: Any) -> None:
    """A report draft was generated (or the attempt failed)."""
    if exc is not None:
        details["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    audit.record("report.drafted", study_uid=study_uid, outcome=outcome_of(exc), drafter=drafter, **details)


def export_written(study_uid: str, out_dir: Path, files: Iterable[Path], exc: BaseException | None = None,
                   **details: Any) -> None:
    """Exports were written to ``out_dir`` (file names only), or the export failed."""
    names = sorted(Path(f).name for f in files)
    if exc is not None:
        details["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    audit.record("export.written", study_uid=study_uid, outcome=outcome_of(exc), folder=str(out_dir),
                 files=names, **details)


def sign_report(doc: ReportDocument, radiologist: str) -> SignOff:
    """Sign ``doc`` (``ReportDocument.sign``) and record who signed it; a refused sign-off is recorded too."""
    try:
        signed = doc.sign(radiologist)
    except Exception as exc:
        audit.record("report.signed", study_uid=doc.study_key, outcome="refused",
                     radiologist=" ".join(radiologist.split()) or None, reason=str(exc)[:300])
        raise
    audit.record("report.signed", study_uid=doc.study_key, radiologist=signed.radiologist,
                 revision=doc.revision, series_uid=doc.series_uid)
    return signed


def amend_report(doc: ReportDocument, text: str, author: str) -> Addendum:
    """Add an addendum to a signed report and record it (the author, not the text)."""
    added = doc.add_addendum(text, author)
    audit.record("report.amended", study_uid=doc.study_key, radiologist=added.author,
                 addenda=len(doc.addenda), revision=doc.revision)
    return added
