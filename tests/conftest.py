"""Test-wide set-up: offscreen Qt, isolated settings, and the shared real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", REPO.parent / "shared" / "data"))


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
    """``../shared/data`` (real scanner DICOM); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA
