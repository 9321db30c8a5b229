"""Application factory and GUI entry point.

``create_main_window`` builds the window without running an event loop, so tests
(pytest-qt) and the frozen build's self-test share the code path users run.
``WORKSTATION_QUIT_AFTER=N`` quits after N seconds (smoke tests, packaging).
``WORKSTATION_EXIT_AFTER_OPEN=1`` quits once the study or series asked for
(``workstation gui TARGET``, ``workstation demo``) is on screen and its stored
analysis has been looked up, printing one line that says what was opened, which
AI result is shown and how many model runs were started (tests, scripts).
``ensure_app`` also installs the exception hook with the error dialog
(``workstation.qt.errors``), so every way the window is made reports uncaught
exceptions the same way: logged with their traceback, one dialog on screen.
"""

from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from workstation.qt.errors import install_error_dialog
from workstation.qt.main_window import MainWindow
from workstation.qt.messages import install_qt_message_handler
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
    """The running QApplication, created if needed; Qt's messages and uncaught exceptions go to logging from here on."""
    install_qt_message_handler()  # first: the platform plugin already speaks while the app is made
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        guard_none_refcount()  # a no-op unless a PySide6 build with the 6.12.0 reference bug is installed
        app = QApplication(sys.argv[:1])
        app.setApplicationName("Radiology Workstation")
        app.setStyleSheet(_style_sheet())
    install_error_dialog(app)  # idempotent: one hook, one dialog per application
    return app


def create_main_window(settings: Settings) -> MainWindow:
    """Build the main window (no event loop)."""
    ensure_app()
    return MainWindow(settings)


EXIT_AFTER_OPEN = "WORKSTATION_EXIT_AFTER_OPEN"


def opened_line(window: MainWindow, series_id: int) -> str:
    """What ``WORKSTATION_EXIT_AFTER_OPEN`` prints: ids, modality, the AI result shown, the model runs started."""
    session = window.session
    current = session.current
    result = session.result(series_id)
    ai = (f"{result.provenance.model_id} {result.provenance.model_version}" if result is not None else "none")
    study = current.study_id if current is not None else "?"
    modality = current.modality if current is not None else "?"
    return f"opened series {series_id} of study {study} ({modality}); AI result: {ai}; model runs: " \
           f"{session.worker.generation}"


def _exit_after_open(window: MainWindow) -> None:
    """Print ``opened_line`` and close the window once the series is shown and its stored analysis looked up."""
    def done(series_id: int, _found: bool) -> None:
        print(opened_line(window, series_id), flush=True)
        QTimer.singleShot(0, window.close)

    window.session.analysisLookedUp.connect(done)


def run_gui(settings: Settings, open_study: int | None = None, analyze: str | None = None,
            open_series: int | None = None) -> int:
    """Show the window and run the event loop until it closes; optionally open a study (and analyse it) or a series."""
    app = ensure_app()
    window = create_main_window(settings)
    window.show()
    if os.environ.get(EXIT_AFTER_OPEN) == "1":
        if open_study is None and open_series is None:
            QTimer.singleShot(0, window.close)  # nothing asked for: shown, then done
        else:
            _exit_after_open(window)
    if open_series is not None:
        window.session.open_series(open_series)
    elif open_study is not None:
        window.open_study(open_study, analyze=analyze)
    quit_after = os.environ.get("WORKSTATION_QUIT_AFTER")
    if quit_after:
        QTimer.singleShot(int(float(quit_after) * 1000), window.close)
    return int(app.exec())
