"""Test-wide set-up: offscreen Qt, isolated settings, the shared real data, and loud missing requirements.

Real data or a tool that is missing fails the test under ``CI=true`` and is skipped locally, with a banner
at the end of the run counting those skips (``tests/requirements.py``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.requirements import DATA_FIX, MARK, MISSING_PREFIX, REPO, SHARED_DATA, check_marks, missing

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

__all__ = ["REPO", "SHARED_DATA"]  # re-exported: tests import them from here


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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` or ``$WORKSTATION_SHARED_DATA`` (real scanner DICOM); fails under CI when absent."""
    if not (SHARED_DATA / "README.md").is_file() and not any(SHARED_DATA.glob("*/PROVENANCE.md")):
        missing(f"real test data not found at {SHARED_DATA}", DATA_FIX)
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
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
