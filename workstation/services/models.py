"""Manage the MONAI bundles in the models folder: list, install from a Model Zoo zip, remove. No Qt, no torch.

Used by ``workstation models list|install ZIP|remove ID``. Installing validates
the zip before anything is written: the Model Zoo layout (``configs/metadata.json``,
``configs/inference.json``/``.yaml``, ``models/model.pt``/``.ts``), readable
metadata and config, and no entry that could land outside the bundle folder
(absolute paths, ``..``, drive letters, symlinks). It extracts into a hidden
staging folder inside the models folder and renames it into place, so a
half-installed bundle is never visible. The zip's SHA-256 and the install time
go to ``<models_dir>/<name>/.install.json``.

A bundle's config can run Python when the bundle is used, so installing audits
it (``inference.bundles.config_audit``): every expression, import and
``_target_`` is listed, and a config that would run code outside the allow-list
(MONAI, torch, numpy, scipy.ndimage) is refused unless the user passes
``trust_code`` (``--trust-code``). Trust is recorded beside the bundles
(``inference.bundles.trust``, bound to the config's SHA-256), in the install
record, and in the audit trail; the engine checks it again before every load,
so a bundle copied into the folder by hand cannot skip the check. The window
asks the same question before a first run (``code_review``/``trust_bundle``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import stat
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from inference.bundles import ID_PREFIX, discover_bundles
from inference.bundles.config_audit import ConfigAudit, UntrustedCodeError, audit_config, refusal_message
from inference.bundles.layout import CONFIG_NAMES, WEIGHT_NAMES, read_config_text
from inference.bundles.trust import TrustRecord, forget_trust, record_trust
from inference.errors import ModelError
from workstation import audit

logger = logging.getLogger(__name__)

INSTALL_RECORD = ".install.json"
MAX_UNPACKED_BYTES = 32 * 1024**3  # refuse zip bombs; the largest Model Zoo bundles are a few GB
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _install_record(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / INSTALL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _builtin_rows() -> list[dict[str, Any]]:
    """The engine's built-in models, in the same shape as the bundle rows."""
    from inference.engine import Engine

    try:
        infos = Engine(None).models()
    except ImportError as exc:  # a damaged install must not hide the bundles
        logger.warning("built-in models unavailable: %s", exc)
        return []
    return [{"id": i.id, "title": i.title, "version": i.version, "modalities": list(i.modalities), "labels": [],
             "path": None, "sha256": None, "installed_at": None, "problem": None, "source": "built-in"}
            for i in infos]


def list_models(models_dir: Path | None, include_builtin: bool = True) -> list[dict[str, Any]]:
    """Built-in models (unless ``include_builtin`` is false), then every bundle in ``models_dir``.

    Each row: id, title, version, modalities, labels (names), path, sha256 and
    installed_at (from the install record; None for a bundle copied in by hand),
    problem (why an unusable bundle cannot run, else None), source, and
    code: "allowed" (its config stays in the allow-list), "trusted" (it does
    not, and the user trusted it) or "needs trust" (it will be refused).
    """
    out = _builtin_rows() if include_builtin else []
    if models_dir is None or not models_dir.is_dir():
        return out
    for model in discover_bundles(models_dir):
        record = _install_record(model.path)
        labels = [] if model.problem else [lab.name for lab in model.labels]
        code: str | None = None
        if not model.problem:
            try:
                code = "allowed" if model.code_audit().passed else (
                    "trusted" if model.trust() is not None else "needs trust")
            except ModelError as exc:
                code = f"unreadable config: {exc}"
        out.append({"id": model.id, "title": model.info.title, "version": model.version,
                    "modalities": list(model.modalities), "labels": labels, "path": str(model.path),
                    "sha256": record.get("sha256"), "installed_at": record.get("installed_at"),
                    "problem": model.problem, "source": "bundle", "code": code})
    return out


def _safe_member(name: str) -> PurePosixPath:
    """The entry's relative path; ``ModelError`` if it could land outside the target folder."""
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ModelError(f"refusing zip entry '{name}': absolute or Windows-style path")
    path = PurePosixPath(name)
    if any(part == ".." for part in path.parts):
        raise ModelError(f"refusing zip entry '{name}': it points outside the bundle folder ('..')")
    return path


