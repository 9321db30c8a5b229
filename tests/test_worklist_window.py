"""The background worklist in the window: the study browser's status and context menu, and PACS arrivals.

Real window, real device runner, the real built-in CT model on small demo
studies; the storage listener test pushes with dcmtk's storescu.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox, QTreeWidgetItem
from pytestqt.qtbot import QtBot

from tests.requirements import PACS_TOOLS_FIX, requires_program
from workstation.qt.browser import COL_AI
from workstation.qt.main_window import MainWindow
from workstation.qt.worklist_view import ANALYSE_TEXT, REMOVE_TEXT
from workstation.settings import get_settings

SHAPE = (40, 96, 96)


def _import(tmp_path: Path, seed: int) -> tuple[int, int]:
    """A small demo study (its UIDs from ``seed``) imported; its study id and its one series' id."""
    from workstation.demo import generate_demo_study
    from workstation.index import StudyIndex
    from workstation.index.importer import import_paths

    folder = tmp_path / f"study{seed}"
    generate_demo_study(folder, shape=SHAPE, seed=seed)
    with StudyIndex(get_settings().db_path) as index:
        (study_id,) = import_paths([folder], index, workers=1).study_ids
        (series,) = index.series_of_study(study_id)
    return study_id, series.id


def _menu_action(win: MainWindow, row: QTreeWidgetItem | None, text: str) -> tuple[bool, Callable[[], None]]:
    """Whether the row's context menu offers ``text`` enabled, and how to choose it."""
    menu = win.worklist.menu_for(row)
    (action,) = [a for a in menu.actions() if a.text() == text]
    return action.isEnabled(), action.trigger


def test_the_browser_shows_queued_running_done_and_the_result_waits_for_the_reader(
        make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *_a: pytest.fail(f"dialog: {_a[1:]}")))
    first, first_series = _import(tmp_path, 0)
    second, second_series = _import(tmp_path, 1)
    win = make_window()
    browser = win.browser
    qtbot.waitUntil(lambda: "starting" not in win.device_label.text(), timeout=60_000)  # the device is named
    shown: dict[int, list[str]] = {first_series: [], second_series: []}
    # after the window's own listener has drawn the event: what the AI column says now
    win.worklist.worklist.subscribe(lambda e: shown[e.item.series_id or -1].append(
        browser.series_item(e.item.series_id or -1).text(COL_AI)))  # type: ignore[union-attr]
    study_row = browser.series_item(first_series).parent()  # type: ignore[union-attr]
    enabled, analyse = _menu_action(win, study_row, ANALYSE_TEXT)
    assert enabled and not _menu_action(win, study_row, REMOVE_TEXT)[0]
    analyse()
    second_row = browser.series_item(second_series)
    assert second_row is not None
    _menu_action(win, second_row, ANALYSE_TEXT)[1]()  # a series row: that series
    assert browser.ai_status(second_series) == "queued"
    enabled, remove = _menu_action(win, second_row, REMOVE_TEXT)
    assert enabled
    remove()
    qtbot.waitUntil(lambda: browser.ai_status(first_series) == "done", timeout=120_000)
    assert shown[first_series] == ["Queued", "Running", "Done"]
    assert shown[second_series] == ["Queued", "—"] and browser.ai_status(second_series) == "none"
    assert "background worklist" in browser.series_item(first_series).toolTip(COL_AI)  # type: ignore[union-attr]
    browser.refresh()  # the store says so too: "Done" survives a refresh
    assert browser.ai_status(first_series) == "done" and browser.ai_status(second_series) == "none"

    with qtbot.waitSignal(win.session.resultShown, timeout=60_000):  # the reader opens it: the analysis waits
        win.open_study(first)
    assert win.session.result(first_series).provenance.model_id == "builtin.ct"
    assert not win.session.worker.is_busy() and win.session.worker.generation == 0  # nothing ran again
    assert win.findings.row_count() > 3
    assert second != first


@requires_program("storescu", PACS_TOOLS_FIX)
def test_a_study_pushed_by_pacs_is_analysed_in_the_background_when_the_setting_is_on(
        make_window: Callable[..., MainWindow], qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workstation.demo import generate_demo_study
    from workstation.services.catalog import Catalog

    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *_a: pytest.fail(f"dialog: {_a[1:]}")))
    monkeypatch.setenv("WORKSTATION_PACS", json.dumps({
        "local": {"ae_title": "WSTEST", "port": 0, "bind_address": "127.0.0.1"},
        "nodes": [{"name": "modality", "ae_title": "STORESCU", "host": "127.0.0.1", "port": 104}],
        "listen_on_start": True}))
    monkeypatch.setenv("WORKSTATION_WORKLIST", json.dumps({"analyze_incoming": True}))
    get_settings.cache_clear()
    generate_demo_study(tmp_path / "modality", shape=SHAPE)
    win = make_window()
    assert win.pacs_listener is not None and win.pacs_listener.running
    port = win.pacs_listener.listener.port
    files = sorted(str(p) for p in (tmp_path / "modality").glob("*.dcm"))
    push = subprocess.Popen(["storescu", "-aet", "STORESCU", "-aec", "WSTEST", "127.0.0.1", str(port), *files],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert push.wait(timeout=60) == 0
    qtbot.waitUntil(lambda: bool(win.worklist.worklist.items()), timeout=60_000)
    (item,) = win.worklist.worklist.items()
    assert item.origin == "pacs" and item.series_id is not None
    qtbot.waitUntil(lambda: win.browser.ai_status(item.series_id or -1) == "done", timeout=120_000)
    assert win.session.current is None  # the reader was not pulled to the arriving study
    listing = Catalog.for_settings(get_settings()).listing()
    assert listing.analysed is not None and item.series_id in listing.analysed


def test_with_the_setting_off_a_pushed_study_is_not_queued(make_window: Callable[..., MainWindow]) -> None:
    """The default: the listener's arrivals are not the worklist's (``worklist.analyze_incoming`` off)."""
    win = make_window(show=False)
    assert not win.worklist.worklist.analyze_incoming
    assert not win.worklist.arrived([1]) and win.worklist.worklist.items() == []
