"""The window and the command line share one record of analyses (and of report drafts).

``workstation analyze`` and ``workstation report`` run as real subprocesses on a
small demo study; the window (``create_main_window``) then finds their analysis
in the store: the browser says Done, and opening the series shows the overlay,
the findings and the saved report draft without the worker receiving a job.
An analysis whose record no longer matches (another model version, the series
re-imported with another set of images) is never shown. The other way round,
a result of the window's worker is kept in the store and ``report`` reuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from workstation.demo import generate_demo_study
from workstation.document import AutosaveStore
from workstation.qt.app import create_main_window
from workstation.qt.main_window import MainWindow
from workstation.services.analysis_store import AnalysisStore
from workstation.settings import get_settings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SHAPE = (60, 128, 128)


@dataclass
class Analysed:
    """A demo study imported into its own data dir, analysed by ``workstation analyze``, reported by ``report``."""

    root: Path
    folder: Path
    analyze: subprocess.CompletedProcess[str]
    report: subprocess.CompletedProcess[str]

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.root, **extra)


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``workstation`` subprocess whose user dirs are under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKSTATION_")}
    env.update(QT_QPA_PLATFORM="offscreen", WORKSTATION_DATA_DIR=str(root / "data"),
               WORKSTATION_CONFIG_DIR=str(root / "config"), **extra)
    return env


def workstation(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``workstation`` command as a user does (a new process)."""
    return subprocess.run([sys.executable, "-m", "workstation", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    root = tmp_path_factory.mktemp("shared")
    folder = root / "study"
    generate_demo_study(folder, shape=SHAPE)
    env = cli_env(root)
    _ok(workstation("import", str(folder), env=env))
    analyze = workstation("analyze", "study:1", "--device", "cpu", "--out", str(root / "cli-out"), env=env)
    _ok(analyze)
    report = workstation("report", "study:1", "--device", "cpu", "--out", str(root / "cli-report"), env=env)
    _ok(report)
    return Analysed(root, folder, analyze, report)


@pytest.fixture
def use_dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point this process' settings at a root's data and config dirs (and an index file, if given)."""
    def point(root: Path, db: Path | None = None) -> None:
        monkeypatch.setenv("WORKSTATION_DATA_DIR", str(root / "data"))
        monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(root / "config"))
        if db is not None:
            monkeypatch.setenv("WORKSTATION_DB", str(db))
        get_settings.cache_clear()

    yield point
    get_settings.cache_clear()


@pytest.fixture
def open_window(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build the real main window on the current settings; fails on any message box; closes it after."""
    problems: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, title, text: problems.append((title, text))))
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        win = create_main_window(get_settings())
        qtbot.addWidget(win)
        win.show()
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.close()
        assert not win.session.worker.is_running()
    assert not problems, problems


def _open_first_series(qtbot: QtBot, win: MainWindow) -> tuple[int, bool]:
    """Open the study's main series; its id and whether a stored analysis was shown."""
    with qtbot.waitSignal(win.session.analysisLookedUp, timeout=60_000) as looked:
        assert win.open_study(1)
    return int(looked.args[0]), bool(looked.args[1])


# ----------------------------------------------------------------------------- command line -> window


def test_cli_keeps_its_analysis_in_the_store_and_report_reuses_it(analysed: Analysed) -> None:
    assert "reused from the analysis store" in analysed.report.stdout
    store = AnalysisStore(analysed.root / "data" / "analyses")
    (record,) = store.records()
    assert record.model_id == "builtin.ct"
    assert {p.name for p in record.folder.iterdir()} == {"labels.nii.gz", "findings.json", "analysis_source.json"}
    assert (analysed.root / "cli-out" / "findings.json").is_file()  # the --out folder is still written
    assert (analysed.root / "cli-report" / "labels.nii.gz").is_file()


