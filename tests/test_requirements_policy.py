"""Missing real data or tools fail under CI=true and are counted loudly otherwise (issue 17, item 3).

Runs a small pytest in a subprocess with WORKSTATION_SHARED_DATA pointing at an empty folder: one test
that takes the ``shared_data`` fixture and one that needs the worldcheck tool kept beside the data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.requirements import REPO

SELECTION = [
    "tests/test_import_index.py::test_real_ct_with_empty_uids_forms_one_series_and_reimport_adds_nothing",
    "tests/test_volume_geometry.py::test_tilted_stack_passes_worldcheck_and_a_naive_stack_does_not",
]


def _pytest(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "no-data"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    env["WORKSTATION_SHARED_DATA"] = str(empty)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECTION],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_missing_data_fails_under_ci(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, ci=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "skipped" not in out.splitlines()[-1], out
    assert "real test data not found at" in out and "CI=true requires it" in out
    assert "worldcheck tool not found" in out
    assert "WORKSTATION_SHARED_DATA" in out


def test_missing_data_skips_with_a_banner_locally(tmp_path: Path) -> None:
    proc = _pytest(tmp_path, ci=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "5 tests SKIPPED because real data or tools are missing" in out  # 1 + 4 parameters
    assert "real test data not found at" in out and "worldcheck tool not found" in out
    assert "set WORKSTATION_SHARED_DATA" in out
