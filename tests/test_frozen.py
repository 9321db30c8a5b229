"""The self-test, from source in every run and on the frozen PyInstaller bundle when one is built.

``bash packaging/build.sh`` builds ``dist/workstation``; CI builds it first (see
scripts/setup.sh) and sets ``WORKSTATION_REQUIRE_BUNDLE=1``, so there a missing
bundle fails instead of skipping. ``WORKSTATION_FROZEN_APP`` points the tests at
a bundle built elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FROZEN_APP = Path(os.environ.get("WORKSTATION_FROZEN_APP") or REPO / "dist" / "workstation" / "workstation")
REQUIRED = os.environ.get("WORKSTATION_REQUIRE_BUNDLE") == "1"
STEPS = {"resources", "window", "demo study", "decoders", "analysis", "report and exports", "import workers",
         "close", "offline"}


@pytest.fixture
def frozen_app() -> Path:
    if not (FROZEN_APP.is_file() and os.access(FROZEN_APP, os.X_OK)):
        if REQUIRED:
            pytest.fail(f"WORKSTATION_REQUIRE_BUNDLE=1 but there is no frozen build at {FROZEN_APP}")
        pytest.skip(f"no frozen build at {FROZEN_APP}: run 'bash packaging/build.sh' "
                    "(CI builds it when CI=true or WORKSTATION_BUILD_BUNDLE=1)")
    return FROZEN_APP


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKSTATION_") or k == "WORKSTATION_SHARED_DATA"}
    env.update(QT_QPA_PLATFORM="offscreen", WORKSTATION_DATA_DIR=str(tmp_path / "user-data"),
               WORKSTATION_CONFIG_DIR=str(tmp_path / "user-config"), **extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 540) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _failure(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"


def _assert_user_dirs_untouched(tmp_path: Path) -> None:
    """The self-test works in its own temporary folder, never in the user's data or config dir."""
    for name in ("user-data", "user-config"):
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir()), f"{name} was written"


@pytest.mark.slow
def test_self_test_from_source(tmp_path: Path) -> None:
    """``python -m workstation --self-test``: the code path the bundle runs, without freezing."""
    proc = _run([sys.executable, "-m", "workstation", "--self-test"], REPO, _env(tmp_path))
    assert proc.returncode == 0, _failure(proc)
    assert "self-test passed" in proc.stdout, _failure(proc)
    for step in STEPS:
        assert re.search(rf"^\s+ok\s+{re.escape(step)}\s", proc.stdout, re.M), f"step {step!r} missing or failed"
    assert re.search(r"^startup: window shown [\d.]+ s after launch$", proc.stdout, re.M)
    _assert_user_dirs_untouched(tmp_path)


@pytest.mark.slow
def test_frozen_bundle_self_test(frozen_app: Path, tmp_path: Path) -> None:
    """The bundle runs every step, a local language model included, offline, and reports its start-up time."""
    from tests.llm_factory import build_tiny_llm

    # the demo report compares with its prior, so the prompt is longer than the tiny tokenizer's 4096 positions
    llm = build_tiny_llm(tmp_path / "llm" / "tiny-llama", context=8192)
    proc = _run([str(frozen_app), "selftest", "--json", "--llm", str(llm)], tmp_path, _env(tmp_path))
    assert proc.returncode == 0, _failure(proc)
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["ok"] and report["frozen"], _failure(proc)
    steps = {s["name"]: s for s in report["steps"]}
    assert STEPS | {"language model"} <= set(steps), sorted(steps)
    assert all(s["ok"] for s in steps.values()), [s for s in steps.values() if not s["ok"]]
    assert "transformers" in steps["language model"]["detail"]
    assert report["startup_s"] is not None and report["startup_s"] < 60
    _assert_user_dirs_untouched(tmp_path)


@pytest.mark.slow
def test_frozen_bundle_shows_its_window_and_quits_after_n_seconds(frozen_app: Path, tmp_path: Path) -> None:
    """``WORKSTATION_QUIT_AFTER=N`` (smoke tests): the window opens and the process exits cleanly by itself."""
    t0 = time.monotonic()
    proc = _run([str(frozen_app)], tmp_path, _env(tmp_path, WORKSTATION_QUIT_AFTER="1"), timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, _failure(proc)
    assert 1.0 <= elapsed < 60, elapsed
    assert "Traceback" not in proc.stderr, _failure(proc)


def test_frozen_bundle_leaves_out_what_the_app_does_not_use(frozen_app: Path) -> None:
    """The resources are in (SimpleITK too: priors are registered with it); tkinter, the test tools and unused Qt
    parts are out."""
    internal = frozen_app.parent / "_internal"
    assert (internal / "resources" / "style" / "dark.qss").is_file()
    assert list(internal.glob("SimpleITK/_SimpleITK*")), "SimpleITK (follow-up registration) is missing"
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqoffscreen.so").is_file()
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqxcb.so").is_file()
    for unwanted in ("tkinter", "lib-dynload/_tkinter*", "pytest", "_pytest", "mypy", "matplotlib",
                     "IPython", "setuptools", "PySide6/Qt/translations", "PySide6/Qt/plugins/sqldrivers",
                     "PySide6/Qt/plugins/platforms/libqvnc.so"):
        assert not list(internal.glob(unwanted)), f"{unwanted} is in the bundle"
