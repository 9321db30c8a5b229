"""Settings survive a bad value: invalid or unknown keys are dropped with a warning, a broken file is set aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from workstation.settings import SETTINGS_VERSION, Settings, config_dir, get_settings


def _write(text: str) -> Path:
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_invalid_and_unknown_keys_are_dropped_and_the_valid_ones_kept(caplog: pytest.LogCaptureFixture) -> None:
    _write(json.dumps({"version": SETTINGS_VERSION, "import_workers": -3, "device": "tpu",
                       "no_such_setting": 1, "import_file_budget_s": 9.5, "nonuniform_spacing": "refuse"}))
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        settings = get_settings()
    assert settings.import_file_budget_s == 9.5 and settings.nonuniform_spacing == "refuse"  # kept
    assert settings.import_workers == 0 and settings.device == "auto"  # dropped: defaults
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "'import_workers'" in warnings and "greater than or equal to 0" in warnings
    assert "'device'" in warnings and "'no_such_setting'" in warnings and "unknown key" in warnings
    assert "import_file_budget_s" not in warnings


def test_a_file_that_is_not_json_is_set_aside_and_defaults_used(caplog: pytest.LogCaptureFixture) -> None:
    path = _write('{"import_workers": 2,, oops')
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        settings = get_settings()
    assert settings.import_workers == 0
    assert not path.exists()
    (aside,) = path.parent.glob("settings.json.bad-*")
    assert aside.read_text(encoding="utf-8") == '{"import_workers": 2,, oops'  # kept for the user to read
    assert any("not JSON" in r.getMessage() and aside.name in r.getMessage() for r in caplog.records)


def test_a_json_value_that_is_not_an_object_is_set_aside_too() -> None:
    path = _write("[1, 2, 3]")
    assert get_settings().import_workers == 0
    assert not path.exists() and list(path.parent.glob("settings.json.bad-*"))


def test_an_invalid_environment_variable_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("WORKSTATION_IMPORT_WORKERS", "-1")
    monkeypatch.setenv("WORKSTATION_IMPORT_MAX_HEADER_MB", "32")
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        settings = get_settings()
    assert settings.import_workers == 0 and settings.import_max_header_mb == 32
    assert any("WORKSTATION_IMPORT_WORKERS" in r.getMessage() for r in caplog.records)


def test_save_writes_the_version_and_reads_back(caplog: pytest.LogCaptureFixture) -> None:
    path = Settings(import_workers=3).save()
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == SETTINGS_VERSION and data["import_workers"] == 3
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        assert get_settings().import_workers == 3
    assert not caplog.records  # the version key is ours, not an unknown one


def test_a_newer_file_keeps_what_this_version_understands(caplog: pytest.LogCaptureFixture) -> None:
    _write(json.dumps({"version": SETTINGS_VERSION + 1, "import_workers": 2, "future_key": True}))
    with caplog.at_level(logging.WARNING, logger="workstation.settings"):
        assert get_settings().import_workers == 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "newer" in messages and "'future_key'" in messages
