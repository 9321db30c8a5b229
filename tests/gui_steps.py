"""Steps a reader takes in the window, shared by the pytest-qt tests (one copy instead of one per test file)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytestqt.qtbot import QtBot

    from workstation.qt.main_window import MainWindow


def import_and_open(qtbot: QtBot, win: MainWindow, folder: Path) -> int:
    """Import ``folder`` through the window, open its one study, and return the id of the series it shows."""
    with qtbot.waitSignal(win.import_finished, timeout=60_000) as blocker:
        win.start_import([folder])
    (study_id,) = blocker.args[0].study_ids
    with qtbot.waitSignal(win.session.seriesOpened, timeout=60_000) as opened:
        assert win.open_study(study_id)
    return int(opened.args[0])
