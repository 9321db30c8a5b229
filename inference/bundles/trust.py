"""Which bundles a user has trusted to run code outside the allow-list: one file per models folder.

``<models_dir>/.trusted-code.json`` maps a bundle's folder name to the SHA-256
of the config that was trusted, when, by whom and how (``models install
--trust-code``, or the window's confirmation). It lives beside the bundles,
not inside one, so a bundle folder copied in by hand cannot bring its own
trust; and it names the config's digest, so editing the config afterwards
needs trusting again. Written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TRUST_FILE = ".trusted-code.json"


@dataclass(frozen=True)
class TrustRecord:
    """A user's decision to run a bundle's config code: which config, when, who, how."""

    name: str
    config_sha256: str
    trusted_at: str
    user: str
    how: str

    def describe(self) -> str:
        """For provenance notes: "trusted by USER on TIME (HOW)"."""
        return f"trusted by {self.user} on {self.trusted_at} ({self.how})"


def config_sha256(path: Path) -> str:
    """SHA-256 of a config file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_all(models_root: Path) -> dict[str, Any]:
    path = models_root / TRUST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s (no bundle counts as trusted)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_all(models_root: Path, data: dict[str, Any]) -> None:
    models_root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".trust-", suffix=".tmp", dir=models_root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(models_root / TRUST_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


def trust_for(models_root: Path, name: str, config_path: Path | None) -> TrustRecord | None:
    """The trust given to bundle ``name``, if it names this exact config (same SHA-256); else None."""
    entry = _read_all(models_root).get(name)
    if not isinstance(entry, dict) or config_path is None:
        return None
    try:
        digest = config_sha256(config_path)
    except OSError:
        return None
    if entry.get("config_sha256") != digest:
        return None
    return TrustRecord(name, digest, str(entry.get("trusted_at", "")), str(entry.get("user", "")),
                       str(entry.get("how", "")))


def record_trust(models_root: Path, name: str, config_path: Path, *, user: str, how: str) -> TrustRecord:
    """Record that ``user`` trusts the code of bundle ``name``'s current config."""
    record = TrustRecord(name, config_sha256(config_path), datetime.now(UTC).isoformat(timespec="seconds"),
                         user, how)
    data = _read_all(models_root)
    data[name] = {k: v for k, v in asdict(record).items() if k != "name"}
    _write_all(models_root, data)
    logger.info("bundle '%s': config code trusted (%s)", name, how)
    return record


def forget_trust(models_root: Path, name: str) -> bool:
    """Drop bundle ``name``'s trust (on removal or reinstall without trust); True if there was one."""
    data = _read_all(models_root)
    if name not in data:
        return False
    del data[name]
    _write_all(models_root, data)
    return True
