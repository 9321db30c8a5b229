"""The notes panel: a study's clinical notes, each with where it came from, editable and saved.

Notes are read from and written to the study index through the Qt-free
``workstation.services.catalog.Catalog`` given to the panel. Edits are saved after a
short pause in typing (debounced) and on ``flush`` (switching study, closing),
keeping each note's source and kind, so the report drafter later knows which
text came from the request, the DICOM header, a prior report or the reader.
Note text and patient identity are never logged: only ids and counts.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QHideEvent, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from workstation.services.catalog import Catalog

logger = logging.getLogger(__name__)

DEBOUNCE_MS = 700
MIN_EDITOR_PX, MAX_EDITOR_PX = 34, 280
KIND_TITLES = {"dicom field": "DICOM field", "text file": "text file", "typed note": "typed here"}


def source_title(source: str, kind: str) -> str:
    """A short, readable origin: ``notes.txt``, ``Reason for the requested procedure``, ``Typed note (2)``."""
    if kind == "dicom field" and source.startswith("DICOM "):
        words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", source.removeprefix("DICOM ")).lower()
        return f"{words[:1].upper()}{words[1:]}"
    if kind == "typed note":
        return "Typed note" + source.removeprefix("typed")
    member = source.split("::", 1)[-1]
    return Path(member.replace("\\", "/")).name or source


def card_header(source: str, kind: str) -> str:
    """Rich-text header of a note card: its origin in bold, then what kind of source it is."""
    title = _escape(source_title(source, kind))
    return f"<b>{title}</b> · <span style='color:#9aa0a6'>{_escape(KIND_TITLES.get(kind, kind))}</span>"


class AutoHeightEdit(QTextEdit):
    """A plain-text editor as tall as its wrapped text (between two bounds), so short notes stay short."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.setAcceptRichText(False)
        self.setPlainText(text)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.textChanged.connect(self.fit)
        self.fit()

    def fit(self) -> None:
        """Set the height to the text's height at the current width."""
        doc = self.document()
        if doc.textWidth() <= 0:
            doc.setTextWidth(max(self.viewport().width(), 200))
        height = int(doc.size().height()) + 2 * self.frameWidth() + 2
        self.setFixedHeight(max(MIN_EDITOR_PX, min(MAX_EDITOR_PX, height)))

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        """Re-wrap at the new width, then re-fit the height."""
        super().resizeEvent(event)
        self.fit()


class NoteCard(QFrame):
    """One note: its origin as a header and an editor for its text."""

    edited = Signal()

    def __init__(self, note_id: int | None, source: str, kind: str, text: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.note_id = note_id
        self.source = source
        self.kind = kind
        self.dirty = False
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.header = QLabel(card_header(source, kind))
        self.header.setToolTip(source)
        self.editor = AutoHeightEdit(text)
        self.editor.setPlaceholderText("Type a clinical note…")
        self.editor.textChanged.connect(self._changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.header)
        layout.addWidget(self.editor)

    def text(self) -> str:
        """The note as currently edited."""
        return self.editor.toPlainText()

    @Slot()
    def _changed(self) -> None:
        self.dirty = True
        self.edited.emit()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class NotesPanel(QWidget):
    """The open study's clinical notes; edits and new typed notes are saved to the index."""

    saved = Signal(int)  # note id, after each write
    saveFailed = Signal(str)  # noqa: N815 - Qt signal naming

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.study_id: int | None = None
        self.cards: list[NoteCard] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.flush)
        title = QLabel("<b>Clinical notes</b>")
        self.add_button = QPushButton("Add note")
        self.add_button.setToolTip("Add a note typed here; it is saved with the study")
        self.add_button.clicked.connect(self.add_note)
        self.status = QLabel()
        self.status.setStyleSheet("QLabel { color: #9aa0a6; }")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addStretch(1)
        top.addWidget(self.status)
        top.addWidget(self.add_button)
        self._list = QWidget()
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.setContentsMargins(0, 0, 0, 0)
        self._list_layout.addStretch(1)
        self.empty = QLabel("No clinical notes for this study.")
        self.empty.setStyleSheet("QLabel { color: #9aa0a6; }")
        self._list_layout.insertWidget(0, self.empty)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self._list)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)
        self.set_study(None)

    def set_study(self, study_id: int | None) -> None:
        """Show the notes of ``study_id`` (saving pending edits of the previous study first)."""
        self.flush()
        for card in self.cards:
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        self.study_id = study_id
        self.add_button.setEnabled(study_id is not None)
        self.status.setText("")
        rows = self.catalog.notes(study_id) if study_id is not None else []
        for row in rows:
            self._add_card(NoteCard(row.id, row.source, row.kind, row.text))
        self.empty.setVisible(not self.cards)
        logger.debug("notes panel: study %s, %d notes", study_id, len(rows))

    def _add_card(self, card: NoteCard) -> None:
        card.edited.connect(self._edited)
        self._list_layout.insertWidget(self._list_layout.count() - 1, card)
        self.cards.append(card)
        self.empty.setVisible(False)

    @Slot()
    def add_note(self) -> NoteCard | None:
        """Add an empty typed note and focus it; it is written when text is typed into it."""
        if self.study_id is None:
            return None
        card = NoteCard(None, "typed", "typed note", "")
        self._add_card(card)
        card.editor.setFocus()
        return card

    @Slot()
    def _edited(self) -> None:
        self.status.setText("Editing…")
        self._timer.start()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt override
        """Save pending edits when the panel (or the window holding it) is hidden or closed."""
        self.flush()
        super().hideEvent(event)

    def pending(self) -> bool:
        """True while an edit waits to be saved."""
        return any(c.dirty for c in self.cards)

    @Slot()
    def flush(self) -> None:
        """Save every edited note now."""
        self._timer.stop()
        dirty = [c for c in self.cards if c.dirty]
        if not dirty or self.study_id is None:
            return
        from workstation.services.catalog import NoteEdit

        try:
            rows = self.catalog.save_notes(self.study_id, [NoteEdit(c.note_id, c.text()) for c in dirty])
        except (sqlite3.Error, OSError) as exc:
            logger.warning("could not save notes of study %s: %s", self.study_id, type(exc).__name__)
            self.status.setText("Not saved")
            self.saveFailed.emit(f"The notes could not be saved: {exc}")
            return
        saved: list[int] = []
        for card, row in zip(dirty, rows, strict=True):
            if row is None:
                continue  # an empty new note is not stored
            if card.note_id is None:
                card.note_id = row.id
                card.source = row.source
                card.header.setText(card_header(card.source, card.kind))
            card.dirty = False
            saved.append(row.id)
        self.status.setText("Saved")
        logger.info("saved %d note(s) of study %s", len(saved), self.study_id)
        for note_id in saved:
            self.saved.emit(note_id)
