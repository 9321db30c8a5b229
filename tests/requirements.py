"""What a test needs from outside the repository (real data, external programs, optional packages).

A missing requirement must never let a run pass quietly:

- with ``CI=true`` the test FAILS, naming what is missing and how to get it;
- locally it is skipped with a reason that starts with ``MISSING:``, and ``tests/conftest.py``
  counts those skips in a banner at the end of the run.

Use ``missing()`` inside a test or fixture, ``requires()`` as a mark (test, class or ``pytestmark``)
in place of ``pytest.mark.skipif``, and ``import_or_missing()`` in place of ``pytest.importorskip``.
Skips that are not about data or tools (no CUDA device, no POSIX signal) stay ordinary skips.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

logger = logging.getLogger(__name__)

CI = os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}
MISSING_PREFIX = "MISSING: "
MARK = "requires"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA") or REPO.parent / "shared" / "data")
DATA_FIX = ("set WORKSTATION_SHARED_DATA to the shared 'data' folder (README.md, 'Test data'), "
            "or clone the repository beside ../shared")
PACS_TOOLS_FIX = "bash scripts/install_pacs_tools.sh"
SYSTEM_TOOLS_FIX = "bash scripts/setup.sh test (apt-get install dcm2niix dicom3tools xvfb)"


def missing(what: str, fix: str) -> NoReturn:
    """Fail (CI) or skip loudly (locally) because ``what`` is not here; ``fix`` says how to get it."""
    if CI:
        pytest.fail(f"{what}; CI=true requires it: {fix}", pytrace=False)
    pytest.skip(f"{MISSING_PREFIX}{what} -- {fix}", allow_module_level=True)


def requires(available: bool, what: str, fix: str) -> pytest.MarkDecorator:
    """A mark: the test runs when ``available``, else ``missing(what, fix)`` at set-up."""
    mark: pytest.MarkDecorator = getattr(pytest.mark, MARK)(available=available, what=what, fix=fix)
    return mark


def requires_program(program: str, fix: str) -> pytest.MarkDecorator:
    """A mark for a test that runs ``program`` (looked up on PATH)."""
    return requires(shutil.which(program) is not None, f"{program} not on PATH", fix)


def import_or_missing(module: str, fix: str) -> ModuleType:
    """``pytest.importorskip`` that fails under CI."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"Python package {module} cannot be imported ({exc})", fix)


def check_marks(item: pytest.Item) -> None:
    """Apply every ``requires`` mark of ``item`` (called from conftest's set-up hook)."""
    for mark in item.iter_markers(MARK):
        if not mark.kwargs.get("available", True):
            missing(str(mark.kwargs.get("what", "a requirement")), str(mark.kwargs.get("fix", "")))