def _check_zip(zf: zipfile.ZipFile, zip_path: Path) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """Validate the archive; returns (bundle name, prefix of the bundle inside the zip, metadata, config)."""
    infos = zf.infolist()
    total = 0
    files: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = _safe_member(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelError(f"refusing zip entry '{info.filename}': symbolic links are not allowed in a bundle")
        total += info.file_size
        if not info.is_dir() and rel.parts[0] != "__MACOSX":  # Finder's resource forks
            files[rel.as_posix()] = info
    if total > MAX_UNPACKED_BYTES:
        raise ModelError(f"{zip_path.name} would unpack to {total / 1024**3:.1f} GB; refused")
    if "configs/metadata.json" in files:
        prefix, name = "", zip_path.stem
    else:
        tops = {p.split("/", 1)[0] for p in files}
        if len(tops) != 1:
            raise ModelError(f"{zip_path.name} is not a Model Zoo bundle: expected one top folder holding "
                             f"configs/metadata.json, found {sorted(tops)[:5]}")
        name = tops.pop()
        prefix = name + "/"
    if not _NAME_RE.match(name):
        raise ModelError(f"bundle name '{name}' is not a safe folder name (letters, digits, '_', '.', '-')")
    missing = []
    if prefix + "configs/metadata.json" not in files:
        missing.append("configs/metadata.json")
    configs = [prefix + "configs/" + n for n in CONFIG_NAMES if prefix + "configs/" + n in files]
    if not configs:
        missing.append("configs/inference.json (or .yaml)")
    if not any(prefix + "models/" + n in files for n in WEIGHT_NAMES):
        missing.append("models/model.pt or models/model.ts")
    if missing:
        raise ModelError(f"{zip_path.name} is not a complete Model Zoo bundle: missing {', '.join(missing)}")
    try:
        metadata = json.loads(zf.read(files[prefix + "configs/metadata.json"]).decode("utf-8"))
        if not isinstance(metadata, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{zip_path.name}: configs/metadata.json is unreadable: {exc}") from exc
    try:
        config = read_config_text(configs[0], zf.read(files[configs[0]]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{zip_path.name}: {exc}") from exc
    return name, prefix, metadata, config


def _extract(zf: zipfile.ZipFile, prefix: str, staging: Path) -> None:
    """Extract the bundle's entries (prefix stripped) into ``staging``, checking every target path."""
    root = staging.resolve()
    for info in zf.infolist():
        rel = _safe_member(info.filename).as_posix()
        if not rel.startswith(prefix) or info.is_dir() or rel.startswith("__MACOSX/"):
            continue
        target = (staging / rel[len(prefix):]).resolve()
        if not target.is_relative_to(root):
            raise ModelError(f"refusing zip entry '{info.filename}': it points outside the bundle folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def install_bundle(zip_path: Path, models_dir: Path, replace: bool = False, *,
                   trust_code: bool = False) -> dict[str, Any]:
    """Install a Model Zoo bundle zip as ``models_dir/<name>``; returns its ``list_models`` entry.

    The entry also holds ``code_audit`` (every code item of the config with its
    verdict) and ``trusted_code``. ``UntrustedCodeError`` (nothing written) if
    the config runs code outside the allow-list and ``trust_code`` is false.
    """
    if not zip_path.is_file():
        from workstation.dicomio.sources import path_problem

        reason = "a folder, not a zip file" if zip_path.is_dir() else path_problem(zip_path)
        raise ModelError(f"{zip_path}: {reason}")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{zip_path.name} is not a readable zip file: {exc}") from exc
    with zf:
        name, prefix, metadata, config = _check_zip(zf, zip_path)
        review = audit_config(config)
        if not review.passed and not trust_code:
            hint = (f"Nothing was installed. Install it only if you trust its publisher: "
                    f"workstation models install {zip_path.name} --trust-code")
            audit.record("model.installed", outcome="refused", model_id=ID_PREFIX + name, zip=zip_path.name,
                         refused=[i.text for i in review.refused])
            raise UntrustedCodeError(refusal_message(name, review, hint), review)
        target = models_dir / name
        if (target.exists() or target.is_symlink()) and not replace:
            raise ModelError(f"bundle '{name}' is already installed in {models_dir} (use replace to overwrite)")
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".installing-{name}-", dir=models_dir))
        old: Path | None = None
        try:
            _extract(zf, prefix, staging)
            record = {"name": name, "sha256": _sha256(zip_path), "source": zip_path.name,
                      "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                      "title": metadata.get("name"), "version": metadata.get("version"),
                      "trust_code": trust_code, "code_passed_audit": review.passed}
            (staging / INSTALL_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
            if target.exists() or target.is_symlink():
                old = models_dir / f".removing-{name}-{staging.name[-8:]}"
                target.rename(old)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if old is not None:
        _delete(old)
    trust = _set_trust(models_dir, name, trust_code, "models install --trust-code")
    logger.info("installed bundle '%s' from %s (sha256 %s)", name, zip_path, record["sha256"])
    audit.record("model.installed", model_id=ID_PREFIX + name, zip=zip_path.name, sha256=record["sha256"],
                 trusted_code=trust is not None, code_passed_audit=review.passed,
                 refused=[i.text for i in review.refused])
    entry = next((m for m in list_models(models_dir, include_builtin=False) if m["id"] == ID_PREFIX + name), None)
    if entry is None:  # pragma: no cover - the folder was just renamed into place
        raise ModelError(f"bundle '{name}' was installed but cannot be listed")
    return {**entry, "code_audit": review.to_dict(), "trusted_code": trust is not None}


def _set_trust(models_dir: Path, name: str, trusted: bool, how: str) -> TrustRecord | None:
    """Record (or, reinstalled without it, forget) the user's trust in bundle ``name``'s config."""
    if not trusted:
        forget_trust(models_dir, name)
        return None
    model = next((m for m in discover_bundles(models_dir) if m.name == name), None)
    if model is None or model.info.config_path is None:
        raise ModelError(f"bundle '{name}' has no config to trust")
    return record_trust(models_dir, name, model.info.config_path, user=audit.os_user(), how=how)


def _bundle(model_id: str, models_dir: Path) -> Any:
    name = model_id[len(ID_PREFIX):] if model_id.startswith(ID_PREFIX) else model_id
    model = next((m for m in discover_bundles(models_dir) if m.name == name), None) if models_dir.is_dir() else None
    if model is None:
        raise ModelError(f"no bundle '{model_id}' in {models_dir}")
    return model


def code_review(model_id: str, models_dir: Path | None) -> ConfigAudit | None:
    """The audit of a bundle the user must confirm before it runs (outside the allow-list, not trusted), else None.

    Built-in models and bundles whose config passes (or was trusted) need no
    confirmation. Reads JSON only: safe on the GUI thread.
    """
    if not model_id.startswith(ID_PREFIX) or models_dir is None:
        return None
    model = _bundle(model_id, models_dir)
    if model.problem:
        return None  # the run will fail with the problem; nothing to confirm
    review: ConfigAudit = model.code_audit()
    return None if review.passed or model.trust() is not None else review


def confirmation_text(model_id: str, review: ConfigAudit) -> str:
    """The question the window asks before a first run of a bundle whose config needs trust."""
    listed = "\n".join(f"  {i.where}: {i.text if len(i.text) <= 200 else i.text[:197] + '...'}\n"
                       f"      ({i.reason})" for i in review.refused)
    return (f"The model {model_id} comes with a configuration that runs Python code outside the allow-list "
            f"(MONAI, torch, numpy, scipy.ndimage):\n\n{listed}\n\nThis code runs with your rights on this "
            "computer and can read, change or send your files. Run it only if you trust the publisher of this "
            "model. Your decision is recorded.\n\nRun this code?")


def trust_bundle(model_id: str, models_dir: Path, how: str = "confirmed in the window") -> TrustRecord:
    """Record that the user trusts this bundle's current config (after seeing ``code_review``)."""
    model = _bundle(model_id, models_dir)
    if model.info.config_path is None:
        raise ModelError(f"bundle '{model_id}' has no config to trust")
    trust = record_trust(models_dir, model.name, model.info.config_path, user=audit.os_user(), how=how)
    review = model.code_audit()
    audit.record("model.trusted", model_id=model.id, how=how, refused=[i.text for i in review.refused])
    return trust


def _delete(path: Path) -> None:
    """Remove a bundle folder; a symlink is unlinked, never followed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def remove_bundle(model_id: str, models_dir: Path) -> Path:
    """Remove ``bundle.<name>`` (or ``<name>``) from ``models_dir``; returns the removed path."""
    name = model_id[len(ID_PREFIX):] if model_id.startswith(ID_PREFIX) else model_id
    if not _NAME_RE.match(name):
        raise ModelError(f"'{model_id}' is not a bundle id (bundle.<folder name>)")
    target = models_dir / name
    if not (target.is_dir() or target.is_symlink()):
        known = ", ".join(m["id"] for m in list_models(models_dir, include_builtin=False)) or "none"
        raise ModelError(f"no bundle '{model_id}' in {models_dir} (installed: {known})")
    hidden = models_dir / f".removing-{name}"
    if hidden.exists():
        _delete(hidden)
    target.rename(hidden)  # disappears from listings at once, even if the delete below is slow
    _delete(hidden)
    forget_trust(models_dir, name)
    logger.info("removed bundle '%s' from %s", name, models_dir)
    audit.record("model.removed", model_id=ID_PREFIX + name)
    return target
