"""Exporting a signed report off the GUI thread: SEG, measurement SR, report SR, PDF, text (``export_report``).

Writing and validating the DICOM objects takes seconds, so ``ReportExporter``
runs one export at a time as a job on its own I/O ``JobRunner`` (never the
device runner: an export must not wait for an analysis) and answers on the GUI
thread (``workstation.qt.bridge.GuiPoster``) with ``done(document, ExportResult)``
or ``failed(document, message)``. It exports a copy of the document, so later
changes (an addendum) cannot race the writer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from workstation.document import ReportDocument
from workstation.qt.bridge import GuiPoster, stop_at_quit
from workstation.services.failures import is_expected, user_message
from workstation.services.report_context import ReportContext, export_report
from workstation.services.runner import JobContext, JobDone, JobRunner

logger = logging.getLogger(__name__)

KIND = "export"


class ReportExporter(QObject):
    """One export at a time on an I/O runner; ``shutdown`` waits for it and joins the runner."""

    done = Signal(object, object)  # the document as exported, ExportResult
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._poster = GuiPoster(self)
        self._runner = JobRunner("export-runner")
        stop_at_quit(self._runner.shutdown)
        self._doc: ReportDocument | None = None

    def is_running(self) -> bool:
        """True while an export is being written."""
        return self._doc is not None

    def start(self, doc: ReportDocument, ctx: ReportContext, folder: Path, options: Any = None) -> bool:
        """Export a copy of ``doc`` into ``folder``; False if an export is already running."""
        if self.is_running() or self._runner.is_closed():
            return False
        copy = ReportDocument.from_dict(doc.to_dict())
        self._doc = copy

        def work(_ctx: JobContext) -> Any:
            return export_report(copy, ctx, folder, options)

        self._runner.submit(KIND, work, supersede=False,
                            on_done=lambda done: self._poster.post(lambda: self._finish(copy, done)))
        logger.info("exporting the signed report to %s", folder)
        return True

    def _finish(self, doc: ReportDocument, done: JobDone[Any]) -> None:
        if self._doc is not doc:
            return
        self._doc = None
        if done.status == "finished":
            self.done.emit(doc, done.value)
            return
        exc = done.error if done.error is not None else RuntimeError("the export was stopped")
        if is_expected(exc):
            logger.warning("report export failed: %s", exc)
        else:
            logger.error("report export failed", exc_info=exc)
        self.failed.emit(doc, user_message(exc, "exporting the report"))

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Wait for a running export to finish (files are never left half-written), then join the runner."""
        stopped = self._runner.shutdown(timeout_ms / 1000.0)
        if not stopped:
            logger.warning("the report export did not finish within %d ms", timeout_ms)
        return stopped
