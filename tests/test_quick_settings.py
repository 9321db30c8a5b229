"""``convert``'s settings read without pydantic are the settings' own values, or the full load decides.

Each case writes a real ``settings.json`` and/or ``WORKSTATION_*`` variables, then compares
``plain_settings()`` with what ``get_settings()`` (pydantic) makes of the same sources.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from workstation.quick_settings import FIELD_CHECKS, PlainSettings, plain_settings, settings_now
from workstation.settings import Settings, config_dir, get_settings

PLAIN_FIELDS = ("data_dir", "db", "db_path", "nonuniform_spacing", "import_max_header_mb",
                "import_max_zip_member_mb", "import_max_decoded_mb", "import_file_budget_s")


def _write(data: Any) -> None:
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def _same_as_full(plain: PlainSettings, caplog: pytest.LogCaptureFixture) -> None:
    """The full load gives the same values, and has nothing to warn about (so skipping it hides nothing)."""
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        full = get_settings()
    assert not caplog.records
    for name in PLAIN_FIELDS:
        assert getattr(plain, name) == getattr(full, name), name


def test_every_settings_field_has_a_check() -> None:
    assert set(FIELD_CHECKS) == set(Settings.model_fields)


def test_defaults_and_plain_values_equal_the_full_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    plain = plain_settings()
    assert plain is not None
    _same_as_full(plain, caplog)
    _write({"version": 1, "nonuniform_spacing": "refuse", "import_max_header_mb": 8, "import_file_budget_s": 2,
            "db": str(tmp_path / "other.sqlite"), "pacs": {"nodes": {}}, "device": "cpu", "llm_dir": None,
            "max_interpolated_share": 0.5, "import_workers": 0})
    monkeypatch.setenv("WORKSTATION_IMPORT_MAX_DECODED_MB", "100")
    monkeypatch.setenv("WORKSTATION_IMPORT_FILE_BUDGET_S", "0.25")
    plain = plain_settings()
    assert plain is not None and plain.nonuniform_spacing == "refuse" and plain.import_file_budget_s == 0.25
    _same_as_full(plain, caplog)


@pytest.mark.parametrize("content", [
    '{"import_workers": 2,, oops',  # not JSON: the full load sets it aside
    "[1, 2]",  # not an object
    {"version": 99},  # newer than this application
    {"version": True},
    {"no_such_setting": 1},  # unknown key: warned about
    {"import_workers": -3},  # invalid values: warned about and dropped
    {"import_max_header_mb": 8.0},  # pydantic would coerce: let it
    {"nonuniform_spacing": "fast"},
    {"import_file_budget_s": 0},
    {"data_dir": ""},
    {"pacs": []},
    {"device": "tpu"},
])
def test_anything_unusual_in_the_file_leaves_it_to_the_full_load(content: Any) -> None:
    _write(content)
    assert plain_settings() is None


@pytest.mark.parametrize(("name", "value"), [
    ("WORKSTATION_IMPORT_WORKERS", "-1"),  # invalid: the full load warns
    ("WORKSTATION_IMPORT_MAX_HEADER_MB", " 8"),
    ("WORKSTATION_NONUNIFORM_SPACING", "Refuse"),
    ("WORKSTATION_PACS", "{}"),  # JSON from the environment: pydantic-settings parses it
    ("workstation_nonuniform_spacing", "refuse"),  # matched case-insensitively by pydantic-settings
    ("WORKSTATION_DATA_DIR", ""),
])
def test_an_unusual_environment_variable_leaves_it_to_the_full_load(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                     value: str) -> None:
    monkeypatch.setenv(name, value)
    assert plain_settings() is None


def test_what_the_full_load_warns_about_is_still_warned_about_through_settings_now(
        caplog: pytest.LogCaptureFixture) -> None:
    _write({"import_workers": -3, "nonuniform_spacing": "refuse"})
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        settings = settings_now()
    assert isinstance(settings, Settings) and settings.nonuniform_spacing == "refuse"
    assert any("'import_workers'" in r.getMessage() for r in caplog.records)


def test_loaded_settings_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = get_settings()
    monkeypatch.setenv("WORKSTATION_DATA_DIR", str(tmp_path / "elsewhere"))  # changed after the load
    assert settings_now() is loaded
    get_settings.cache_clear()
    now = settings_now()
    assert isinstance(now, PlainSettings) and now.data_dir == tmp_path / "elsewhere"
