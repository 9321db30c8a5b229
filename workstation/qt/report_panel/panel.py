"""The report panel beside the viewer: the draft streams in, becomes editable, is signed, then exported.

States: nothing to report on, ready to draft, drafting (streamed text,
read-only, with Cancel), editing (``ReportEditor``), signed (locked; only
addenda). Every change to the document goes through ``ReportDocument`` and is
autosaved one second after the last one, and at least every ten seconds while
edits go on without a pause (``SaveSchedule``, ``AutosaveStore``), so a crash
loses little; the saved file is removed only once the signed report
has been exported. The operations on the document (accept, edit, sign,
export...) are in ``ReportActions``, its base class. Drafting runs on the device runner through
``DraftWorker`` (the window's, shared with the analyses: pass ``runner``; else the panel's own), export
on ``ReportExporter``'s thread: the GUI thread never imports torch or transformers.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from workstation.document import AutosaveStore, ReportDocument, SentenceOrigin
from workstation.document.autosave import AUTOSAVE_DEBOUNCE_S, AUTOSAVE_MAX_WAIT_S, SaveSchedule
from workstation.qt.report_panel.actions import ReportActions
from workstation.qt.report_panel.context import ReportContext
from workstation.qt.report_panel.draft_worker import STREAM_INTERVAL_MS, DraftWorker
from workstation.qt.report_panel.editor import ReportEditor
from workstation.qt.report_panel.export_runner import ReportExporter
from workstation.qt.report_panel.recovery import local_time
from workstation.qt.report_panel.signoff import SignOffDialog
from workstation.services.drafting import DraftOutcome
from workstation.services.runner import JobRunner

logger = logging.getLogger(__name__)

AUTOSAVE_MS = round(AUTOSAVE_DEBOUNCE_S * 1000)
AUTOSAVE_MAX_WAIT_MS = round(AUTOSAVE_MAX_WAIT_S * 1000)
DRAFT_BANNER = "AI DRAFT – not signed"
DRAFT_STYLE = "background: #6b4a00; color: #ffe9b0; font-weight: bold; padding: 6px 8px; border-radius: 3px;"
SIGNED_STYLE = "background: #1d5230; color: #dcffe6; font-weight: bold; padding: 6px 8px; border-radius: 3px;"
NOTICE_STYLE = "color: #ff9a9a;"
STREAM_STYLE = "QPlainTextEdit { background: #141517; color: #e0e0e0; border: 1px solid #333; font-size: 10pt; }"


class ReportPanel(ReportActions):
    """Drafts, edits, signs and exports the report of the study in ``ReportContext``.

    Signals: ``navigateTo(FindingTarget)`` when a sentence linked to a finding
    is clicked (connect to ``ReadingSession.show_finding``);
    ``linkActivated(FindingLink)`` with the sentence's first link;
    ``saved(path)`` after each autosave; ``exported(doc, ExportResult)``;
    ``finished(doc)`` once a signed report is exported; ``message(text)`` for the status bar.
    """

    def __init__(self, store: AutosaveStore | None = None, *, llm_dir: Path | None = None, device: str = "auto",
                 max_new_tokens: int | None = None, stream_interval_ms: int = STREAM_INTERVAL_MS,
                 autosave_ms: int = AUTOSAVE_MS, autosave_max_wait_ms: int = AUTOSAVE_MAX_WAIT_MS,
                 runner: JobRunner | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store if store is not None else AutosaveStore()
        self.llm_dir, self.device, self.max_new_tokens = llm_dir, device, max_new_tokens
        self.context: ReportContext | None = None
        self.document: ReportDocument | None = None
        self.signoff_dialog: SignOffDialog | None = None
        self._generation = 0
        self._stream_ctx: ReportContext | None = None
        self._closed = False
        self.exported_revision = -1  # the document revision last exported
        self.worker = DraftWorker(stream_interval_ms=stream_interval_ms, runner=runner, parent=self)
        self.worker.chunk.connect(self._on_chunk)
        self.worker.status.connect(self._on_status)
        self.worker.finished.connect(self._on_drafted)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.exporter = ReportExporter(self)
        self.exporter.done.connect(self._on_exported)
        self.exporter.failed.connect(self._on_export_failed)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(autosave_ms)
        self._save_timer.timeout.connect(self.flush)
        self._save_schedule = SaveSchedule(autosave_ms / 1000.0, autosave_max_wait_ms / 1000.0)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.source_line = QLabel()
        self.source_line.setWordWrap(True)
        self.source_line.setStyleSheet("color: #a9b0bb; font-size: 9pt;")
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet(NOTICE_STYLE)
        self.notice.hide()
        # page 0: a message with the actions that apply
        self.info = QLabel("Run AI on a series to draft its report.")
        self.info.setWordWrap(True)
        self.info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.draft_button = QPushButton("Draft report")
        self.draft_button.clicked.connect(lambda _c=False: self.start_draft())
        self.template_button = QPushButton("Draft with the template instead")
        self.template_button.clicked.connect(lambda _c=False: self.start_draft(use_llm=False))
        info_page = QWidget()
        info_layout = QVBoxLayout(info_page)
        info_layout.addStretch(1)
        info_layout.addWidget(self.info)
        for b in (self.draft_button, self.template_button):
            info_layout.addWidget(b, 0, Qt.AlignmentFlag.AlignHCenter)
        info_layout.addStretch(2)
        # page 1: the draft streaming in
        self.stream_status = QLabel()
        self.stream_status.setWordWrap(True)
        self.stream_view = QPlainTextEdit()
        self.stream_view.setReadOnly(True)
        self.stream_view.setStyleSheet(STREAM_STYLE)
        self.cancel_button = QPushButton("Cancel drafting")
        self.cancel_button.clicked.connect(lambda _c=False: self.cancel_draft())
        stream_page = QWidget()
        stream_layout = QVBoxLayout(stream_page)
        stream_layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.stream_status, 1)
        top.addWidget(self.cancel_button)
        stream_layout.addLayout(top)
        stream_layout.addWidget(self.stream_view, 1)
        # page 2: the editor
        self.editor = ReportEditor()
        self.editor.rowClicked.connect(self.select_sentence)
        self.editor.acceptRequested.connect(self.accept_sentence)
        self.editor.committed.connect(self.edit_sentence)
        self.editor.acknowledgeRequested.connect(self._ask_acknowledge)
        self.editor.deleteRequested.connect(self.delete_sentence)
        self.editor.addRequested.connect(self._ask_add)
        self.editor.accept_all_button.clicked.connect(lambda _c=False: self.accept_all_unflagged())
        self.editor.sign_button.clicked.connect(lambda _c=False: self.request_sign_off())
        self.editor.export_button.clicked.connect(lambda _c=False: self.request_export())
        self.editor.addendum_button.clicked.connect(lambda _c=False: self._ask_addendum())
        self.editor.redraft_button.clicked.connect(lambda _c=False: self._ask_redraft())
        self.pages = QStackedWidget()
        for page in (info_page, stream_page, self.editor):
            self.pages.addWidget(page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for w in (self.banner, self.source_line, self.notice):
            layout.addWidget(w)
        layout.addWidget(self.pages, 1)
        self._show_info("Run AI on a series to draft its report.", draft=False)

    # --- state ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """"idle", "streaming", "editing" or "signed"."""
        if self.pages.currentIndex() == 1:
            return "streaming"
        if self.pages.currentIndex() == 2 and self.document is not None:
            return "signed" if self.document.signed else "editing"
        return "idle"

    def _show_info(self, text: str, *, draft: bool, template: bool = False) -> None:
        self.info.setText(text)
        self.draft_button.setVisible(draft and self.context is not None)
        self.template_button.setVisible(template and self.context is not None)
        self.pages.setCurrentIndex(0)
        self._update_banner()

    def _update_banner(self) -> None:
        doc = self.document if self.pages.currentIndex() == 2 else None
        if doc is not None and doc.sign_off is not None:
            extra = f" · {len(doc.addenda)} addendum(s)" if doc.addenda else ""
            sent = "exported" if self.exported_revision == doc.revision else "not yet exported"
            self.banner.setText(f"Signed by {doc.sign_off.radiologist} on {local_time(doc.sign_off.signed_at)}"
                                f"{extra} · locked (addenda only) · {sent}")
            self.banner.setStyleSheet(SIGNED_STYLE)
        else:
            detail = ""
            if doc is not None:
                total = sum(1 for _ in doc.sentences())
                reviewed = sum(1 for _, s in doc.sentences() if s.provenance is not SentenceOrigin.AI)
                flagged = len(doc.unresolved())
                detail = f" · {reviewed} of {total} sentences reviewed"
                detail += f" · {flagged} flagged" if flagged else " · no flags"
            elif self.pages.currentIndex() == 1:
                detail = " · drafting…"
            self.banner.setText(DRAFT_BANNER + detail)
            self.banner.setStyleSheet(DRAFT_STYLE)
        self.banner.setVisible(doc is not None or self.pages.currentIndex() == 1)
        self.source_line.setText(" · ".join(x for x in (doc.study_description, doc.source.describe()) if x)
                                 if doc is not None else "")
        self.source_line.setVisible(doc is not None)

    def _show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
        if text:
            self.message.emit(text)

    # --- context and drafting ------------------------------------------------------------------
    def set_context(self, ctx: ReportContext | None, *, auto_draft: bool = True) -> None:
        """Report on this study: keep its document, reload its autosaved draft, or draft it (``auto_draft``)."""
        if ctx is not None and self.state == "streaming" and self._stream_ctx is not None \
                and self._stream_ctx.study_key == ctx.study_key:
            self.context = ctx  # the same study shown again while its draft is being written
            return
        if ctx is not None and self.document is not None and self.document.study_key == ctx.study_key:
            self.context = ctx
            self._recheck_edited()
            if self.state == "idle":
                self._show_document()
            return
        self.flush()
        if self.worker.is_busy():
            self.worker.cancel()
        self._generation = 0  # whatever the drafting thread still sends belongs to the previous study
        self.context, self.document = ctx, None
        self._show_notice("")
        if ctx is None:
            self._show_info("Run AI on a series to draft its report.", draft=False)
            return
        saved = self.store.load(ctx.study_key)
        if saved is not None:
            self.show_document(saved)
            self.message.emit("Restored the saved report draft of this study")
        elif auto_draft:
            self.start_draft()
        else:
            self._show_info("The analysis is ready. Draft the report from its findings.", draft=True)

    def take_new_facts(self, ctx: ReportContext, what: str) -> None:
        """The study's report context gained facts (``what``, e.g. "the comparison with the prior").

        A draft only the AI wrote is drafted again with them at once; a draft a radiologist has worked on
        (``ReportDocument.worked_on``) is kept and the notice says that Redraft writes them in.
        """
        drafting = self.state == "streaming" and self._stream_ctx is not None \
            and self._stream_ctx.study_key == ctx.study_key
        doc = self.document
        same_study = doc is not None and doc.study_key == ctx.study_key
        self.set_context(ctx, auto_draft=False)
        if drafting or (doc is not None and same_study and not doc.worked_on):
            self.start_draft(ctx)  # a draft being written is superseded by one with the new facts
            self.message.emit(f"Drafting the report again with {what}")
        elif doc is not None and same_study:
            self._show_notice(f"{what[:1].upper()}{what[1:]} is ready: Redraft writes it into the report "
                              "(it replaces this draft and your changes).")

    def set_study(self, study_key: str | None) -> None:
        """The study on screen changed: show its saved report if it has one, else nothing until it is analysed.

        A report of another study is saved and put away, so that no one edits
        study A's report while reading study B.
        """
        current = self.document.study_key if self.document is not None else (
            self.context.study_key if self.context is not None else None)
        if study_key is not None and study_key == current:
            return
        self.set_context(None)
        saved = self.store.load(study_key) if study_key else None
        if saved is not None:
            self.show_document(saved)
            self.message.emit("Restored the saved report draft of this study")
        elif study_key is not None:
            self._show_info("Run AI on this study to draft its report.", draft=False)

    def start_draft(self, ctx: ReportContext | None = None, *, use_llm: bool = True) -> int:
        """Draft the report of ``ctx`` (default: the current context) on the drafting thread; its generation."""
        ctx = ctx or self.context
        if ctx is None or self._closed:
            return 0
        if ctx is not self.context:
            self.set_context(ctx, auto_draft=False)
        self.editor.commit_open_edits()
        self.flush()
        llm = self.llm_dir if use_llm else None
        self._stream_ctx = ctx
        self._generation = self.worker.submit(ctx.subject, llm, self.device, self.max_new_tokens)
        self.stream_view.clear()
        self.stream_status.setText("Starting…")
        self._show_notice("")
        self.pages.setCurrentIndex(1)
        self._update_banner()
        return self._generation

    def cancel_draft(self) -> None:
        """Stop the draft being written (the previous document, if any, comes back)."""
        self.worker.cancel()
        self.stream_status.setText("Cancelling…")

    def _on_chunk(self, generation: int, text: str) -> None:
        if generation != self._generation:
            return
        cursor = self.stream_view.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.stream_view.setTextCursor(cursor)
        self.stream_view.ensureCursorVisible()

    def _on_status(self, generation: int, text: str) -> None:
        if generation == self._generation:
            self.stream_status.setText(text)

    def _on_drafted(self, generation: int, drafted: DraftOutcome) -> None:
        if generation != self._generation or self._stream_ctx is None:
            return
        doc = drafted.document  # drafted, cleaned, checked and flagged by the one pipeline, on the worker thread
        self.show_document(doc)
        self._save_timer.start(0)  # saved in the next turn: the first rows and the file write are not one frame
        flagged = len(doc.unresolved())
        self.message.emit(f"Report drafted: {sum(1 for _ in doc.sentences())} sentences, {flagged} flagged")

    def _on_failed(self, generation: int, text: str) -> None:
        if generation != self._generation:
            return
        self._show_notice(f"Drafting failed: {text}")
        if self.document is not None:
            self._show_document()
        else:
            self._show_info("The report could not be drafted.", draft=True, template=self.llm_dir is not None)

    def _on_cancelled(self, generation: int) -> None:
        if generation != self._generation:
            return
        self.message.emit("Drafting cancelled")
        if self.document is not None:
            self._show_document()
        else:
            self._show_info("Drafting was cancelled.", draft=True, template=self.llm_dir is not None)

    # --- the document -----------------------------------------------------------------------------
    def show_document(self, doc: ReportDocument, ctx: ReportContext | None = None) -> None:
        """Show ``doc`` for editing (or read-only if signed), e.g. a draft restored after a crash."""
        if ctx is not None:
            self.context = ctx
        if self.document is not None and self.document is not doc:
            self.flush()
        if self.context is not None and self.context.study_key != doc.study_key:
            self.context = None
        self.document = doc
        self._recheck_edited()
        self._show_document()

    def _show_document(self) -> None:
        if self.document is None:
            return
        self.editor.show_document(self.document)
        self.pages.setCurrentIndex(2)
        self._update_banner()

    def _changed(self, *, structure: bool = False) -> None:
        if self.document is None:
            return
        if structure:
            self.editor.show_document(self.document)
        else:
            self.editor.refresh(self.document)
        self._update_banner()
        # the debounce, but never later than the maximum wait after the first unsaved change
        self._save_timer.start(round(self._save_schedule.changed(time.monotonic()) * 1000))

    def flush(self) -> Path | None:
        """Autosave the document now (the debounce timer calls this); the file, or None."""
        self._save_timer.stop()
        self._save_schedule.saved()
        if self.document is None:
            return None
        try:
            path = self.store.save(self.document)
        except OSError as exc:
            logger.warning("report autosave failed: %s", exc)
            self._show_notice(f"The report could not be autosaved: {exc}")
            return None
        self.saved.emit(str(path))
        return path

    # --- quitting ---------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Save the document, cancel the draft (joining the panel's own runner), wait for an export (on close)."""
        if self._closed:
            return
        self._closed = True
        self.editor.commit_open_edits()
        self.flush()
        self.worker.shutdown()
        self.exporter.shutdown()
