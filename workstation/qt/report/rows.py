"""One sentence of the report editor: its text, a provenance marker, its flags, and inline editing.

A row shows who wrote the sentence with a coloured bar (AI unreviewed: amber;
AI accepted: green; edited: blue; typed: white), and a flagged sentence on a
red ground with the grounding check's reasons written under it, so a
radiologist sees at a glance what still needs a look. Report text is always
shown as plain text (a "<" in "< 6 mm" is text, not markup).
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.report import Provenance, Sentence

logger = logging.getLogger(__name__)

PROVENANCE_COLOURS = {
    Provenance.AI: "#f0a830",  # amber: the AI wrote it, nobody has reviewed it
    Provenance.AI_ACCEPTED: "#4cc26a",  # green: reviewed and accepted unchanged
    Provenance.EDITED: "#4a9eff",  # blue: the radiologist changed the AI's text
    Provenance.TYPED: "#f4f4f4",  # white: the radiologist's own text
}
FLAG_COLOUR = "#ff6b6b"
TEXT_COLOUR = "#e8e8e8"
ROW_BG = "#24262a"
FLAGGED_BG = "#4a1c20"
ACKNOWLEDGED_BG = "#2f2a1c"
SELECTED_BORDER = "#6fb4ff"


def rich_tooltip(*lines: str) -> str:
    """A tooltip of plain-text lines, escaped and forced to rich text so nothing in them is read as markup."""
    return "<qt>" + "<br>".join(html.escape(line) for line in lines if line) + "</qt>"


class SentenceEditor(QPlainTextEdit):
    """The inline editor: Ctrl+Enter (or Enter) saves, Shift+Enter breaks the line, Escape cancels."""

    commit = Signal()
    cancel = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        """Save on Enter/Ctrl+Enter, cancel on Escape, otherwise edit."""
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.commit.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.cancel.emit()
            return
        super().keyPressEvent(event)


class SentenceRow(QFrame):
    """A sentence row; it reports what the user asks for, the panel changes the document."""

    clicked = Signal(str)
    acceptRequested = Signal(str)  # noqa: N815 - Qt signal naming
    committed = Signal(str, str)  # sentence id, new text
    acknowledgeRequested = Signal(str)  # noqa: N815
    deleteRequested = Signal(str)  # noqa: N815
    insertRequested = Signal(str)  # noqa: N815 - add a typed sentence after this one

    def __init__(self, sentence: Sentence, section: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SentenceRow")
        self.sentence_id = sentence.id
        self.section = section
        self._sentence = sentence
        self._locked = False
        self._selected = False
        self.marker = QFrame()
        self.marker.setFixedWidth(6)
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.reasons = QLabel()
        self.reasons.setTextFormat(Qt.TextFormat.PlainText)
        self.reasons.setWordWrap(True)
        self.editor = SentenceEditor()
        self.editor.setFixedHeight(84)
        self.editor.commit.connect(self.commit_edit)
        self.editor.cancel.connect(self.cancel_edit)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Save the edit (Enter); Shift+Enter breaks the line")
        self.save_button.clicked.connect(self.commit_edit)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Discard the edit (Esc)")
        self.cancel_button.clicked.connect(self.cancel_edit)
        edit_bar = QHBoxLayout()
        edit_bar.setContentsMargins(0, 0, 0, 0)
        edit_bar.addStretch(1)
        edit_bar.addWidget(self.save_button)
        edit_bar.addWidget(self.cancel_button)
        self.edit_bar = QWidget()
        self.edit_bar.setLayout(edit_bar)
        content = QVBoxLayout()
        content.setContentsMargins(0, 0, 0, 0)
        content.setSpacing(2)
        for w in (self.text, self.reasons, self.editor, self.edit_bar):
            content.addWidget(w)
        self.ack_button = QPushButton("Override flag…")
        self.ack_button.setToolTip("The sentence is right as it is: say why (kept in the sign-off record)")
        self.ack_button.setStyleSheet("QPushButton { color: #ffd0d0; background: #5a2328; border: 1px solid #8c2f35;"
                                      " border-radius: 3px; padding: 1px 8px; font-size: 9pt; }"
                                      " QPushButton:hover { background: #6e2a30; }")
        self.ack_button.clicked.connect(lambda _c=False: self._acknowledge())
        content.insertWidget(2, self.ack_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.accept_button = self._tool("✓", "Accept this AI sentence unchanged", self._accept)
        self.edit_button = self._tool("✎", "Edit this sentence (or double-click it)", self.begin_edit)
        tools = QVBoxLayout()
        tools.setContentsMargins(0, 0, 0, 0)
        tools.setSpacing(2)
        for b in (self.accept_button, self.edit_button):
            tools.addWidget(b)
        tools.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 3, 4, 3)
        layout.setSpacing(8)
        layout.addWidget(self.marker)
        layout.addLayout(content, 1)
        layout.addLayout(tools)
        self.editor.hide()
        self.edit_bar.hide()
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.update_sentence(sentence, locked=False)

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setFixedSize(26, 24)
        button.setStyleSheet("QToolButton { background: #34373d; color: #f0f0f0; border: 1px solid #4a4e55;"
                             " border-radius: 3px; font-weight: bold; } QToolButton:hover { background: #44484f; }")
        button.clicked.connect(lambda _c=False: slot())
        return button

    # --- state ----------------------------------------------------------------------
    @property
    def editing(self) -> bool:
        """True while the inline editor is open."""
        return not self.editor.isHidden()

    def update_sentence(self, sentence: Sentence, *, locked: bool) -> None:
        """Show ``sentence`` (its text, provenance, flags); ``locked`` hides every editing control."""
        self._sentence, self._locked = sentence, locked
        self.text.setText(sentence.text)
        flagged = bool(sentence.flags)
        if flagged:
            lines = [f"⚠ {r}" for r in sentence.flags]
            if sentence.acknowledged:
                lines.append(f"Flag overridden: {sentence.acknowledged}")
            self.reasons.setText("\n".join(lines))
        self.reasons.setVisible(flagged)
        self.accept_button.setVisible(not locked and sentence.provenance is Provenance.AI and not sentence.flags)
        self.edit_button.setVisible(not locked)
        self.ack_button.setVisible(not locked and sentence.unresolved)
        if locked and self.editing:
            self.cancel_edit()
        status = "flagged, overridden" if flagged and sentence.acknowledged else ("flagged" if flagged else "")
        self.setToolTip(rich_tooltip(f"{sentence.provenance.label}" + (f" – {status}" if status else ""),
                                     *sentence.flags, "" if locked else "Double-click to edit; right-click for more"))
        self._restyle()

    def set_selected(self, selected: bool) -> None:
        """Outline the row as the current one."""
        if selected != self._selected:
            self._selected = selected
            self._restyle()

    def _restyle(self) -> None:
        s = self._sentence
        bg = (ACKNOWLEDGED_BG if s.acknowledged else FLAGGED_BG) if s.flags else ROW_BG
        border = SELECTED_BORDER if self._selected else (FLAG_COLOUR if s.unresolved else bg)
        self.setStyleSheet(f"QFrame#SentenceRow {{ background: {bg}; border: 1px solid {border};"
                           f" border-radius: 3px; }}")
        self.marker.setStyleSheet(f"background: {PROVENANCE_COLOURS[s.provenance]}; border: none;"
                                  f" border-radius: 2px;")
        italic = "font-style: italic;" if s.provenance is Provenance.AI else ""
        self.text.setStyleSheet(f"color: {TEXT_COLOUR}; background: transparent; font-size: 10pt; {italic}")
        colour = "#e8c77a" if s.acknowledged else FLAG_COLOUR
        self.reasons.setStyleSheet(f"color: {colour}; background: transparent; font-size: 9pt;")

    # --- editing --------------------------------------------------------------------
    def begin_edit(self) -> None:
        """Open the inline editor on the sentence's text."""
        if self._locked:
            return
        self.editor.setPlainText(self._sentence.text)
        self.text.hide()
        self.editor.show()
        self.edit_bar.show()
        self.editor.setFocus()
        self.editor.selectAll()

    def commit_edit(self) -> None:
        """Close the editor and hand the new text to the panel (an empty text deletes the sentence)."""
        if not self.editing:
            return
        new = " ".join(self.editor.toPlainText().split())
        self._close_editor()
        if new != self._sentence.text:
            self.committed.emit(self.sentence_id, new)

    def cancel_edit(self) -> None:
        """Close the editor without changing the sentence."""
        self._close_editor()

    def _close_editor(self) -> None:
        self.editor.hide()
        self.edit_bar.hide()
        self.text.show()

    def _accept(self) -> None:
        self.acceptRequested.emit(self.sentence_id)

    def _acknowledge(self) -> None:
        self.acknowledgeRequested.emit(self.sentence_id)

    # --- mouse ----------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        """Select the sentence (and navigate to its finding)."""
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.sentence_id)
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        """Edit the sentence."""
        self.begin_edit()

    def _menu(self, pos: QPoint) -> None:
        if self._locked:
            return
        menu = QMenu(self)
        s = self._sentence
        items: list[tuple[str, Any, bool]] = [
            ("Accept", self._accept, s.provenance is Provenance.AI and not s.flags),
            ("Edit…", self.begin_edit, True),
            ("Override the flag…", self._acknowledge, s.unresolved),
            ("Add a sentence after this", lambda: self.insertRequested.emit(self.sentence_id), True),
            ("Delete", lambda: self.deleteRequested.emit(self.sentence_id), True),
        ]
        for text, slot, enabled in items:
            action = QAction(text, menu)
            action.setEnabled(enabled)
            action.triggered.connect(lambda _c=False, f=slot: f())
            menu.addAction(action)
        menu.exec(self.mapToGlobal(pos))
