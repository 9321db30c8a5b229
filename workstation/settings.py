"""The one settings object of the application.

Values come from, in order of precedence: ``WORKSTATION_*`` environment
variables, the JSON file ``settings.json`` in the user's config dir, defaults.
Tests point ``WORKSTATION_CONFIG_DIR`` and ``WORKSTATION_DATA_DIR`` at temporary
folders, so they never read or write the user's settings.

One bad value never stops the application: the file carries a ``version``
(``SETTINGS_VERSION``), and on load each unknown or invalid key is dropped with
a warning naming the key and why, keeping the valid ones; a file that is not a
JSON object at all is set aside as ``settings.json.bad-<timestamp>`` and the
defaults are used. An invalid ``WORKSTATION_*`` variable falls back to the
default the same way.
"""

from __future__ import annotations

import json
import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where the settings live and the file's version are shared with the pydantic-free reader of
# ``convert``'s few values (``workstation.quick_settings``); re-exported here for every other caller.
from workstation.quick_settings import APP_NAME, SETTINGS_VERSION, config_dir, default_data_dir

logger = logging.getLogger(__name__)

__all__ = ["APP_NAME", "SETTINGS_VERSION", "Settings", "config_dir", "get_settings", "load_settings",
           "resources_dir"]


def resources_dir() -> Path:
    """The ``resources/`` folder: ``WORKSTATION_RESOURCES``, a frozen bundle's, or the source checkout's."""
    import sys

    env = os.environ.get("WORKSTATION_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


class Settings(BaseSettings):
    """Everything a user or IT installer can configure."""

    model_config = SettingsConfigDict(env_prefix="WORKSTATION_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    db: Path | None = None
    models_dir: Path | None = None
    import_workers: int = Field(default=0, ge=0, description="0 = one per CPU core")
    import_max_header_mb: int = Field(default=64, ge=1, description="import reads at most this much of a file "
                                      "before its pixel data; larger headers are rejected with the reason")
    import_max_zip_member_mb: int = Field(default=1024, ge=1, description="zip members that inflate to more "
                                          "than this are refused (zip bombs), with the reason")
    import_max_decoded_mb: int = Field(default=4096, ge=1, description="objects declaring more pixel data than "
                                       "this (Rows x Columns x frames) are rejected at import")
    import_file_budget_s: float = Field(default=5.0, gt=0, description="seconds one file's header may take to "
                                        "read before it is rejected, so one file never holds up an import")
    import_commit_every_s: float = Field(default=0.5, ge=0, description="an import commits what it has read at "
                                         "the next folder boundary once this long has passed (a killed import "
                                         "keeps those series); 0 = at every folder")
    nonuniform_spacing: Literal["resample", "refuse"] = "resample"
    max_interpolated_share: float = Field(
        default=0.10, ge=0.0, le=1.0,
        description="analysis refuses a series when more than this share of its slices would be interpolated "
                    "(missing slices, gaps); --allow-interpolated or 'Analyse anyway' overrides")
    pacs: dict[str, Any] = Field(
        default_factory=dict,
        description="PACS nodes, our AE title and listener port; validated on use by "
                    "workstation.pacs.nodes.PacsConfig (kept as data so settings never import the PACS stack)")
    inference: dict[str, Any] = Field(
        default_factory=dict,
        description="engine options; 'remote': MONAI Label nodes, name -> URL or {url, token_env (the environment "
                    "variable holding a bearer token), timeout_s, connect_timeout_s, retries, ca_file}; validated "
                    "on use by inference.remote.nodes (a bad node is dropped with a warning). Only these nodes "
                    "are ever contacted")
    worklist: dict[str, Any] = Field(
        default_factory=dict,
        description="background worklist: 'analyze_incoming' (default false) queues every study a PACS pushes "
                    "to the window's listener for analysis; 'model' (default builtin.ct, or remote:NODE/MODEL); "
                    "validated on use by workstation.services.worklist.WorklistConfig")
    llm_dir: Path | None = Field(default=None, description="local language model folder for report drafting "
                                 "(config.json, *.safetensors, tokenizer); none = template drafter")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="where models run: auto = CUDA if usable, else MPS, else CPU")

    @property
    def db_path(self) -> Path:
        """The SQLite study index."""
        return self.db if self.db is not None else self.data_dir / "index.sqlite"

    @property
    def demo_dir(self) -> Path:
        """Where the generated demo study is cached."""
        return self.data_dir / "demo"

    @property
    def models_path(self) -> Path:
        """The only folder model bundles are loaded from."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    def save(self) -> Path:
        """Write the non-default values to ``settings.json`` and return its path."""
        path = config_dir() / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": SETTINGS_VERSION, **self.model_dump(mode="json", exclude_defaults=True)}
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path


def _set_aside(path: Path, why: str) -> None:
    """Rename an unusable settings file to ``settings.json.bad-<timestamp>`` so the user can still read it."""
    target = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        path.replace(target)
    except OSError as exc:
        logger.warning("settings file %s is %s and could not be set aside (%s); using the defaults", path, why, exc)
        return
    logger.warning("settings file %s is %s; set aside as %s, using the defaults", path, why, target.name)


def _file_values() -> dict[str, Any]:
    """The file's keys, known ones only (unknown keys are dropped with a warning); {} without a usable file."""
    path = config_dir() / "settings.json"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        logger.warning("ignoring unreadable settings file %s: %s", path, exc)
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        _set_aside(path, f"not JSON ({exc})")
        return {}
    if not isinstance(data, dict):
        _set_aside(path, f"not a JSON object (a {type(data).__name__})")
        return {}
    version = data.pop("version", None)
    if isinstance(version, int) and not isinstance(version, bool) and version > SETTINGS_VERSION:
        logger.warning("settings file %s is version %d, newer than this application's %d; keeping the keys "
                       "it understands", path, version, SETTINGS_VERSION)
    elif version is not None and not (isinstance(version, int) and not isinstance(version, bool)):
        logger.warning("settings file %s: ignoring 'version' (%.80r): not a whole number", path, version)
    known = Settings.model_fields
    for key in [k for k in data if k not in known]:
        logger.warning("settings file %s: ignoring unknown key %r", path, key)
        del data[key]
    return data


def _bad_keys(error: ValidationError) -> dict[str, str]:
    """Top-level key -> why, for each error pydantic found."""
    bad: dict[str, str] = {}
    for item in error.errors():
        loc = item.get("loc") or ("?",)
        bad.setdefault(str(loc[0]), str(item.get("msg", "invalid")))
    return bad


def load_settings() -> Settings:
    """Build settings from the file, with environment variables taking precedence.

    An invalid value from the file is dropped (the environment's or the default applies); an invalid
    environment variable is replaced by the default. Each is logged as a warning with the reason.
    """
    values = _file_values()
    env_names = {k.lower().removeprefix("workstation_") for k in os.environ if k.startswith("WORKSTATION_")}
    values = {k: v for k, v in values.items() if k not in env_names}
    for _ in range(len(Settings.model_fields) + 1):  # each round fixes at least one key
        try:
            return Settings(**values)
        except ValidationError as exc:
            error = exc
        for key, why in _bad_keys(error).items():
            if key in values and key not in env_names:
                logger.warning("settings file: ignoring %r (%.80r): %s", key, values.pop(key), why)
            elif key in Settings.model_fields:
                logger.warning("ignoring WORKSTATION_%s: %s; using the default", key.upper(), why)
                values[key] = Settings.model_fields[key].get_default(call_default_factory=True)
            else:  # not a key we can drop: nothing more to try
                raise error
    return Settings(**values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (call ``get_settings.cache_clear()`` after changing the env)."""
    return load_settings()
