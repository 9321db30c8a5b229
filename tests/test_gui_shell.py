"""The main window shell: builds without an event loop, imports on a worker thread, lists series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from tests import dicom_factory as f
from workstation.qt.app import create_main_window
from workstation.qt.browser import COL_MODALITY, COL_NAME, SERIES_ROLE
from workstation.settings import get_settings


def test_import_runs_off_the_gui_thread_and_fills_the_browser(qtbot: QtBot, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    f.ct_series(tmp_path / "study", 5, series_number=7)
    (tmp_path / "study" / "bad.dcm").write_bytes(b"nope" * 20)
    window = create_main_window(get_settings())
    qtbot.addWidget(window)
    window.show()
    assert window.browser.tree.topLevelItemCount() == 0
    from PySide6.QtWidgets import QMessageBox

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda parent, title, text: shown.append(text)))
    with qtbot.waitSignal(window.import_finished, timeout=30_000) as blocker:
        window.start_import([tmp_path / "study"])
    result = blocker.args[0]
    assert result.added == 5
    assert window.browser.tree.topLevelItemCount() == 1  # one patient
    series = window.browser.tree.topLevelItem(0).child(0).child(0)  # patient -> study -> series
    assert series.text(COL_MODALITY) == "CT" and series.text(COL_NAME).endswith("\n5 images · 3-D volume")
    assert "1 rejected" in window.statusBar().currentMessage()
    assert shown and "bad.dcm" in shown[0], "the user is told which file was rejected and why"
    window.browser.tree.setCurrentItem(series)
    assert series.data(0, SERIES_ROLE) is not None
    html = window.details.toHtml()
    assert "uniform 2.000 mm" in html
    window.close()
    assert not window.import_runner.is_running()


def test_unavailable_actions_look_unavailable_in_the_dark_theme(qtbot: QtBot, make_window: Any) -> None:
    """'Compare with prior' with no prior is disabled and must be drawn greyed, not in the normal text colour."""
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication, QToolButton

    from workstation.qt.app import _style_sheet

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = app.styleSheet()
    app.setStyleSheet(_style_sheet())  # the theme the application runs with
    try:
        win = make_window()
        buttons = {b.text(): b for b in win.findChildren(QToolButton)}
        disabled, enabled = buttons["Compare with prior"], buttons["Ruler"]
        assert not disabled.isEnabled() and enabled.isEnabled()

        def bright_share(button: QToolButton) -> float:
            """Share of the button's pixels drawn near the normal text colour (#d8d8d8)."""
            image = button.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
            values = [image.pixelColor(x, y).value() for x in range(image.width()) for y in range(image.height())]
            return sum(v > 170 for v in values) / len(values)

        assert bright_share(enabled) > 0.02  # the normal label is drawn in the light text colour
        assert bright_share(disabled) < bright_share(enabled) / 4  # the unavailable one is greyed
    finally:
        app.setStyleSheet(before)
