"""The whole window as a radiologist uses it: open a real CT, read it, run AI, follow a finding, quit.

Everything runs for real: the import runner, the streaming load, the analysis
worker thread with the built-in model, the viewer drawing into offscreen
pixmaps. Each test fails if the window leaves a thread running behind it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from tests import dicom_factory as f
from tests.gui_steps import import_and_open
from tests.requirements import PACS_TOOLS_FIX, requires_program
from workstation.qt.app import create_main_window
from workstation.qt.main_window import MainWindow
from workstation.settings import get_settings


def _image(widget: Any) -> np.ndarray:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3).copy()


def _colourful(rgb: np.ndarray) -> int:
    """Pixels whose channels differ a lot: overlay colour, not the grey CT or the white/yellow text."""
    c = rgb.astype(np.int16)
    spread = c.max(axis=2) - c.min(axis=2)
    return int((spread > 60).sum())


@pytest.fixture
def window(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    problems: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, title, text: problems.append((title, text))))
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda _p, title, text: problems.append((title, text))))
    win = create_main_window(get_settings())
    win.problems = problems  # type: ignore[attr-defined]
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    yield win
    win.close()
    # no thread outlives the window: AI worker, load, import and thumbnail runners
    assert not win.session.worker.is_running()
    assert not win.import_runner.is_running()
    assert not win.session.loading
    leaked = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    assert not leaked, f"top-level widgets left open: {leaked}"



def test_read_a_real_ct_run_ai_and_follow_a_finding(qtbot: QtBot, window: MainWindow, shared_data: Path) -> None:
    series_id = import_and_open(qtbot, window, shared_data / "ct_abdomen_totalseg" / "example_ct_dicom")
    viewer = window.viewer
    assert viewer.volume() is not None and viewer.volume().shape == (20, 512, 512)
    assert window.session.volume() is viewer.volume()
    # scroll: a wheel step on the axial view moves one image
    axial = viewer.view("axial")
    before = viewer.slice_index("axial")
    centre = QPointF(axial.width() / 2, axial.height() / 2)
    wheel = QWheelEvent(centre, axial.mapToGlobal(centre), QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(axial, wheel)
    assert viewer.slice_index("axial") != before
    # window/level: the bone preset (key 4) changes the window and what is drawn
    plain = _image(axial)
    axial.setFocus()
    qtbot.keyClick(axial, Qt.Key.Key_4)
    assert viewer.window_level()[0] == pytest.approx(2000)
    assert np.abs(_image(axial).astype(int) - plain.astype(int)).mean() > 2
    # run the built-in analysis through the real worker thread
    grey = _colourful(_image(axial))
    assert window.analysis_bar.current_model_id() == "builtin.ct"
    with qtbot.waitSignal(window.session.resultShown, timeout=120_000) as shown:
        qtbot.mouseClick(window.analysis_bar.run_button, Qt.MouseButton.LeftButton)
    assert shown.args == [series_id]
    assert window.browser.ai_status(series_id).value == "done"
    qtbot.wait(50)
    assert _colourful(_image(axial)) > grey + 500, "the label map is drawn over the axial view (organs outlined)"
    assert window.findings.row_count() > 5
    # the report panel drafts the study's report from the result (template drafter: no LLM configured)
    qtbot.waitUntil(lambda: window.report.state == "editing", timeout=60_000)
    doc = window.report.document
    assert doc is not None and not doc.signed and "mL" in doc.text()
    # a finding row moves every view to it
    panel = window.findings
    row = next(r for r in range(panel.proxy.rowCount()) if panel.proxy.index(r, 0).data() == "Muscle")
    index = panel.proxy.index(row, 0)
    panel.table.scrollTo(index)
    window.tabs.setCurrentWidget(panel)
    with qtbot.waitSignal(panel.findingSelected, timeout=2000) as picked:
        qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=panel.table.visualRect(index).center())
    target = picked.args[0]
    assert tuple(viewer.current_index()) == tuple(target.voxel)
    assert viewer.slice_index("axial") != -1
    assert not window.problems  # type: ignore[attr-defined]


def test_cancel_a_run_and_quit_during_another(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    from workstation.demo import generate_demo_study

    generate_demo_study(tmp_path / "demo", shape=(120, 256, 256))
    series_id = import_and_open(qtbot, window, tmp_path / "demo")
    with qtbot.waitSignal(window.session.worker.cancelled, timeout=30_000):
        window.session.run_ai("builtin.ct")
        qtbot.wait(300)
        qtbot.mouseClick(window.analysis_bar.cancel_button, Qt.MouseButton.LeftButton)
    assert window.browser.ai_status(series_id).value == "none"
    assert window.viewer.volume() is not None and window.findings.row_count() == 0
    # start again and close the window while it runs: close cancels and joins (checked by the fixture)
    window.session.run_ai("builtin.ct")
    qtbot.wait(200)
    assert window.session.worker.is_busy()


def test_a_series_that_cannot_form_a_volume_is_a_clear_message(qtbot: QtBot, window: MainWindow,
                                                               tmp_path: Path) -> None:
    f.ct_series(tmp_path / "good", 6, series_number=3)
    import_and_open(qtbot, window, tmp_path / "good")
    # the files vanish between import and opening (a CD taken out): the loader says which file and why
    sid = window.session.current.series_id if window.session.current else -1
    for p in (tmp_path / "good").rglob("*.dcm"):
        p.unlink()
    with qtbot.waitSignal(window.session.problem, timeout=30_000) as problem:
        window.session.open_series(sid)
    title, text = problem.args
    assert "could not be opened" in title.lower() and ".dcm" in text
    # the window keeps working: the AI bar is idle and another series still opens
    f.ct_series(tmp_path / "other", 5, series_number=4)
    import_and_open(qtbot, window, tmp_path / "other")
    assert window.viewer.volume().shape[0] == 5


def test_pacs_dialog_opens_from_the_file_menu_without_a_configured_node(qtbot: QtBot, window: MainWindow) -> None:
    action = next(a for a in window.menuBar().actions()[0].menu().actions() if "PACS" in a.text())
    action.trigger()
    from workstation.qt.pacs_dialog import PacsDialog

    dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, PacsDialog) and w.isVisible()]
    assert len(dialogs) == 1
    dialogs[0].close()
    qtbot.waitUntil(lambda: not any(isinstance(w, PacsDialog) and w.isVisible()
                                    for w in QApplication.topLevelWidgets()), timeout=5000)
    assert not window.problems  # type: ignore[attr-defined]


def test_opening_a_study_with_a_model_analyses_it_once_loaded(qtbot: QtBot, window: MainWindow,
                                                              tmp_path: Path) -> None:
    """What `workstation demo` does: open the study, run the built-in model when the series is in."""
    from workstation.demo import generate_demo_study

    generate_demo_study(tmp_path / "demo", shape=(60, 128, 128))
    with qtbot.waitSignal(window.import_finished, timeout=60_000) as blocker:
        window.start_import([tmp_path / "demo"])
    (study_id,) = blocker.args[0].study_ids
    with qtbot.waitSignal(window.session.resultShown, timeout=120_000):
        assert window.open_study(study_id, analyze="builtin.ct")
    assert window.findings.row_count() > 5
    assert not window.problems  # type: ignore[attr-defined]


def test_demo_without_a_window_runs_analysis_and_the_template_report(capsys: pytest.CaptureFixture[str]) -> None:
    """`workstation demo --no-gui` (the README's run command on a machine without a display)."""
    from workstation.cli import main

    assert main(["demo", "--no-gui"]) == 0
    out = capsys.readouterr().out
    assert "DRAFT" in out and "lung" in out.lower()
    assert "comparison with prior of 2023-03-15" in out  # the demo's prior study, found and compared (issue 15)
    report_dir = get_settings().data_dir / "demo_report"
    assert (report_dir / "report.txt").is_file() and (report_dir / "labels.nii.gz").is_file()
    assert any(p.suffix == ".pdf" for p in report_dir.iterdir())


@requires_program("storescu", PACS_TOOLS_FIX)
def test_a_study_pushed_by_pacs_appears_and_is_analysed(qtbot: QtBot, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """listen_on_start + analyze_on_arrival: dcmtk's storescu pushes a CT; the window shows and analyses it."""
    from workstation.demo import generate_demo_study
    from workstation.pacs.nodes import PacsConfig

    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *_a: pytest.fail(f"dialog: {_a[1:]}")))
    monkeypatch.setenv("WORKSTATION_PACS", json.dumps({
        "local": {"ae_title": "WSTEST", "port": 0, "bind_address": "127.0.0.1"},
        "nodes": [{"name": "modality", "ae_title": "STORESCU", "host": "127.0.0.1", "port": 104}],
        "listen_on_start": True, "analyze_on_arrival": True}))
    get_settings.cache_clear()
    assert PacsConfig.from_settings(get_settings()).listen_on_start
    generate_demo_study(tmp_path / "modality", shape=(40, 96, 96))
    win = create_main_window(get_settings())
    qtbot.addWidget(win)
    win.show()
    assert win.pacs_listener is not None and win.pacs_listener.running
    port = win.pacs_listener.listener.port
    files = sorted(str(p) for p in (tmp_path / "modality").glob("*.dcm"))
    with qtbot.waitSignal(win.session.resultShown, timeout=120_000):
        push = subprocess.Popen(["storescu", "-aet", "STORESCU", "-aec", "WSTEST", "127.0.0.1", str(port), *files],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert push.wait(timeout=30) == 0
    assert win.browser.tree.topLevelItemCount() == 1
    assert win.session.volume().shape == (40, 96, 96)
    assert win.findings.row_count() > 3
    win.close()
    assert not win.pacs_listener.running and not win.session.worker.is_running()
