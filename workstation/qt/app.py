"""Application factory and GUI entry point.

``create_main_window`` builds the window without running an event loop, so tests
(pytest-qt) and the frozen build's self-test share the code path users run.
``WORKSTATION_QUIT_AFTER=N`` quits after N seconds (smoke tests, packaging).
"""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from workstation.qt.main_window import MainWindow
from workstation.qt.refcount_guard import guard_none_refcount
from workstation.settings import Settings, resources_dir

logger = logging.getLogger(__name__)

def _style_sheet() -> str:
    path = resources_dir() / "style" / "dark.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        logger.warning("style sheet %s not found; using Qt's default look", path)
        return ""


def ensure_app() -> QApplication:
    """The running QApplication, created if needed."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    guard_none_refcount()  # a no-op unless a PySide6 build with the 6.12.0 reference bug is installed
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Radiology Workstation")
    app.setStyleSheet(_style_sheet())
    return app


def create_main_window(settings: Settings) -> MainWindow:
    """Build the main window (no event loop)."""
    ensure_app()
    return MainWindow(settings)


def run_gui(settings: Settings, open_study: int | None = None, analyze: str | None = None) -> int:
    """Show the window and run the event loop until it closes; optionally open a study and analyse it."""
    app = ensure_app()
    window = create_main_window(settings)
    window.show()
    if open_study is not None:
        window.open_study(open_study, analyze=analyze)
    quit_after = os.environ.get("WORKSTATION_QUIT_AFTER")
    if quit_after:
        QTimer.singleShot(int(float(quit_after) * 1000), window.close)
    return int(app.exec())
