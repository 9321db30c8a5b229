"""Where the settings live, and the few plain values a fast command needs, read without pydantic.

``workstation.settings`` builds the one ``Settings`` object with pydantic, whose import costs about
100 ms of every command's start-up. ``workstation convert`` only needs the data dir (log file, audit
trail, index), the non-uniform spacing policy and the import limits, so ``settings_now`` reads those
from the same sources with the same precedence (``WORKSTATION_*`` environment variables, then
``settings.json`` in the config dir, then the defaults).

It only answers when it is sure the full load would give the same values without a word: every key
in the file and every ``WORKSTATION_*`` setting variable must be one it knows and pass a check at
least as strict as pydantic's. Anything else (a broken file, an unknown key, a value pydantic might
coerce or reject, a newer file version) loads the full settings instead, which warns, repairs and
sets aside exactly as before. Once the full settings are loaded they always win.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

APP_NAME = "radiology-workstation"
#: Written into ``settings.json``; raise it (and convert old files in ``settings._file_values``) when a key changes.
SETTINGS_VERSION = 1
ENV_PREFIX = "WORKSTATION_"


def config_dir() -> Path:
    """Folder holding ``settings.json`` (``WORKSTATION_CONFIG_DIR`` overrides)."""
    env = os.environ.get("WORKSTATION_CONFIG_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_data_dir() -> Path:
    """The per-user data folder used when no ``data_dir`` is configured."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class PlainSettings:
    """The settings ``convert`` uses, with the meaning and defaults of the ``Settings`` fields of the same name."""

    data_dir: Path
    db: Path | None = None
    nonuniform_spacing: Literal["resample", "refuse"] = "resample"
    import_max_header_mb: int = 64
    import_max_zip_member_mb: int = 1024
    import_max_decoded_mb: int = 4096
    import_file_budget_s: float = 5.0

    @property
    def db_path(self) -> Path:
        """The SQLite study index."""
        return self.db if self.db is not None else self.data_dir / "index.sqlite"

    def with_db(self, db: Path | None) -> PlainSettings:
        """A copy naming another index file (``--db``)."""
        return replace(self, db=db)


# -- checks at least as strict as the Settings model's (tests compare them with pydantic) ------------------------

def _path(value: Any) -> bool:
    return isinstance(value, str) and value != "" and "\0" not in value


def _optional_path(value: Any) -> bool:
    return value is None or _path(value)


def _int(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _float(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and v <= high

    return check


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in choices


def _object(value: Any) -> bool:
    return isinstance(value, dict)


#: Every ``Settings`` field: the check a file value must pass to be taken as it is.
FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "data_dir": _path, "db": _optional_path, "models_dir": _optional_path, "import_workers": _int(0),
    "import_max_header_mb": _int(1), "import_max_zip_member_mb": _int(1), "import_max_decoded_mb": _int(1),
    "import_file_budget_s": _float(0.0, low_open=True), "import_commit_every_s": _float(0.0),
    "nonuniform_spacing": _one_of("resample", "refuse"), "max_interpolated_share": _float(0.0, 1.0),
    "pacs": _object, "inference": _object, "worklist": _object, "llm_dir": _optional_path,
    "device": _one_of("auto", "cpu", "cuda", "mps"),
}
_PATHS = frozenset({"data_dir", "db", "models_dir", "llm_dir"})
_INTS = frozenset({"import_workers", "import_max_header_mb", "import_max_zip_member_mb", "import_max_decoded_mb"})
_FLOATS = frozenset({"import_file_budget_s", "import_commit_every_s", "max_interpolated_share"})
_LITERALS = frozenset({"nonuniform_spacing", "device"})
_DIGITS = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")


class _UnsureError(Exception):
    """The full settings load must decide (and may warn)."""


def _env_value(name: str, text: str) -> Any:
    """An environment variable's value as the model would take it; ``_UnsureError`` if not plainly valid."""
    if name in _PATHS:
        value: Any = text
    elif name in _INTS and _DIGITS.fullmatch(text):
        value = int(text)
    elif name in _FLOATS and _DECIMAL.fullmatch(text):
        value = float(text)
    elif name in _LITERALS:
        value = text
    else:  # JSON objects and anything pydantic-settings might parse another way
        raise _UnsureError(name)
    if not FIELD_CHECKS[name](value):
        raise _UnsureError(name)
    return value


def _env_values() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, text in os.environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in FIELD_CHECKS:
            continue  # WORKSTATION_CONFIG_DIR, WORKSTATION_RESOURCES...: not settings fields
        if not key.startswith(ENV_PREFIX) or key[len(ENV_PREFIX):] != name.upper():
            raise _UnsureError(key)  # pydantic-settings matches names case-insensitively
        out[name] = _env_value(name, text)
    return out


def _file_values(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise _UnsureError("unreadable file") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _UnsureError("not JSON") from exc
    if not isinstance(data, dict):
        raise _UnsureError("not an object")
    version = data.pop("version", None)
    if version is not None and not (type(version) is int and version <= SETTINGS_VERSION):
        raise _UnsureError("version")
    for key, value in data.items():
        check = FIELD_CHECKS.get(key)
        if check is None or not check(value):
            raise _UnsureError(key)
    return data


def plain_settings() -> PlainSettings | None:
    """The values ``convert`` needs, or ``None`` when only the full settings load can say (see the module doc)."""
    try:
        values = {**_file_values(config_dir() / "settings.json"), **_env_values()}
    except _UnsureError as exc:
        logger.debug("settings: full load needed (%s)", exc)
        return None
    db = values.get("db")
    return PlainSettings(
        data_dir=Path(values["data_dir"]) if "data_dir" in values else default_data_dir(),
        db=Path(db) if db is not None else None,
        nonuniform_spacing=values.get("nonuniform_spacing", "resample"),
        import_max_header_mb=values.get("import_max_header_mb", 64),
        import_max_zip_member_mb=values.get("import_max_zip_member_mb", 1024),
        import_max_decoded_mb=values.get("import_max_decoded_mb", 4096),
        import_file_budget_s=float(values.get("import_file_budget_s", 5.0)),
    )


def settings_now() -> Settings | PlainSettings:
    """The loaded settings if there are any; else the plain values when sure; else the settings, loaded now."""
    full = sys.modules.get("workstation.settings")
    if full is not None and full.get_settings.cache_info().currsize:
        loaded: Settings = full.get_settings()
        return loaded
    plain = plain_settings()
    if plain is not None:
        return plain
    from workstation.settings import get_settings

    return get_settings()
