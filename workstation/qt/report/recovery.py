"""Crash recovery: on start, offer back the report drafts the autosave kept (e.g. after a kill -9).

Every report being written is autosaved (``AutosaveStore``) and its file is
removed only once the signed report has been exported, so whatever is left
at start-up is unfinished work. ``offer_recovery`` lists it in a
``RecoveryDialog``: the radiologist restores some, keeps them for later
(the files stay; the panel also reloads a study's draft when the study is
opened), or discards them after a confirmation. Nothing here shows or logs
report text beyond the study description the dialog lists.
"""

from __future__ import annotations

import logging
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workstation.report import AutosaveStore, DraftInfo, ReportDocument

logger = logging.getLogger(__name__)

KEY_ROLE = Qt.ItemDataRole.UserRole + 1


def describe_draft(info: DraftInfo) -> str:
    """One line for a saved draft: the study, its state, when it was last changed, how long it is."""
    what = info.study_description or f"Study {info.study_key[-12:]}"
    state = "signed, not yet exported" if info.signed else "unsigned draft"
    return f"{what} – {state} – last changed {local_time(info.modified_at)} – {info.sentences} sentences"


def local_time(iso: str) -> str:
    """An ISO 8601 UTC time as local time (``2024-03-15 11:30``); the input unchanged if unreadable."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


class RecoveryDialog(QDialog):
    """The saved drafts, each with a check box (all checked), and Restore / Keep for later / Discard.

    ``open()`` for tests, ``exec()`` in the application; after ``accepted``,
    ``documents()`` are the restored drafts.
    """

    def __init__(self, store: AutosaveStore, drafts: list[DraftInfo] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover unfinished reports")
        self.setMinimumWidth(560)
        self.store = store
        self._documents: list[ReportDocument] = []
        drafts = store.drafts() if drafts is None else drafts
        layout = QVBoxLayout(self)
        intro = QLabel(f"{len(drafts)} report(s) were being written when the workstation last stopped and "
                       "have not been signed and exported. Restore them to carry on where you left off.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        self.list.setWordWrap(True)
        for info in drafts:
            item = QListWidgetItem(describe_draft(info))
            item.setData(KEY_ROLE, info.study_key)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.list.addItem(item)
        layout.addWidget(self.list)
        self.buttons = QDialogButtonBox()
        self.restore_button = QPushButton("Restore selected")
        self.restore_button.setDefault(True)
        self.later_button = QPushButton("Keep for later")
        self.discard_button = QPushButton("Discard selected…")
        self.buttons.addButton(self.restore_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.later_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.discard_button, QDialogButtonBox.ButtonRole.DestructiveRole)
        self.restore_button.clicked.connect(self.restore_selected)
        self.later_button.clicked.connect(self.reject)
        self.discard_button.clicked.connect(lambda _c=False: self.discard_selected())
        layout.addWidget(self.buttons)

    def selected_keys(self) -> list[str]:
        """Study keys of the checked drafts, in list order."""
        items = (self.list.item(i) for i in range(self.list.count()))
        return [str(it.data(KEY_ROLE)) for it in items if it.checkState() == Qt.CheckState.Checked]

    def documents(self) -> list[ReportDocument]:
        """The restored documents (after Restore)."""
        return list(self._documents)

    def restore_selected(self) -> None:
        """Load the checked drafts and close the dialog (accepted)."""
        docs = []
        for key in self.selected_keys():
            doc = self.store.load(key)
            if doc is not None:
                docs.append(doc)
        self._documents = docs
        logger.info("restored %d autosaved report draft(s)", len(docs))
        self.accept()

    def discard_selected(self, confirm: bool = True) -> int:
        """Delete the checked drafts (after a confirmation); returns how many were deleted."""
        keys = self.selected_keys()
        if not keys:
            return 0
        if confirm:
            answer = QMessageBox.question(
                self, "Discard reports",
                f"Delete {len(keys)} unfinished report(s)? Signed reports that were not exported are lost too.")
            if answer != QMessageBox.StandardButton.Yes:
                return 0
        removed = sum(self.store.discard(k) for k in keys)
        for i in reversed(range(self.list.count())):
            if str(self.list.item(i).data(KEY_ROLE)) in keys:
                self.list.takeItem(i)
        if self.list.count() == 0:
            self.reject()
        return removed


def offer_recovery(parent: QWidget | None, store: AutosaveStore) -> list[ReportDocument]:
    """On start: if drafts were left, ask (modally) which to restore; the restored documents, else []."""
    drafts = store.drafts()
    if not drafts:
        return []
    dialog = RecoveryDialog(store, drafts, parent)
    try:
        if dialog.exec() == QDialog.DialogCode.Accepted:
            return dialog.documents()
        return []
    finally:
        dialog.deleteLater()
