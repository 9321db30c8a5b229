"""The study browser: patients, their studies (newest first) and series, from the study index.

Each series row shows a thumbnail of its middle slice, its number and description
with, on a second line, how many images and what it is (3-D volume, 4-D, single
image, localizer, document), then modality and AI status (read from the analysis
store at each refresh, so analyses made on the command line show too). Two lines, not more
columns: at the dock's default width every description is read whole.
Double click or Enter on a series emits ``seriesActivated``; folders, zips or files
dropped on the browser emit ``importRequested``. A filter box narrows the tree.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QIcon,
    QImage,
)
from PySide6.QtWidgets import QLabel, QLineEdit, QStyle, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from workstation.qt.thumbnails import ThumbnailLoader, picture_icon, placeholder_icon, status_dot
from workstation.services.study_labels import (
    KIND_TEXT,
    display_date,
    display_name,
    patient_text,
    series_tooltip,
    text_or_none,
)

if TYPE_CHECKING:
    from workstation.index.rows import SeriesRow, StudyRow
    from workstation.services.catalog import Catalog

logger = logging.getLogger(__name__)

SERIES_ROLE = Qt.ItemDataRole.UserRole + 1
LEVEL_ROLE = Qt.ItemDataRole.UserRole + 2
KEY_ROLE = Qt.ItemDataRole.UserRole + 3
COL_NAME, COL_MODALITY, COL_AI = range(3)
INDENT = 14
ICON_SIZE = 64
PRIOR_COLOUR = "#82b1ff"  # the "Prior" mark on earlier studies of the open study's patient

class AiStatus(StrEnum):
    """Where a series stands with AI analysis."""

    NONE = "none"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


AI_LOOK: dict[AiStatus, tuple[str, str]] = {
    AiStatus.NONE: ("—", "#6b6f76"),
    AiStatus.QUEUED: ("Queued", "#d9a441"),
    AiStatus.RUNNING: ("Running", "#4aa3df"),
    AiStatus.DONE: ("Done", "#5cb85c"),
    AiStatus.FAILED: ("Failed", "#e05d5d"),
}


def local_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders named by dropped URLs (remote URLs are ignored)."""
    if not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


