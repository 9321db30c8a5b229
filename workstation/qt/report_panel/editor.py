"""The report editor page: actions, a colour legend, the flagged sentences, and the sections' sentence rows.

It renders a ``ReportDocument`` and reports what the radiologist asks for
through signals; ``ReportPanel`` changes the document (and autosaves), then
calls ``refresh`` (same sentences) or ``show_document`` (sentences added/removed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from workstation.document import ReportDocument, ReportError, SentenceOrigin
from workstation.qt.frame_steps import FRAME_BUDGET_MS, FrameSteps
from workstation.qt.report_panel.recovery import local_time
from workstation.qt.report_panel.rows import FLAG_COLOUR, PROVENANCE_COLOURS, ROW_STYLE, SentenceRow, rich_tooltip

logger = logging.getLogger(__name__)

ID_ROLE = Qt.ItemDataRole.UserRole + 1
HEADING_STYLE = ("QLabel#SectionHeading { color: #9fc4ff; font-weight: bold; font-size: 10pt; letter-spacing: 1px;"
                 " padding-top: 8px; }")
ADD_STYLE = ("QPushButton#AddSentence { color: #a9b0bb; background: transparent; border: 1px dashed #4a4e55;"
             " padding: 2px 8px; border-radius: 3px; }"
             " QPushButton#AddSentence:hover { color: #e8e8e8; border-color: #7a808a; }")
FLAG_LIST_STYLE = ("QListWidget { background: #2a1416; border: 1px solid #8c2f35; color: #ffd0d0; }"
                   " QListWidget::item { padding: 3px; } QListWidget::item:selected { background: #5a2328; }")
SCROLL_STYLE = ("QScrollBar:vertical { background: #1a1b1e; width: 12px; margin: 0; border: none; }"
                " QScrollBar::handle:vertical { background: #50555d; min-height: 32px; border-radius: 5px;"
                " margin: 1px 2px; } QScrollBar::handle:vertical:hover { background: #6a7079; }"
                " QScrollBar::add-line:vertical, QScrollBar::sub-line:vertical { height: 0; }"
                " QScrollBar::add-page:vertical, QScrollBar::sub-page:vertical { background: none; }")
ADDENDUM_STYLE = ("QLabel#Addendum { color: #e8e8e8; background: #1d2a36; border-left: 4px solid #6fb4ff;"
                  " padding: 6px; }")
CONTENT_STYLE = "\n".join((ROW_STYLE, HEADING_STYLE, ADD_STYLE, ADDENDUM_STYLE))
BUILD_BUDGET_MS = FRAME_BUDGET_MS
"""Time spent making rows in one event-loop turn: well inside a 16 ms frame, the rest is layout."""


def legend_html() -> str:
    """The colour key of the provenance markers (static text)."""
    names = [(PROVENANCE_COLOURS[p], p.label) for p in SentenceOrigin] + [(FLAG_COLOUR, "flagged")]
    return "&nbsp;&nbsp;".join(f"<span style='color:{c}'>■</span>&nbsp;{n}" for c, n in names)


class ReportEditor(QWidget):
    """Sections of sentence rows with the document-wide actions above them."""

    rowClicked = Signal(str)  # noqa: N815 - Qt signal naming
    acceptRequested = Signal(str)  # noqa: N815
    committed = Signal(str, str)
    acknowledgeRequested = Signal(str)  # noqa: N815
    deleteRequested = Signal(str)  # noqa: N815
    addRequested = Signal(str, str)  # noqa: N815 - section title, after sentence id ("" = at the end)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[str, SentenceRow] = {}
        self._doc: ReportDocument | None = None
        self._builder = FrameSteps(self, BUILD_BUDGET_MS, after_batch=self._fit_later)
        self._selected = ""
        self.accept_all_button = QPushButton("Accept all unflagged")
        self.accept_all_button.setToolTip("Accept every AI sentence that the check did not flag")
        self.sign_button = QPushButton("Sign off…")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Write the signed report, SEG, SR, PDF and text to a folder")
        self.addendum_button = QPushButton("Add addendum…")
        self.redraft_button = QPushButton("Redraft")
        self.redraft_button.setToolTip("Draft the report again from the findings (replaces this draft)")
        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        for b in (self.accept_all_button, self.sign_button, self.export_button, self.addendum_button):
            actions.addWidget(b)
        actions.addStretch(1)
        actions.addWidget(self.redraft_button)
        self.export_button.hide()  # signed reports only
        self.addendum_button.hide()
        self.legend = QLabel(legend_html())
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setStyleSheet("color: #c8c8c8; font-size: 9pt;")
        self.legend.setWordWrap(True)
        self.flag_title = QLabel()
        self.flag_title.setWordWrap(True)
        self.flag_title.setStyleSheet(f"color: {FLAG_COLOUR}; font-weight: bold;")
        self.flag_list = QListWidget()
        self.flag_list.setStyleSheet(FLAG_LIST_STYLE)
        self.flag_list.setWordWrap(True)
        self.flag_list.setMaximumHeight(110)
        self.flag_list.itemClicked.connect(lambda item: self.rowClicked.emit(str(item.data(ID_ROLE))))
        self.content = QWidget()
        self.content.setObjectName("ReportContent")
        self.content.setStyleSheet(CONTENT_STYLE)
        self.content_layout = QVBoxLayout(self.content)
        self.content_layout.setContentsMargins(4, 0, 4, 8)
        self.content_layout.setSpacing(4)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(self.content)
        self.scroll_area.verticalScrollBar().setStyleSheet(SCROLL_STYLE)
        self.content.installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(actions)
        layout.addWidget(self.legend)
        layout.addWidget(self.flag_title)
        layout.addWidget(self.flag_list)
        layout.addWidget(self.scroll_area, 1)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Tell the scroll area when the rows' heights change: it does not follow height-for-width by itself."""
        if watched is self.content and event.type() == QEvent.Type.LayoutRequest:
            self._fit_later()
        return super().eventFilter(watched, event)

    def _fit_later(self) -> None:
        """Refit the content once pending layout work (new rows shown, rows re-wrapped) is done."""
        QTimer.singleShot(0, self, lambda: QCoreApplication.sendEvent(self.scroll_area,
                                                                       QEvent(QEvent.Type.LayoutRequest)))

    # --- rendering ------------------------------------------------------------------------
    @property
    def rows(self) -> dict[str, SentenceRow]:
        """Sentence id -> row, every row of the shown document (finishes a build still in progress)."""
        self.finish_build()
        return self._rows

    @property
    def building(self) -> bool:
        """True while rows of the shown document are still being made."""
        return self._builder.busy

    def show_document(self, doc: ReportDocument) -> None:
        """Rebuild every row (after sentences were added or removed, or for a new document).

        Rows are made a few at a time, each batch within ``BUILD_BUDGET_MS`` of one
        event-loop turn, so a long draft arriving never stalls the viewer beside it:
        the first rows show at once, the rest follow on the next turns.
        """
        while (item := self.content_layout.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self._rows = {}
        self._doc = doc
        self._builder.start(self._build_steps(doc))
        self.refresh(doc)

    def _build_steps(self, doc: ReportDocument) -> Iterator[Callable[[], None]]:
        """One step per widget of the document, in reading order, then the closing stretch."""
        locked = doc.signed
        for sec in doc.sections:
            if locked and not sec.sentences:
                continue
            yield partial(self._add_heading, sec.title)
            for s in sec.sentences:
                yield partial(self._add_row, sec.title, s.id)
            if not locked:
                yield partial(self._add_button, sec.title)
        for a in doc.addenda:
            yield partial(self._add_addendum, f"ADDENDUM ({local_time(a.added_at)}, {a.author}):\n{a.text}")
        yield lambda: self.content_layout.addStretch(1)

    def finish_build(self) -> None:
        """Make every row still pending now (a caller needs them all: selection, tests, sign-off)."""
        if not self._builder.busy:
            return
        self._builder.finish()
        # lay the rows out now, so a caller may scroll to one of them straight away
        self.content_layout.activate()
        QCoreApplication.sendEvent(self.scroll_area, QEvent(QEvent.Type.LayoutRequest))

    def _place(self, widget: QWidget, alignment: Qt.AlignmentFlag | None = None) -> None:
        """Add ``widget`` below what is built and show it now.

        Qt would show it from a queued call: its polish then fell outside the
        batch's budget, and a build finished at once (``finish_build``) was laid
        out without the rows not yet shown, so scrolling to one went astray.
        """
        if alignment is None:
            self.content_layout.addWidget(widget)
        else:
            self.content_layout.addWidget(widget, 0, alignment)
        widget.show()

    def _add_heading(self, title: str) -> None:
        heading = QLabel(title.upper())
        heading.setObjectName("SectionHeading")
        self._place(heading)

    def _add_row(self, title: str, sentence_id: str) -> None:
        if self._doc is None:
            return
        try:
            sentence = self._doc.sentence(sentence_id)  # as it is now, not when the build started
        except ReportError:  # the sentence went since the build started; a new build follows
            return
        row = SentenceRow(sentence, title)
        row.update_sentence(sentence, locked=self._doc.signed)
        row.set_selected(sentence_id == self._selected)
        row.clicked.connect(self.rowClicked)
        row.acceptRequested.connect(self.acceptRequested)
        row.committed.connect(self.committed)
        row.acknowledgeRequested.connect(self.acknowledgeRequested)
        row.deleteRequested.connect(self.deleteRequested)
        row.insertRequested.connect(lambda sid, t=title: self.addRequested.emit(t, sid))
        self._rows[sentence_id] = row
        self._place(row)

    def _add_button(self, title: str) -> None:
        add = QPushButton(f"+ Add to {title}")
        add.setObjectName("AddSentence")
        add.clicked.connect(lambda _c=False, t=title: self.addRequested.emit(t, ""))
        self._place(add, Qt.AlignmentFlag.AlignLeft)

    def _add_addendum(self, text: str) -> None:
        label = QLabel(text)
        label.setObjectName("Addendum")
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setWordWrap(True)
        self._place(label)

    def refresh(self, doc: ReportDocument) -> None:
        """Update rows, the flagged list and the actions from the document (same sentences)."""
        locked = doc.signed
        self._doc = doc
        for _, s in doc.sentences():
            row = self._rows.get(s.id)
            if row is not None:
                row.update_sentence(s, locked=locked)
                row.set_selected(s.id == self._selected)
        self.flag_list.clear()
        pending = [(sec.title, s) for sec, s in doc.sentences() if s.unresolved]
        for title, s in pending:
            item = QListWidgetItem(f"{title}: {s.text}")
            item.setData(ID_ROLE, s.id)
            item.setToolTip(rich_tooltip(*s.flags))
            self.flag_list.addItem(item)
        self.flag_title.setText(f"⚠ {len(pending)} flagged sentence(s) to resolve before signing: "
                                "edit the sentence, or override the flag and say why")
        self.flag_list.setFixedHeight(min(110, 8 + sum(max(self.flag_list.sizeHintForRow(i), 20)
                                                       for i in range(self.flag_list.count()))))
        self.flag_title.setVisible(bool(pending) and not locked)
        self.flag_list.setVisible(bool(pending) and not locked)
        unflagged_ai = any(s.provenance is SentenceOrigin.AI and not s.flags for _, s in doc.sentences())
        self.accept_all_button.setVisible(not locked)
        self.accept_all_button.setEnabled(unflagged_ai)
        self.sign_button.setVisible(not locked)
        self.redraft_button.setVisible(not locked)
        self.addendum_button.setVisible(locked)
        self.export_button.setVisible(locked)
        self.legend.setVisible(not locked)

    def select(self, sentence_id: str) -> None:
        """Outline a sentence's row and scroll to it."""
        self._selected = sentence_id
        for sid, row in self.rows.items():  # every row: the selected one may not be made yet
            row.set_selected(sid == sentence_id)
        current = self.rows.get(sentence_id)
        if current is not None:
            self.scroll_area.ensureWidgetVisible(current, 0, 40)

    def commit_open_edits(self) -> None:
        """Save any sentence still open in its editor (before signing or leaving the document)."""
        for row in list(self._rows.values()):  # a row still to be made has no open edit
            if row.editing:
                row.commit_edit()