def test_window_shows_the_cli_analysis_and_draft_without_running_the_model(
        qtbot: QtBot, analysed: Analysed, use_dirs: Any, open_window: Any) -> None:
    use_dirs(analysed.root)
    win = open_window()
    (series_id,) = win.browser.series_ids()
    assert win.browser.ai_status(series_id).value == "done"
    item = win.browser.series_item(series_id)
    assert item is not None and item.text(2) == "Done"
    with qtbot.waitSignal(win.session.resultShown, timeout=60_000):
        opened, found = _open_first_series(qtbot, win)
    assert opened == series_id and found
    result = win.session.result(series_id)
    assert result is not None and result.provenance.model_id == "builtin.ct"
    assert any("analysis store" in n for n in result.provenance.notes)
    assert win.viewer.overlay() is not None
    assert win.findings.row_count() > 5
    assert win.session.worker.generation == 0 and not win.session.worker.is_busy()  # the worker got no job
    # the report context reopens the draft `workstation report` saved, rather than drafting again
    saved = AutosaveStore(settings=get_settings()).drafts()
    assert len(saved) == 1
    qtbot.waitUntil(lambda: win.report.document is not None, timeout=10_000)
    assert win.report.document is not None and win.report.document.study_key == saved[0].study_key
    assert win.report.state != "streaming"


def test_another_model_version_is_not_reused(qtbot: QtBot, analysed: Analysed, use_dirs: Any, open_window: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.builtin_ct import BuiltinCTModel

    monkeypatch.setattr(BuiltinCTModel, "version", "99.0.0")
    use_dirs(analysed.root)
    win = open_window()
    (series_id,) = win.browser.series_ids()
    assert win.browser.ai_status(series_id).value == "none"
    opened, found = _open_first_series(qtbot, win)
    assert opened == series_id and not found
    assert win.session.result(series_id) is None and win.viewer.overlay() is None
    assert win.findings.row_count() == 0 and win.session.worker.generation == 0


def test_a_series_reimported_with_other_images_is_not_reused(qtbot: QtBot, analysed: Analysed, tmp_path: Path,
                                                            use_dirs: Any, open_window: Any) -> None:
    fewer = tmp_path / "fewer"
    shutil.copytree(analysed.folder, fewer)
    dropped = sorted(fewer.rglob("*.dcm"))[0]
    dropped.unlink()  # the same series (UIDs, number, geometry) with one image less
    db = tmp_path / "index.sqlite"
    _ok(workstation("--db", str(db), "import", str(fewer), env=analysed.env()))
    use_dirs(analysed.root, db)
    win = open_window()
    (series_id,) = win.browser.series_ids()
    assert win.browser.ai_status(series_id).value == "none"
    opened, found = _open_first_series(qtbot, win)
    assert opened == series_id and not found
    assert win.viewer.overlay() is None and win.session.worker.generation == 0


# ----------------------------------------------------------------------------- window -> command line


def test_the_windows_result_is_kept_and_report_reuses_it(qtbot: QtBot, tmp_path: Path, open_window: Any) -> None:
    from workstation.index import StudyIndex, import_paths

    folder = tmp_path / "study"
    generate_demo_study(folder, shape=SHAPE)
    settings = get_settings()
    with StudyIndex(settings.db_path) as index:
        import_paths([folder], index)
    win = open_window()
    series_id, found = _open_first_series(qtbot, win)
    assert not found and win.browser.ai_status(series_id).value == "none"
    store = AnalysisStore.for_settings(settings)
    kept_when_shown: list[bool] = []
    win.session.resultShown.connect(lambda _sid: kept_when_shown.append(bool(store.records())))
    with qtbot.waitSignal(win.session.resultShown, timeout=120_000):
        assert win.session.run_ai("builtin.ct") is not None
    # kept by the worker thread before the result is shown: the write never competes with drawing it,
    # and what the reader sees is already on disk
    assert kept_when_shown == [True]
    win.refresh()
    assert win.browser.ai_status(series_id).value == "done"
    root = settings.data_dir.parent
    proc = workstation("report", "study:1", "--device", "cpu", "--out", str(tmp_path / "out"), env=cli_env(root))
    assert "reused from the analysis store" in _ok(proc)


def test_gui_on_the_study_shows_the_stored_analysis_in_a_new_process(analysed: Analysed) -> None:
    proc = workstation("gui", "study:1", env=analysed.env(WORKSTATION_EXIT_AFTER_OPEN="1", WORKSTATION_QUIT_AFTER="60"))
    assert "of study 1 (CT); AI result: builtin.ct " in _ok(proc)
    assert "model runs: 0" in proc.stdout
