"""What the radiologist does to a report: accept, edit, add, delete, override flags, sign, add addenda, export.

``ReportActions`` is the base of ``ReportPanel``: it holds the panel's signals
and the operations on its ``ReportDocument``; the panel adds the layout,
drafting and autosave (``_changed``, ``flush``, ``_show_notice``,
``start_draft``). Edited AI sentences are checked against the findings again
(``check_sentence``); typed sentences are the radiologist's own words and are
not flagged. Nothing here logs report text.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

from inference.drafting import check_sentence
from workstation.document import AutosaveStore, ReportDocument, ReportError, SentenceOrigin
from workstation.qt.report_panel.context import ReportContext, check_section, link_target, preferred_link
from workstation.qt.report_panel.editor import ReportEditor
from workstation.qt.report_panel.export_runner import ReportExporter
from workstation.qt.report_panel.signoff import SignOffDialog, remembered_name
from workstation.services import audit_trail

logger = logging.getLogger(__name__)


class ReportActions(QWidget):
    """Signals and document operations of the report panel (see ``ReportPanel``)."""

    navigateTo = Signal(object)  # noqa: N815 - Qt signal naming; a FindingTarget
    linkActivated = Signal(object)  # noqa: N815 - the clicked sentence's first FindingLink
    saved = Signal(str)  # the autosave file
    exported = Signal(object, object)  # document, ExportResult
    finished = Signal(object)  # a signed report was exported
    message = Signal(str)  # a line for the status bar

    document: ReportDocument | None
    context: ReportContext | None
    editor: ReportEditor
    store: AutosaveStore
    exporter: ReportExporter
    signoff_dialog: SignOffDialog | None
    exported_revision: int

    # --- hooks the panel provides ---------------------------------------------------------------
    def _changed(self, *, structure: bool = False) -> None:
        raise NotImplementedError

    def _show_notice(self, text: str) -> None:
        raise NotImplementedError

    def _update_banner(self) -> None:
        raise NotImplementedError

    def flush(self) -> Path | None:
        """Autosave now."""
        raise NotImplementedError

    def start_draft(self, ctx: ReportContext | None = None, *, use_llm: bool = True) -> int:
        """Draft the report."""
        raise NotImplementedError

    # --- grounding ---------------------------------------------------------------------------------
    def _recheck_edited(self) -> None:
        """Check the edited AI sentences against this context's findings (their flags may be stale)."""
        doc, ctx = self.document, self.context
        if doc is None or ctx is None or doc.signed:
            return
        for sec, s in list(doc.sentences()):
            if s.provenance is SentenceOrigin.EDITED:
                self._check(sec.title, s.id, s.text)

    def _check(self, section: str, sentence_id: str, text: str) -> None:
        if self.document is None or self.context is None:
            return
        check = check_sentence(text, check_section(section), self.context.facts)
        self.document.apply_grounding(sentence_id, check.reasons, [ln.key for ln in check.links])

    def _section_of(self, sentence_id: str) -> str:
        assert self.document is not None
        return next(sec.title for sec, s in self.document.sentences() if s.id == sentence_id)

    def select_sentence(self, sentence_id: str) -> None:
        """Make a sentence current and navigate the viewer to the finding it refers to."""
        if self.document is None:
            return
        self.editor.select(sentence_id)
        sentence = self.document.sentence(sentence_id)
        if self.context is None or not sentence.links:
            return
        known = self.context.links
        links = [known[k] for k in sentence.links if k in known]
        if links:
            self.linkActivated.emit(links[0])
        chosen = preferred_link(links)
        target = link_target(chosen, self.context.result) if chosen is not None else None
        if target is not None:
            self.navigateTo.emit(target)

    def accept_sentence(self, sentence_id: str) -> None:
        """Accept an AI sentence unchanged."""
        if self.document is not None and not self.document.signed:
            self.document.accept(sentence_id)
            self._changed()

    def accept_all_unflagged(self) -> int:
        """Accept every AI sentence the check did not flag; how many."""
        if self.document is None or self.document.signed:
            return 0
        ids = [s.id for _, s in self.document.sentences() if s.provenance is SentenceOrigin.AI and not s.flags]
        for sid in ids:
            self.document.accept(sid)
        self._changed()
        return len(ids)

    def edit_sentence(self, sentence_id: str, text: str) -> None:
        """Replace a sentence's text (empty: delete it); an edited AI sentence is checked again."""
        if self.document is None or self.document.signed:
            return
        section = self._section_of(sentence_id)
        sentence = self.document.edit(sentence_id, text)
        if sentence is not None and sentence.provenance is not SentenceOrigin.TYPED:
            self._check(section, sentence_id, sentence.text)
        self._changed(structure=sentence is None)

    def add_sentence(self, section: str, text: str, after: str | None = None) -> str:
        """Add a typed sentence to a section (after sentence ``after``); its id."""
        if self.document is None or self.document.signed:
            return ""
        sentence = self.document.add(section, text, after=after or None)
        self._changed(structure=True)
        return sentence.id

    def delete_sentence(self, sentence_id: str) -> None:
        """Remove a sentence."""
        if self.document is not None and not self.document.signed:
            self.document.delete(sentence_id)
            self._changed(structure=True)

    def acknowledge_sentence(self, sentence_id: str, note: str) -> None:
        """Override a sentence's flags with the radiologist's reason."""
        if self.document is not None and not self.document.signed:
            self.document.acknowledge(sentence_id, note)
            self._changed()

    # --- sign-off, addenda, export ------------------------------------------------------------------
    def request_sign_off(self) -> SignOffDialog | None:
        """Open the sign-off dialog (non-modal); it refuses while flags are unresolved."""
        if self.document is None or self.document.signed:
            return None
        self.editor.commit_open_edits()
        dialog = SignOffDialog(self.document, self)
        dialog.accepted.connect(lambda: self.sign(dialog.name()))
        dialog.finished.connect(dialog.deleteLater)
        self.signoff_dialog = dialog
        dialog.open()
        return dialog

    def sign(self, radiologist: str) -> bool:
        """Sign and lock the document; False (with the reason shown) if the document refuses."""
        if self.document is None:
            return False
        try:
            audit_trail.sign_report(self.document, radiologist)  # signs, and records who signed in the audit trail
        except ReportError as exc:
            self._show_notice(str(exc))
            return False
        self._show_notice("")
        self._changed(structure=True)
        self.flush()
        self.message.emit("Report signed; export it to send it on")
        return True

    def add_addendum(self, text: str, author: str) -> bool:
        """Append an addendum to the signed report."""
        if self.document is None:
            return False
        try:
            audit_trail.amend_report(self.document, text, author)
        except ReportError as exc:
            self._show_notice(str(exc))
            return False
        self._changed(structure=True)
        return True

    def request_export(self) -> None:
        """Ask for a folder, then export the signed report there."""
        folder = QFileDialog.getExistingDirectory(self, "Export the signed report to a folder")
        if folder:
            self.export_to(Path(folder))

    def export_to(self, folder: Path) -> bool:
        """Export the signed report (SEG, SRs, PDF, text) into ``folder`` on the export thread."""
        doc, ctx = self.document, self.context
        if doc is None or not doc.signed:
            self._show_notice("Sign the report before exporting it.")
            return False
        if ctx is None or ctx.headers is None:
            self._show_notice("Open and analyse this study to export its report (the export references its images).")
            return False
        self.flush()
        if not self.exporter.start(doc, ctx, folder):
            self._show_notice("An export is already running.")
            return False
        self.message.emit(f"Exporting the report to {folder}…")
        return True

    def _on_exported(self, doc: ReportDocument, result: object) -> None:
        current = self.document
        if current is not None and current.study_key == doc.study_key and current.revision == doc.revision:
            self.store.finished(current)  # the signed, exported report needs no crash copy any more
            self.exported_revision = current.revision
            self._update_banner()
        self._show_notice("")
        self.message.emit("Report exported")
        self.exported.emit(doc, result)
        self.finished.emit(doc)

    def _on_export_failed(self, doc: ReportDocument, text: str) -> None:
        self._show_notice(f"Export failed: {text}")

    # --- dialogs for the row actions ---------------------------------------------------------------
    def _ask_acknowledge(self, sentence_id: str) -> None:
        note, ok = QInputDialog.getText(self, "Override the flag",
                                        "Why is the sentence right? (e.g. \"checked on the images\")")
        if ok and note.strip():
            self.acknowledge_sentence(sentence_id, note)

    def _ask_add(self, section: str, after: str) -> None:
        text, ok = QInputDialog.getMultiLineText(self, f"Add to {section}", "Sentence:")
        if ok and text.strip():
            self.add_sentence(section, text, after or None)

    def _ask_addendum(self) -> None:
        text, ok = QInputDialog.getMultiLineText(self, "Addendum", "Addendum text:")
        if not ok or not text.strip():
            return
        author, ok = QInputDialog.getText(self, "Addendum", "Your name:", text=remembered_name())
        if ok:
            self.add_addendum(text, author)

    def _ask_redraft(self) -> None:
        doc = self.document
        if doc is not None and any(s.provenance is not SentenceOrigin.AI for _, s in doc.sentences()):
            answer = QMessageBox.question(self, "Redraft", "Replace this draft, with your changes, by a new one?")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.start_draft()
