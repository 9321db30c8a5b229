"""Crash recovery: on start, offer back the reports a radiologist was working on (e.g. after a kill -9).

Every report being written is autosaved (``AutosaveStore``) and its file is
removed only once the signed report has been exported. Drafts the AI wrote
that nobody touched (every headless ``workstation report`` run leaves one)
are not unfinished work: the panel reopens them with their study, and they
are not offered here. What a person worked on (``ReportDocument.worked_on``)
is listed, named by patient and study, in a ``RecoveryDialog`` that does not
block the window: the radiologist restores some, keeps them for later (the
files stay), or discards them after a confirmation. Nothing here logs report
text or patient names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import Qt, Signal
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

from workstation.document import AutosaveStore, DraftInfo, ReportDocument

logger = logging.getLogger(__name__)

KEY_ROLE = Qt.ItemDataRole.UserRole + 1

StudyNamer = Callable[[str], str]
"""Study key -> how a reader knows the study ("DOE, Jane – CT CHEST – 2024-03-01"); '' when unknown."""


def recoverable_drafts(store: AutosaveStore) -> list[DraftInfo]:
    """The saved drafts a person worked on (newest first): the only ones worth offering back."""
    return [d for d in store.drafts() if d.worked_on]


def describe_draft(info: DraftInfo, study_name: str = "") -> str:
    """One line for a saved draft: the patient and study, its state, when it was last changed, how long it is."""
    what = study_name or info.study_description or f"Study {info.study_key[-12:]}"
    state = "signed, not yet exported" if info.signed else "unsigned draft, edited"
    return f"{what} – {state} – last changed {local_time(info.modified_at)} – {info.sentences} sentences"


def local_time(iso: str) -> str:
    """An ISO 8601 UTC time as local time (``2024-03-15 11:30``); the input unchanged if unreadable."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


class RecoveryDialog(QDialog):
    """The drafts to recover, each with a check box (all checked), and Restore / Keep for later / Discard.

    Not modal: the window stays usable behind it. After Restore, ``documents()``
    are the restored drafts and ``restored`` carries them.
    """

    restored = Signal(list)  # list[ReportDocument]

    def __init__(self, store: AutosaveStore, drafts: list[DraftInfo] | None = None,
                 parent: QWidget | None = None, study_name: StudyNamer | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Recover unfinished reports")
        self.setModal(False)
        self.setMinimumWidth(560)
        self.store = store
        self._documents: list[ReportDocument] = []
        drafts = recoverable_drafts(store) if drafts is None else drafts
        name = study_name or (lambda _key: "")
        layout = QVBoxLayout(self)
        intro = QLabel(f"{len(drafts)} report(s) you were working on when the workstation last stopped have "
                       "not been signed and exported. Restore them to carry on where you left off.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        self.list.setWordWrap(True)
        for info in drafts:
            item = QListWidgetItem(describe_draft(info, name(info.study_key)))
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
        self.restored.emit(docs)

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


def offer_recovery(parent: QWidget | None, store: AutosaveStore,
                   on_restore: Callable[[list[ReportDocument]], None],
                   study_name: StudyNamer | None = None) -> RecoveryDialog | None:
    """On start: if reports a person worked on were left, show (without blocking) which to restore.

    ``on_restore`` receives the restored documents; the dialog is returned (None when
    there is nothing to offer) and deletes itself when closed.
    """
    drafts = recoverable_drafts(store)
    if not drafts:
        return None
    dialog = RecoveryDialog(store, drafts, parent, study_name)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.restored.connect(on_restore)
    dialog.show()
    return dialog
