"""Sign-off: the radiologist's name (remembered), a check that no flag is left unresolved, and a confirmation.

``SignOffDialog`` only collects and checks; the panel signs the document
(``ReportDocument.sign``), which enforces the same rules again. The dialog
refuses while any flagged sentence is unresolved and lists them, so the
radiologist sees which sentences to edit or override. The last name used is
kept in ``report.json`` of the config dir (a name, no patient data).
"""

from __future__ import annotations

import json
import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workstation.document import ReportDocument, SentenceOrigin
from workstation.settings import config_dir

logger = logging.getLogger(__name__)

PREFS_FILE = "report.json"
REFUSAL_STYLE = "color: #ff8a8a; font-weight: bold;"


def remembered_name() -> str:
    """The radiologist's name from the last sign-off ("" if none)."""
    try:
        data = json.loads((config_dir() / PREFS_FILE).read_text(encoding="utf-8"))
        return str(data.get("radiologist", "")) if isinstance(data, dict) else ""
    except (OSError, ValueError):
        return ""


def remember_name(name: str) -> None:
    """Keep the radiologist's name for the next sign-off."""
    path = config_dir() / PREFS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"radiologist": " ".join(name.split())}), encoding="utf-8")
    except OSError as exc:
        logger.warning("could not remember the radiologist's name: %s", exc)


def unresolved_lines(doc: ReportDocument) -> list[str]:
    """One line per unresolved flagged sentence: section, sentence, reasons."""
    return [f"{sec.title}: “{s.text}” – {'; '.join(s.flags)}" for sec, s in doc.sentences() if s.unresolved]


class SignOffDialog(QDialog):
    """Asks for the name and a confirmation; refuses (Sign disabled, reasons listed) while flags are unresolved.

    Use ``open()`` (non-modal for tests) or ``exec()``; after ``accepted``,
    ``name()`` is the radiologist's name.
    """

    def __init__(self, doc: ReportDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign the report")
        self.setMinimumWidth(520)
        self.doc = doc
        self.pending = unresolved_lines(doc)
        unreviewed = sum(1 for _, s in doc.sentences() if s.provenance is SentenceOrigin.AI)
        total = sum(1 for _ in doc.sentences())
        layout = QVBoxLayout(self)
        self.refusal = QLabel()
        self.refusal.setWordWrap(True)
        self.refusal.setStyleSheet(REFUSAL_STYLE)
        self.flag_list = QListWidget()
        self.flag_list.setWordWrap(True)
        self.flag_list.addItems(self.pending)
        if self.pending:
            self.refusal.setText(f"The report cannot be signed: {len(self.pending)} flagged sentence(s) are "
                                 "unresolved. Edit each one, or override its flag and say why.")
            layout.addWidget(self.refusal)
            layout.addWidget(self.flag_list)
        else:
            self.refusal.hide()
            self.flag_list.hide()
        summary = QLabel(f"{total} sentences; {unreviewed} AI sentence(s) not yet reviewed one by one "
                         "will be accepted by your signature." if unreviewed else f"{total} sentences, all reviewed.")
        summary.setWordWrap(True)
        layout.addWidget(summary)
        preview = QPlainTextEdit(doc.text(include_addenda=False))
        preview.setReadOnly(True)
        preview.setMinimumHeight(160)
        layout.addWidget(preview)
        form = QFormLayout()
        self.name_edit = QLineEdit(remembered_name())
        self.name_edit.setPlaceholderText("Radiologist's full name")
        form.addRow("Signed by:", self.name_edit)
        layout.addLayout(form)
        self.confirm = QCheckBox("I have reviewed the images and this report; it is my report. "
                                 "After signing it can only be added to as an addendum.")
        self.confirm.setChecked(False)
        layout.addWidget(self.confirm)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.sign_button = QPushButton("Sign")
        self.buttons.addButton(self.sign_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.try_sign)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.name_edit.textChanged.connect(self._update)
        self.confirm.toggled.connect(self._update)
        self._update()
        self.name_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def name(self) -> str:
        """The name as entered, white space collapsed."""
        return " ".join(self.name_edit.text().split())

    def refusal_text(self) -> str:
        """Why the report cannot be signed now ("" when it can)."""
        if self.pending:
            return self.refusal.text() + "\n" + "\n".join(self.pending)
        if not self.name():
            return "Enter the radiologist's name."
        if not self.confirm.isChecked():
            return "Confirm that you have reviewed the report."
        return ""

    def _update(self) -> None:
        self.sign_button.setEnabled(not self.refusal_text())

    def try_sign(self) -> bool:
        """Accept the dialog if nothing refuses it (remembering the name); False otherwise."""
        if self.refusal_text():
            return False
        remember_name(self.name())
        self.accept()
        return True
