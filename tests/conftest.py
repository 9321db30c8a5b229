"""Test-wide set-up: offscreen Qt, isolated settings, the shared real data, and loud missing requirements.

Real data or a tool that is missing fails the test under ``CI=true`` and is skipped locally, with a banner
at the end of the run counting those skips (``tests/requirements.py``).

Guard rails (napari's approach): ``make_window`` and ``make_viewer`` build the window and the MPR viewer
the way users get them and close them (workers joined) at teardown; an autouse check then fails any test
that leaves a visible top-level widget or a running non-daemon thread (``threading`` or ``QThread``)
behind, and logging handlers and exception hooks installed by a test are taken down again.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.requirements import DATA_FIX, MARK, MISSING_PREFIX, REPO, SHARED_DATA, check_marks, missing

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

__all__ = ["REPO", "SHARED_DATA"]  # re-exported: tests import them from here

#: Session fixtures shared by several modules (one MONAI Label server per run).
pytest_plugins = ["tests.monailabel_fixtures"]

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget
    from pytestqt.qtbot import QtBot

    from workstation.qt.main_window import MainWindow
    from workstation.qt.viewer import MprViewer

#: Seconds a thread may take to finish after its test's teardown before it counts as leaked.
THREAD_GRACE_S = 3.0
#: Every QThread started from Python during the run (QThread.start is wrapped at configure time).
_qthreads: weakref.WeakSet[Any] = weakref.WeakSet()


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo chest study (40x128x128) as DICOM files, made once per run; tests only read it."""
    from workstation.demo import generate_demo_study

    folder = tmp_path_factory.mktemp("demo") / "chest"
    generate_demo_study(folder, shape=(40, 128, 128))
    return folder


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Never read or write the user's settings, index or demo cache."""
    from workstation.settings import get_settings

    root = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("WORKSTATION_DATA_DIR", str(root / "data"))
    for name in list(os.environ):
        if name.startswith("WORKSTATION_") and name not in (
            "WORKSTATION_CONFIG_DIR", "WORKSTATION_DATA_DIR", "WORKSTATION_SHARED_DATA"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def reset_logging_and_hooks() -> Iterator[None]:
    """Logging handlers, the log file and exception hooks a test (or ``cli.main``) installed go again."""
    yield
    from workstation import logs

    logs.uninstall_excepthook()
    logs.shutdown_logging()


def _running_threads() -> list[str]:
    main = threading.main_thread()
    found = [f"thread {t.name!r}" for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    for qthread in list(_qthreads):
        try:
            if qthread.isRunning():
                found.append(f"QThread {type(qthread).__name__}")
        except RuntimeError:  # its C++ object is gone: not running
            pass
    return found


def _visible_top_levels() -> list[QWidget]:
    if "PySide6.QtWidgets" not in sys.modules:
        return []
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        return []
    QApplication.processEvents()
    return [w for w in QApplication.topLevelWidgets() if w.isVisible()]


@pytest.fixture(autouse=True)
def no_leaked_widgets_or_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves visible top-level widgets or running non-daemon threads after its teardown.

    Runs after the test's own fixtures are torn down (it is set up first), so a fixture that closes its
    window is fine; threads get ``THREAD_GRACE_S`` to end. What leaked is closed so the next test starts clean.
    """
    yield
    widgets = _visible_top_levels()
    for widget in widgets:
        widget.close()
    deadline = time.monotonic() + THREAD_GRACE_S
    threads = _running_threads()
    while threads and time.monotonic() < deadline:
        if "PySide6.QtCore" in sys.modules:
            from PySide6.QtCore import QCoreApplication

            QCoreApplication.processEvents()
        time.sleep(0.02)
        threads = _running_threads()
    problems = [f"visible top-level widget {type(w).__name__} {w.windowTitle()!r}" for w in widgets] + threads
    if problems:
        pytest.fail(f"{request.node.nodeid} left behind: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def make_window(qtbot: QtBot) -> Iterator[Callable[..., MainWindow]]:
    """Factory: ``make_window(size=(1500, 950), show=True)`` builds the main window as users get it.

    Every window made is closed at teardown and its workers (AI worker, load, import and thumbnail runners)
    must have stopped by then.
    """
    from workstation.qt.app import create_main_window
    from workstation.settings import get_settings

    windows: list[MainWindow] = []

    def make(size: tuple[int, int] = (1500, 950), show: bool = True) -> MainWindow:
        win = create_main_window(get_settings())
        windows.append(win)
        win.resize(*size)
        if show:
            win.show()
            qtbot.waitExposed(win)
        return win

    yield make
    for win in windows:
        win.close()
        assert not win.session.worker.is_running(), "the AI worker outlived its window"
        assert not win.import_runner.is_running(), "the import runner outlived its window"
        win.deleteLater()


@pytest.fixture
def make_viewer(qtbot: QtBot) -> Iterator[Callable[..., MprViewer]]:
    """Factory: ``make_viewer(size=(900, 700), layout=None)``, an ``MprViewer`` shown and exposed; closed after."""
    from workstation.qt.viewer import MprViewer

    viewers: list[MprViewer] = []

    def make(size: tuple[int, int] = (900, 700), layout: str | None = None) -> MprViewer:
        widget = MprViewer()
        viewers.append(widget)
        widget.resize(*size)
        if layout is not None:
            widget.set_layout(layout)
        widget.show()
        qtbot.waitExposed(widget)
        return widget

    yield make
    for widget in viewers:
        widget.stop_cine()
        widget.close()
        widget.deleteLater()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` or ``$WORKSTATION_SHARED_DATA`` (real scanner DICOM); fails under CI when absent."""
    if not (SHARED_DATA / "README.md").is_file() and not any(SHARED_DATA.glob("*/PROVENANCE.md")):
        missing(f"real test data not found at {SHARED_DATA}", DATA_FIX)
    return SHARED_DATA


def _track_qthreads() -> None:
    """Wrap ``QThread.start`` so the leak check can see every QThread started from Python."""
    try:
        from PySide6.QtCore import QThread
    except ImportError:  # pragma: no cover - Qt is a dependency
        return
    if getattr(QThread.start, "_tracked", False):
        return
    original = QThread.start

    def start(self: QThread, *args: Any, **kwargs: Any) -> None:
        _qthreads.add(self)
        original(self, *args, **kwargs)

    start._tracked = True  # type: ignore[attr-defined]
    QThread.start = start  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _track_qthreads()
    config.addinivalue_line("markers", f"{MARK}(available, what, fix): needs real data or a tool "
                            "(tests/requirements.py): fails under CI=true, skips loudly otherwise")


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_marks(item)


def _missing_reasons(terminalreporter: pytest.TerminalReporter) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(MISSING_PREFIX):
            reasons[reason.removeprefix(MISSING_PREFIX)] += 1
    return reasons


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """A banner counting the tests skipped because real data or a tool is missing (never under CI).

    A wrapper that runs first, so the banner comes after pytest's own short summary, just above the
    final line, where it cannot be missed.
    """
    yield
    reasons = _missing_reasons(terminalreporter)
    total = sum(reasons.values())
    if not total:
        return
    tr = terminalreporter
    tr.write_sep("!", f"{total} tests SKIPPED because real data or tools are missing", red=True, bold=True)
    for reason, count in reasons.most_common():
        what, _, fix = reason.partition(" -- ")
        tr.write_line(f"  {count:4d}  {what}", red=True)
        if fix:
            tr.write_line(f"        -> {fix}")
    tr.write_line("  These tests did not run, so a pass above does not cover them; with CI=true they fail.",
                  bold=True)