class StudyBrowser(QWidget):
    """Tree of patients → studies → series with thumbnails and AI status.

    Signals: ``seriesActivated(series_id)`` on double click / Enter, ``seriesSelected(series_id)``
    when the current series changes (-1 for none), ``importRequested(list[Path])`` on a drop.
    """

    seriesActivated = Signal(int)  # noqa: N815 - Qt signal naming
    seriesSelected = Signal(int)  # noqa: N815
    importRequested = Signal(list)  # noqa: N815

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.setAcceptDrops(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter by patient, ID, study or series…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._apply_filter)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Patient / study / series", "Mod.", "AI"])
        self.tree.setIndentation(INDENT)
        self.tree.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.tree.setUniformRowHeights(False)
        self.tree.setAlternatingRowColors(False)
        self.tree.setAllColumnsShowFocus(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, header.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_MODALITY, header.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COL_AI, header.ResizeMode.Fixed)
        widest = max(self.tree.fontMetrics().horizontalAdvance(text) for text, _ in AI_LOOK.values())
        header.resizeSection(COL_AI, widest + 56)  # text, status dot and margins: never elided
        self.tree.itemActivated.connect(self._activated)
        self.tree.currentItemChanged.connect(self._current_changed)
        self.empty = QLabel("No studies yet.\nDrop a folder or zip here, or use File ▸ Import.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: #8a8d93; padding: 24px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.search)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.empty)
        self.thumbnails = ThumbnailLoader(catalog, catalog.thumbnails_dir, parent=self)
        self.thumbnails.thumbnailReady.connect(self._thumbnail_ready)
        self.thumbnails.thumbnailFailed.connect(self._thumbnail_failed)
        self._items: dict[int, QTreeWidgetItem] = {}
        self._ai: dict[int, AiStatus] = {}
        self._collapsed: set[str] = set()
        self._priors: dict[int, str] = {}  # study id -> why it is marked (a prior of the open study)
        self._placeholder = placeholder_icon(ICON_SIZE)
        self.refresh()

    # --- public ------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the tree from the catalog, keeping selection, collapsed rows and AI status.

        "Done" is shown where the analysis store (shared with the command line) keeps
        a valid analysis; a running, queued or failed status set by this window stays.
        """
        current = self.current_series()
        self._remember_collapsed()
        listing = self.catalog.listing()
        studies, series = listing.studies, listing.series
        if listing.analysed is not None:
            for row in series:
                if self._ai.get(row.id, AiStatus.NONE) in (AiStatus.NONE, AiStatus.DONE):
                    self._ai[row.id] = AiStatus.DONE if row.id in listing.analysed else AiStatus.NONE
        by_study: dict[int, list[SeriesRow]] = defaultdict(list)
        for row in series:
            by_study[row.study_id].append(row)
        by_patient: dict[int, list[StudyRow]] = defaultdict(list)
        for study in studies:
            by_patient[study.patient.id].append(study)
        self.tree.clear()
        self._items.clear()
        patients = sorted(by_patient.values(), key=lambda ss: display_name(ss[0].patient.name).lower())
        for group in patients:
            group.sort(key=lambda s: (s.date, s.time), reverse=True)
            self._add_patient(group, by_study)
        self.empty.setVisible(not studies)
        self.tree.setVisible(bool(studies))
        self._apply_filter(self.search.text())
        item = self._items.get(current) if current is not None else None
        if item is not None:  # reselect without auto-scrolling, which would expand collapsed rows
            self.tree.setAutoScroll(False)
            self.tree.setCurrentItem(item)
            self.tree.setAutoScroll(True)

    def set_ai_status(self, series_id: int, status: AiStatus | str) -> None:
        """Show a series' AI status (none, queued, running, done, failed)."""
        value = AiStatus(status)
        self._ai[series_id] = value
        item = self._items.get(series_id)
        if item is not None:
            self._paint_ai(item, value)

    def ai_status(self, series_id: int) -> AiStatus:
        """The AI status shown for a series."""
        return self._ai.get(series_id, AiStatus.NONE)

    def series_item(self, series_id: int) -> QTreeWidgetItem | None:
        """The tree row of a series (None if not shown)."""
        return self._items.get(series_id)

    def series_ids(self) -> list[int]:
        """Every series in the tree, in display order."""
        return list(self._items)

    def current_series(self) -> int | None:
        """The selected series, if a series row is selected."""
        item = self.tree.currentItem()
        value = item.data(COL_NAME, SERIES_ROLE) if item is not None else None
        return int(value) if value is not None else None

    def select_series(self, series_id: int) -> None:
        """Make a series the current row and scroll to it."""
        item = self._items.get(series_id)
        if item is not None:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)

    def set_priors(self, priors: dict[int, str]) -> None:
        """Mark these studies (id -> tooltip) as priors of the open study in the AI column ("Prior")."""
        self._priors = dict(priors)
        for item in self._study_items():
            self._paint_prior(item)

    def prior_marked(self, study_id: int) -> bool:
        """Whether a study row is marked as a prior of the open study."""
        return study_id in self._priors

    def _study_items(self) -> list[QTreeWidgetItem]:
        return [child for top in self._top_items() for child in _children(top)]

    def _paint_prior(self, item: QTreeWidgetItem) -> None:
        study_id = int(str(item.data(COL_NAME, KEY_ROLE))[1:])
        tip = self._priors.get(study_id)
        item.setText(COL_AI, "Prior" if tip is not None else "")
        item.setForeground(COL_AI, QBrush(QColor(PRIOR_COLOUR)))
        item.setToolTip(COL_AI, tip or "")

    def has_thumbnail(self, series_id: int) -> bool:
        """True once the series row shows its picture."""
        return self.thumbnails.cached(series_id) is not None

    def shutdown(self) -> None:
        """Stop background work (call before the window closes)."""
        self.thumbnails.shutdown()

    # --- building ------------------------------------------------------------------
    def _add_patient(self, studies: list[StudyRow], by_study: dict[int, list[SeriesRow]]) -> None:
        first = studies[0]
        top = QTreeWidgetItem([patient_text(first.patient, first.date), "", ""])
        font = QFont(top.font(COL_NAME))
        font.setBold(True)
        top.setFont(COL_NAME, font)
        key = f"p{first.patient.id}"
        top.setData(COL_NAME, LEVEL_ROLE, "patient")
        top.setData(COL_NAME, KEY_ROLE, key)
        self.tree.addTopLevelItem(top)
        top.setFirstColumnSpanned(True)
        for study in studies:
            self._add_study(top, study, by_study.get(study.id, []))
        top.setExpanded(key not in self._collapsed)

    def _add_study(self, parent: QTreeWidgetItem, study: StudyRow, rows: list[SeriesRow]) -> None:
        date = display_date(study.date) or "date unknown"
        desc = text_or_none(study.description) or "(no study description)"
        modalities = "/".join(sorted({r.modality for r in rows if r.modality}))
        images = sum(int((r.summary or {}).get("instances") or 0) for r in rows)
        counts = f"{len(rows)} series" + (f" · {images} images" if images else "")
        item = QTreeWidgetItem([f"{desc}\n{date} · {counts}", modalities, ""])
        tip = [f"Study date {date}", desc]
        if study.accession:
            tip.append(f"Accession {study.accession}")
        item.setToolTip(COL_NAME, "\n".join(tip))
        key = f"s{study.id}"
        item.setData(COL_NAME, LEVEL_ROLE, "study")
        item.setData(COL_NAME, KEY_ROLE, key)
        parent.addChild(item)
        self._paint_prior(item)
        for row in sorted(rows, key=lambda r: (r.number is None, r.number or 0, r.id)):
            self._add_series(item, row)
        item.setExpanded(key not in self._collapsed)

    def _add_series(self, parent: QTreeWidgetItem, row: SeriesRow) -> None:
        number = f"#{row.number}  " if row.number is not None else ""
        description = text_or_none(row.description) or "(no description)"
        summary = row.summary or {}
        instances = int(summary.get("instances") or 0)
        kind = KIND_TEXT.get(row.kind, row.kind or "")
        if row.kind == "multi_volume" and summary.get("volumes"):
            kind = f"4-D ({summary['volumes']} volumes)"
        what = " · ".join(x for x in (f"{instances} images" if instances else "", kind) if x)
        item = QTreeWidgetItem([f"{number}{description}\n{what}", row.modality, ""])
        item.setData(COL_NAME, SERIES_ROLE, row.id)
        item.setData(COL_NAME, LEVEL_ROLE, "series")
        item.setToolTip(COL_NAME, series_tooltip(row, summary))
        parent.addChild(item)
        self._items[row.id] = item
        self._paint_ai(item, self._ai.get(row.id, AiStatus.NONE))
        if row.kind == "document":
            item.setIcon(COL_NAME, self.style().standardIcon(QStyle.StandardPixmap.SP_FileIcon))
            return
        image = self.thumbnails.request(row.id, row.series_key, instances)
        item.setIcon(COL_NAME, picture_icon(image) if image is not None else self._placeholder)

    def _paint_ai(self, item: QTreeWidgetItem, status: AiStatus) -> None:
        text, colour = AI_LOOK[status]
        item.setText(COL_AI, text)
        item.setForeground(COL_AI, QBrush(QColor(colour)))
        item.setIcon(COL_AI, status_dot(colour) if status is not AiStatus.NONE else QIcon())
        item.setToolTip(COL_AI, f"AI analysis: {status.value}")

    def _top_items(self) -> list[QTreeWidgetItem]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [item for item in items if item is not None]

    def _remember_collapsed(self) -> None:
        for top in self._top_items():
            for item in [top, *_children(top)]:
                key = item.data(COL_NAME, KEY_ROLE)
                if key is None:
                    continue
                if item.isExpanded():
                    self._collapsed.discard(str(key))
                else:
                    self._collapsed.add(str(key))

    # --- reactions ------------------------------------------------------------------
    def _thumbnail_ready(self, series_id: int, image: QImage) -> None:
        item = self._items.get(series_id)
        if item is not None:
            item.setIcon(COL_NAME, picture_icon(image))

    def _thumbnail_failed(self, series_id: int, message: str) -> None:
        item = self._items.get(series_id)
        if item is not None:
            item.setToolTip(COL_NAME, f"{item.toolTip(COL_NAME)}\nNo thumbnail: {message}")

    def _activated(self, item: QTreeWidgetItem, _column: int) -> None:
        value = item.data(COL_NAME, SERIES_ROLE)
        if value is not None:
            self.seriesActivated.emit(int(value))

    def _current_changed(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        value = current.data(COL_NAME, SERIES_ROLE) if current is not None else None
        self.seriesSelected.emit(int(value) if value is not None else -1)

    def _apply_filter(self, text: str) -> None:
        words = text.lower().split()
        for top in self._top_items():
            top_match = _matches(top, words)
            any_study = False
            for study in _children(top):
                study_match = top_match or _matches(study, words)
                any_series = False
                for series in _children(study):
                    visible = study_match or _matches(series, words)
                    series.setHidden(not visible)
                    any_series |= visible
                study.setHidden(not (study_match or any_series))
                any_study |= study_match or any_series
            top.setHidden(not (top_match or any_study))

    # --- drag and drop ------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        """Accept drags that carry local files or folders."""
        _accept_local(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        """Keep accepting while the drag moves over the tree."""
        _accept_local(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        """Ask for the dropped folders, zips or files to be imported."""
        paths = local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.importRequested.emit(paths)


def _accept_local(event: QDragMoveEvent) -> None:
    if local_paths(event.mimeData()):
        event.acceptProposedAction()
    else:
        event.ignore()


def _children(item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    children = (item.child(i) for i in range(item.childCount()))
    return [child for child in children if child is not None]


def _matches(item: QTreeWidgetItem, words: list[str]) -> bool:
    if not words:
        return True
    text = " ".join(item.text(c) for c in range(item.columnCount())).lower()
    return all(w in text for w in words)
