"""The background worklist in the window: its status in the study browser, its context menu, PACS arrivals.

All the rules (order, the reader first, where results go) are the Qt-free
``workstation.services.worklist.Worklist``'s; this module only:

* makes the worklist with the GUI thread's ``post`` (``workstation.qt.bridge``)
  and the window's device runner, so its events arrive on the GUI thread;
* draws each ``WorkStatusChanged`` as the series' AI status in the browser
  (queued, running, done, failed with the reason in the tooltip; a removed
  study gets back what it showed before it was queued);
* adds "Analyse in background" and "Remove from worklist" to the browser's
  context menu (a study row queues its best series, a series row that series);
* queues the studies the storage listener received when ``worklist.analyze_incoming`` is on.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, QPoint, Qt, Signal
from PySide6.QtWidgets import QMenu, QTreeWidgetItem

from workstation.qt.bridge import GuiPoster
from workstation.qt.browser import COL_AI, COL_NAME, KEY_ROLE, SERIES_ROLE, AiStatus, StudyBrowser
from workstation.services.catalog import Catalog
from workstation.services.runner import JobRunner
from workstation.services.worklist import ALREADY_STORED, Worklist, WorkStatusChanged
from workstation.settings import Settings

logger = logging.getLogger(__name__)

ANALYSE_TEXT = "Analyse in background"
REMOVE_TEXT = "Remove from worklist"


class WorklistView(QObject):
    """Binds a ``Worklist`` to the study browser; ``seriesAnalysed(series_id)`` when one of its analyses is stored."""

    message = Signal(str)  # a line for the status bar
    seriesAnalysed = Signal(int)  # noqa: N815 - Qt signal naming; its analysis is now in the store

    def __init__(self, settings: Settings, browser: StudyBrowser, catalog: Catalog, device_runner: JobRunner,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.browser = browser
        self.catalog = catalog
        self._poster = GuiPoster(self)
        self.worklist = Worklist(settings, self._poster.post, device_runner=device_runner)
        self._before: dict[int, AiStatus] = {}  # series id -> the status shown before the worklist took it
        self.worklist.subscribe(self._on_event)
        browser.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        browser.tree.customContextMenuRequested.connect(self._context_menu)

    # --- what the window and the menu ask ------------------------------------------------------
    def analyse_in_background(self, study_id: int, series_id: int | None = None) -> None:
        """Queue a study (its best series, or ``series_id``) for analysis in the background."""
        item = self.worklist.enqueue(study_id, series_id=series_id)
        if item.status == "failed" and item.series_id is None:
            self.message.emit(f"Study not queued for analysis: {item.reason}")
        else:
            self.message.emit(f"{item.label} queued for analysis in the background ({item.model_id})")

    def remove(self, study_id: int) -> None:
        """Take a study off the worklist (its running analysis is cancelled)."""
        self.worklist.remove(study_id)

    def arrived(self, study_ids: list[int]) -> bool:
        """The storage listener received these studies: queue them if the settings ask; True if queued."""
        if not self.worklist.analyze_incoming or not study_ids:
            return False
        self.worklist.enqueue_arrival(study_ids)
        return True

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel the running background analysis and drop the queue (before the device runner stops)."""
        return self.worklist.shutdown(timeout_s)

    # --- the context menu ----------------------------------------------------------------------------
    def target(self, item: QTreeWidgetItem | None) -> tuple[int | None, int | None]:
        """The study and series a browser row stands for ((None, None) for a patient row or none)."""
        if item is None:
            return None, None
        series = item.data(COL_NAME, SERIES_ROLE)
        if series is not None:
            study = self.catalog.study_of_series(int(series))
            return (study.id if study is not None else None), int(series)
        key = str(item.data(COL_NAME, KEY_ROLE) or "")
        if key.startswith("s") and key[1:].isdigit():
            return int(key[1:]), None
        return None, None

    def menu_for(self, item: QTreeWidgetItem | None) -> QMenu:
        """The context menu of a browser row: analyse its study (or series) in the background, or remove it."""
        menu = QMenu(self.browser)
        study_id, series_id = self.target(item)
        analyse = menu.addAction(ANALYSE_TEXT)
        analyse.setEnabled(study_id is not None)
        on_list = study_id is not None and self.worklist.item(study_id) is not None
        remove = menu.addAction(REMOVE_TEXT)
        remove.setEnabled(on_list)
        if study_id is not None:
            analyse.triggered.connect(lambda _c=False: self.analyse_in_background(study_id, series_id))
            remove.triggered.connect(lambda _c=False: self.remove(study_id))
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        menu = self.menu_for(self.browser.tree.itemAt(pos))
        menu.exec(self.browser.tree.viewport().mapToGlobal(pos))
        menu.deleteLater()

    # --- drawing the worklist's events ------------------------------------------------------------------
    def _on_event(self, event: WorkStatusChanged) -> None:
        item = event.item
        if item.series_id is None:
            return
        sid = item.series_id
        if item.status == "removed":  # what it showed before it was queued; a finished analysis stays "Done"
            kept = AiStatus.DONE if self.browser.ai_status(sid) == AiStatus.DONE else AiStatus.NONE
            self.browser.set_ai_status(sid, self._before.pop(sid, kept))
            return
        if item.status == "queued":
            self._before.setdefault(sid, self._shown_before(sid))
        status = AiStatus(item.status)
        self.browser.set_ai_status(sid, status)
        row = self.browser.series_item(sid)
        if row is not None:
            row.setToolTip(COL_AI, _tooltip(item.status, item.reason, item.model_id))
        if item.status == "done":
            self._before.pop(sid, None)
            self.seriesAnalysed.emit(sid)
        elif item.status == "failed":
            self._before.pop(sid, None)
            self.message.emit(f"Background analysis of {item.label} failed: {item.reason}")

    def _shown_before(self, series_id: int) -> AiStatus:
        shown = self.browser.ai_status(series_id)
        return shown if shown in (AiStatus.NONE, AiStatus.DONE) else AiStatus.NONE


def _tooltip(status: str, reason: str, model_id: str) -> str:
    if status == "failed":
        return f"Background analysis ({model_id}) failed: {reason}"
    if status == "done" and reason == ALREADY_STORED:
        return f"AI analysis: done ({model_id}, {ALREADY_STORED})"
    return f"AI analysis: {status} ({model_id}, background worklist)"


def attach(window: Any) -> WorklistView:
    """The window's worklist view, bound to its browser, catalog, device runner, status bar and session."""
    view = WorklistView(window.settings, window.browser, window.catalog, window.device_runner, window)
    view.message.connect(lambda text: window.statusBar().showMessage(text, 15_000))
    view.seriesAnalysed.connect(window.session.model.look_up_again)
    return view
