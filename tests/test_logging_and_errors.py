"""The log file, the one exception hook and its error dialog, and the test guard rails themselves."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests import dicom_factory as f
from tests.conftest import _running_threads
from workstation import logs
from workstation.cli import main
from workstation.qt.errors import ErrorReporter, install_error_dialog
from workstation.qt.main_window import MainWindow
from workstation.settings import get_settings

NAME, PATIENT_ID = "Quixote^Dulcinea", "PID-98765"


def _log_text(data_dir: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted((data_dir / "logs").glob("workstation.log*")))


def test_a_cli_command_writes_its_log_to_the_file_and_never_a_patient_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    f.ct_series(folder, 4, patient_id=PATIENT_ID, PatientName=NAME)
    assert main(["-vv", "import", str(folder)]) == 0
    assert main(["-vv", "qa", "1"]) == 0  # the open path: series read from the index, volume built
    assert main(["-vv", "list"]) == 0
    assert "4 files" in capsys.readouterr().out
    data_dir = get_settings().data_dir
    assert logs.log_file() == data_dir / "logs" / "workstation.log"
    text = _log_text(data_dir)
    assert "workstation.index.importer" in text and "import: 4 files" in text
    for secret in ("Quixote", "Dulcinea", PATIENT_ID):
        assert secret not in text, f"{secret!r} reached the log file"


def test_records_logged_before_the_file_is_known_reach_it(tmp_path: Path) -> None:
    logs.configure_logging(0)
    logging.getLogger("workstation.settings").warning("early warning before the data dir is known")
    path = logs.configure_logging(0, tmp_path)
    assert path is not None
    logging.getLogger("workstation.test").info("after")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert "early warning" in text and "after" in text


def test_rotation_keeps_the_log_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "LOG_MAX_BYTES", 4_000)
    logs.configure_logging(0, tmp_path)
    log = logging.getLogger("workstation.test")
    for k in range(2_000):
        log.info("line %05d %s", k, "x" * 60)
    files = sorted((tmp_path / "logs").glob("workstation.log*"))
    assert len(files) == 1 + logs.LOG_BACKUPS
    assert all(p.stat().st_size <= 4_000 for p in files)
    assert "line 01999" in (tmp_path / "logs" / "workstation.log").read_text(encoding="utf-8")


def test_cli_uncaught_exception_prints_one_line_logs_the_traceback_and_exits_1(tmp_path: Path) -> None:
    script = ("import sys, workstation.cli as cli\n"
              "def boom(args, settings):\n    raise RuntimeError('synthetic failure')\n"
              "cli._cmd_list = boom\n"
              "sys.exit(cli.main(['list']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1  # what Python gives an uncaught exception: unchanged
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    log_path = get_settings().data_dir / "logs" / "workstation.log"
    assert lines == [f"workstation: unexpected error: RuntimeError: synthetic failure; "
                     f"details in the log file: {log_path}"], done.stderr
    text = log_path.read_text(encoding="utf-8")
    assert "Traceback" in text and "in boom" in text


def _raise(message: str) -> None:
    raise RuntimeError(message)


def _dialog_shown(reporter: ErrorReporter) -> bool:
    return reporter.dialog is not None and reporter.dialog.isVisible()


@pytest.mark.qt_no_exception_capture
def test_exception_in_a_qt_timer_is_logged_and_shown_once_and_the_app_goes_on(
        qtbot: QtBot, make_window: Callable[..., MainWindow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)  # no pytest-qt hook to chain to
    log_path = logs.configure_logging(0, tmp_path)
    make_window(show=False)  # the factory installs the hook and the dialog
    assert sys.excepthook is logs._sys_hook
    reporter = install_error_dialog(QApplication.instance())  # type: ignore[arg-type]  # the same one again
    QTimer.singleShot(0, lambda: _raise("synthetic timer failure"))
    qtbot.waitUntil(lambda: _dialog_shown(reporter), timeout=5_000)
    dialog = reporter.dialog
    assert dialog is not None and not dialog.isModal()
    assert dialog.text() == "RuntimeError: synthetic timer failure"
    assert f"Details in the log file: {log_path}" in dialog.informativeText()
    QTimer.singleShot(0, lambda: _raise("second failure"))  # the loop still runs; no second dialog
    qtbot.waitUntil(lambda: "1 more error" in dialog.informativeText(), timeout=5_000)
    shown = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w.windowTitle() == dialog.windowTitle()]
    assert shown == [dialog]
    dialog.close()
    qtbot.waitUntil(lambda: reporter.dialog is None, timeout=5_000)
    assert log_path is not None
    text = log_path.read_text(encoding="utf-8")
    assert "uncaught exception: RuntimeError: synthetic timer failure" in text and "Traceback" in text


def test_exception_in_a_plain_thread_is_logged_and_shown(qtbot: QtBot, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QApplication

    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # not pytest's, so no warning
    log_path = logs.configure_logging(0, tmp_path)
    reporter = install_error_dialog(QApplication.instance())  # type: ignore[arg-type]
    worker = threading.Thread(target=_raise, args=("synthetic thread failure",), name="doomed")
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: _dialog_shown(reporter), timeout=5_000)
    assert reporter.dialog is not None and reporter.dialog.text() == "RuntimeError: synthetic thread failure"
    reporter.dialog.close()
    qtbot.waitUntil(lambda: reporter.dialog is None, timeout=5_000)
    assert log_path is not None
    text = log_path.read_text(encoding="utf-8")
    assert "uncaught exception in thread doomed: RuntimeError: synthetic thread failure" in text
    assert "Traceback" in text


def test_the_leak_check_sees_running_threads_and_qthreads(qtbot: QtBot) -> None:
    from PySide6.QtCore import QThread

    release = threading.Event()
    plain = threading.Thread(target=release.wait, name="lingering")
    plain.start()

    class Waiting(QThread):
        def run(self) -> None:
            release.wait()

    qthread = Waiting()
    qthread.start()
    try:
        found = _running_threads()
        assert "thread 'lingering'" in found and "QThread Waiting" in found
    finally:
        release.set()
        plain.join()
        qthread.wait()
    assert _running_threads() == []
