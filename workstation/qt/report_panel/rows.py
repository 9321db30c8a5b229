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

from workstation.document import Sentence, SentenceOrigin

logger = logging.getLogger(__name__)

PROVENANCE_COLOURS = {
    SentenceOrigin.AI: "#f0a830",  # amber: the AI wrote it, nobody has reviewed it
    SentenceOrigin.AI_ACCEPTED: "#4cc26a",  # green: reviewed and accepted unchanged
    SentenceOrigin.EDITED: "#4a9eff",  # blue: the radiologist changed the AI's text
    SentenceOrigin.TYPED: "#f4f4f4",  # white: the radiologist's own text
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


def _row_style() -> str:
    """The one style sheet of every sentence row, keyed on dynamic properties.

    Set once on the editor's content widget: a row changes look by changing a
    property and re-polishing, which costs far less than parsing a style sheet
    per widget (a 26-sentence draft used to spend most of its build time there).
    """
    rules = [
        f"QFrame#SentenceRow {{ background: {ROW_BG}; border: 1px solid {ROW_BG}; border-radius: 3px; }}",
        f"QFrame#SentenceRow[look=\"flagged\"] {{ background: {FLAGGED_BG}; border-color: {FLAG_COLOUR}; }}",
        f"QFrame#SentenceRow[look=\"acknowledged\"] {{ background: {ACKNOWLEDGED_BG};"
        f" border-color: {ACKNOWLEDGED_BG}; }}",
        f"QFrame#SentenceRow[selected=\"true\"] {{ border-color: {SELECTED_BORDER}; }}",
        f"QLabel#SentenceText {{ color: {TEXT_COLOUR}; background: transparent; font-size: 10pt; }}",
        "QLabel#SentenceText[ai=\"true\"] { font-style: italic; }",
        f"QLabel#SentenceReasons {{ color: {FLAG_COLOUR}; background: transparent; font-size: 9pt; }}",
        "QLabel#SentenceReasons[acknowledged=\"true\"] { color: #e8c77a; }",
        "QToolButton#RowTool { background: #34373d; color: #f0f0f0; border: 1px solid #4a4e55;"
        " border-radius: 3px; font-weight: bold; } QToolButton#RowTool:hover { background: #44484f; }",
        "QPushButton#RowAck { color: #ffd0d0; background: #5a2328; border: 1px solid #8c2f35;"
        " border-radius: 3px; padding: 1px 8px; font-size: 9pt; } QPushButton#RowAck:hover { background: #6e2a30; }",
    ]
    rules += [f"QFrame#SentenceMarker[provenance=\"{p.value}\"] {{ background: {c}; border: none;"
              f" border-radius: 2px; }}" for p, c in PROVENANCE_COLOURS.items()]
    return "\n".join(rules)


ROW_STYLE = _row_style()


def _set_property(widget: QWidget, name: str, value: str) -> None:
    """Change a dynamic property the style sheet keys on, re-polishing only when it changed."""
    if widget.property(name) == value:
        return
    widget.setProperty(name, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)


class SentenceRow(QFrame):
    """A sentence row; it reports what the user asks for, the panel changes the document.

    Light by construction: the text, the reasons and two tool buttons; the inline
    editor and the flag-override button are made the first time they are needed.
    Its look comes from ``ROW_STYLE`` set on an ancestor.
    """

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
        self._editor: SentenceEditor | None = None
        self._edit_bar: QWidget | None = None
        self._ack_button: QPushButton | None = None
        self.marker = QFrame()
        self.marker.setObjectName("SentenceMarker")
        self.marker.setFixedWidth(6)
        self.text = QLabel()
        self.text.setObjectName("SentenceText")
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.reasons = QLabel()
        self.reasons.setObjectName("SentenceReasons")
        self.reasons.setTextFormat(Qt.TextFormat.PlainText)
        self.reasons.setWordWrap(True)
        self.reasons.hide()
        self.content = QVBoxLayout()
        self.content.setContentsMargins(0, 0, 0, 0)
        self.content.setSpacing(2)
        self.content.addWidget(self.text)
        self.content.addWidget(self.reasons)
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
        layout.addLayout(self.content, 1)
        layout.addLayout(tools)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.update_sentence(sentence, locked=False)

    def _tool(self, text: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton()
        button.setObjectName("RowTool")
        button.setText(text)
        button.setToolTip(tip)
        button.setFixedSize(26, 24)
        button.clicked.connect(lambda _c=False: slot())
        return button

    # --- parts made on demand ---------------------------------------------------------
    @property
    def editor(self) -> SentenceEditor:
        """The inline editor (made, hidden, on first use)."""
        if self._editor is None:
            self._editor = SentenceEditor()
            self._editor.setFixedHeight(84)
            self._editor.commit.connect(self.commit_edit)
            self._editor.cancel.connect(self.cancel_edit)
            self._editor.hide()
            self.content.addWidget(self._editor)
            self.content.addWidget(self.edit_bar)
        return self._editor

    @property
    def edit_bar(self) -> QWidget:
        """Save / Cancel under the inline editor (made with it)."""
        if self._edit_bar is None:
            save = QPushButton("Save")
            save.setToolTip("Save the edit (Enter); Shift+Enter breaks the line")
            save.clicked.connect(self.commit_edit)
            cancel = QPushButton("Cancel")
            cancel.setToolTip("Discard the edit (Esc)")
            cancel.clicked.connect(self.cancel_edit)
            bar = QHBoxLayout()
            bar.setContentsMargins(0, 0, 0, 0)
            bar.addStretch(1)
            bar.addWidget(save)
            bar.addWidget(cancel)
            self._edit_bar = QWidget()
            self._edit_bar.setLayout(bar)
            self._edit_bar.hide()
        return self._edit_bar

    @property
    def ack_button(self) -> QPushButton:
        """"Override flag…" (made the first time the sentence is flagged)."""
        if self._ack_button is None:
            self._ack_button = QPushButton("Override flag…")
            self._ack_button.setObjectName("RowAck")
            self._ack_button.setToolTip("The sentence is right as it is: say why (kept in the sign-off record)")
            self._ack_button.clicked.connect(lambda _c=False: self._acknowledge())
            self._ack_button.hide()
            self.content.insertWidget(2, self._ack_button, 0, Qt.AlignmentFlag.AlignLeft)
        return self._ack_button

    # --- state ----------------------------------------------------------------------
    @property
    def editing(self) -> bool:
        """True while the inline editor is open."""
        return self._editor is not None and not self._editor.isHidden()

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
        self.accept_button.setVisible(not locked and sentence.provenance is SentenceOrigin.AI and not sentence.flags)
        self.edit_button.setVisible(not locked)
        wants_ack = not locked and sentence.unresolved
        if wants_ack or self._ack_button is not None:
            self.ack_button.setVisible(wants_ack)
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
        look = ("acknowledged" if s.acknowledged else "flagged") if s.flags else "plain"
        _set_property(self, "look", look)
        _set_property(self, "selected", "true" if self._selected else "false")
        _set_property(self.marker, "provenance", s.provenance.value)
        _set_property(self.text, "ai", "true" if s.provenance is SentenceOrigin.AI else "false")
        _set_property(self.reasons, "acknowledged", "true" if s.acknowledged else "false")

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
        if self._editor is not None:
            self._editor.hide()
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
            ("Accept", self._accept, s.provenance is SentenceOrigin.AI and not s.flags),
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
