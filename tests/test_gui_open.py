"""``workstation gui STUDY_OR_SERIES`` opens it directly; a target that names nothing exits 2 before any window.

Real subprocesses on Qt's offscreen platform; ``WORKSTATION_EXIT_AFTER_OPEN=1``
makes the window print what it opened and quit once the series is on screen.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workstation.demo import generate_demo_study
from workstation.index import StudyIndex
from workstation.services.opening import resolve_open_target
from workstation.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
SHAPE = (24, 64, 64)


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKSTATION_")}
    env.update(QT_QPA_PLATFORM="offscreen", WORKSTATION_DATA_DIR=str(root / "data"),
               WORKSTATION_CONFIG_DIR=str(root / "config"), WORKSTATION_EXIT_AFTER_OPEN="1",
               WORKSTATION_QUIT_AFTER="60", **extra)  # the second switch: never a hung test
    return env


def _gui(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workstation", *args], cwd=REPO, env=_env(root),
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=SHAPE)
    return folder


def test_gui_on_a_folder_imports_it_and_opens_its_series(demo: Path, tmp_path: Path) -> None:
    proc = _gui(tmp_path, "gui", str(demo))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "opened series 1 of study 1 (CT); AI result: none; model runs: 0" in proc.stdout
    assert (tmp_path / "data" / "index.sqlite").is_file()  # imported into the user's index first
    again = _gui(tmp_path, "gui", "1")  # now by its index id, and by study
    assert again.returncode == 0 and "opened series 1 of study 1" in again.stdout, again.stderr[-3000:]
    study = _gui(tmp_path, "gui", "study:1")
    assert study.returncode == 0 and "opened series 1 of study 1" in study.stdout, study.stderr[-3000:]


@pytest.mark.parametrize("target", ["study:7", "1.2.3.4.5", "no/such/folder"])
def test_an_unknown_target_exits_2_with_a_message_before_any_window(target: str, tmp_path: Path) -> None:
    proc = _gui(tmp_path, "gui", target)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"workstation: {target}: no such file, folder, study or series" in proc.stderr
    assert "opened" not in proc.stdout
    assert not (tmp_path / "config" / "window.json").exists()  # no window was shown (and closed)


def test_resolving_names_series_studies_and_refuses_what_is_not_a_volume(demo: Path) -> None:
    settings = get_settings()
    with StudyIndex(settings.db_path) as index:
        target = resolve_open_target(str(demo), index, settings)
        assert (target.study_id, target.series_id) == (1, 1) and target.imported > 0
        (row,) = index.series(1)
        for name in ("1", row.series_uid, row.series_key):
            assert resolve_open_target(name, index, settings).series_id == 1
        study = index.study(1)
        assert study is not None
        for name in ("study:1", study.study_uid, study.study_key):
            found = resolve_open_target(name, index, settings)
            assert (found.study_id, found.series_id) == (1, None)
        assert resolve_open_target(str(demo), index, settings).imported == 0  # indexed already: nothing added
