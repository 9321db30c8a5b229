"""Exporting a signed report off the GUI thread: SEG, measurement SR, report SR, PDF, text (``export_study``).

Writing and validating the DICOM objects takes seconds, so ``ReportExporter``
runs one export at a time on its own ``QThread`` and answers with a queued
``done(document, ExportResult)`` or ``failed(document, message)``. It exports
a copy of the document, so later changes (an addendum) cannot race the writer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from inference.errors import WorkstationError
from workstation.document import ReportDocument
from workstation.qt.report_panel.context import ReportContext
from workstation.services.failures import is_expected, user_message

logger = logging.getLogger(__name__)


class _ExportThread(QThread):
    done = Signal(object)
    failed = Signal(str)

    def __init__(self, doc: ReportDocument, ctx: ReportContext, folder: Path, options: Any) -> None:
        super().__init__()
        self.setObjectName("report-export")
        self.doc, self.ctx, self.folder, self.options = doc, ctx, folder, options

    def run(self) -> None:
        from workstation.export import export_study
        from workstation.services.audit_trail import export_written

        try:
            if self.ctx.headers is None:
                raise WorkstationError("the analysed series' images are not known; open the study to export")
            headers = list(self.ctx.headers())
            try:
                result = export_study(self.ctx.result, headers, self.folder, report=self.doc, options=self.options)
            except Exception as exc:
                export_written(self.doc.study_key, self.folder, [], exc, signed=self.doc.signed)
                raise
            export_written(self.doc.study_key, self.folder, result.files.values(), signed=self.doc.signed)
        except Exception as exc:  # every failure is reported, never lost on the thread
            if is_expected(exc):
                logger.warning("report export failed: %s", exc)
            else:
                logger.exception("report export failed")
            self.failed.emit(user_message(exc, "exporting the report"))
            return
        self.done.emit(result)


class ReportExporter(QObject):
    """One export at a time on a worker thread; ``shutdown`` joins it."""

    done = Signal(object, object)  # the document as exported, ExportResult
    failed = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: _ExportThread | None = None
        self._doc: ReportDocument | None = None

    def is_running(self) -> bool:
        """True while an export is being written."""
        return self._thread is not None and self._thread.isRunning()

    def start(self, doc: ReportDocument, ctx: ReportContext, folder: Path, options: Any = None) -> bool:
        """Export a copy of ``doc`` into ``folder``; False if an export is already running."""
        if self.is_running():
            return False
        copy = ReportDocument.from_dict(doc.to_dict())
        thread = _ExportThread(copy, ctx, folder, options)
        queued = Qt.ConnectionType.QueuedConnection
        thread.done.connect(self._on_done, queued)
        thread.failed.connect(self._on_failed, queued)
        self._thread, self._doc = thread, copy
        thread.start()
        logger.info("exporting the signed report to %s", folder)
        return True

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._finish(result, "")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._finish(None, message)

    def _finish(self, result: Any, message: str) -> None:
        thread, self._thread = self._thread, None
        doc, self._doc = self._doc, None
        if doc is None:
            return
        if thread is not None:
            thread.wait()
            thread.deleteLater()
        if result is not None:
            self.done.emit(doc, result)
        else:
            self.failed.emit(doc, message)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Wait for a running export to finish (files are never left half-written). True if none is left."""
        if self._thread is None:
            return True
        stopped = bool(self._thread.wait(timeout_ms))
        if not stopped:
            logger.warning("the report export did not finish within %d ms", timeout_ms)
        return stopped
