"""One record of analyses, shared by the window and the command line, in the user data dir.

Every analysis is kept here, whoever ran it (``workstation analyze``,
``workstation report``, the window's worker thread, the self-test in its own
temporary data dir), so that what one front end analysed the other shows
without running the model again::

    <data_dir>/analyses/<digest of the series key>/<model id>/
        labels.nii.gz  findings.json  analysis_source.json

The record (``analysis_source.json``) is ``workstation.services.analysis_record``'s,
with its checks: the same series (series key and a digest of its SOP Instance
UIDs), the same model id and version, the files' hashes, the same grid. An
analysis whose record no longer matches (the series gained or lost images, the
model has another version now) is ignored, never shown.

Two ways to read it:

- ``analysed_series`` (the study browser, at refresh): the records only, a
  few hundred bytes of JSON each, never the label maps; proportional to the
  number of stored analyses, not to the size of the index;
- ``find_for_series``/``AnalysisStore.load`` (opening a series, ``report``):
  the full check, hashes and grid included, then the label map and findings.

A save writes into a staging folder beside the target and renames it into
place, so a reader sees the previous complete analysis or the new one. Nothing
here imports Qt or torch, nor logs patient data: digests, model ids and counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.contract import AnalysisResult
from inference.remote.nodes import REMOTE_PREFIX, is_remote
from inference.remote.nodes import model_id as remote_model_id
from inference.volume import Volume
from workstation.index.db import SeriesRow, StudyIndex
from workstation.key_images import write_montage
from workstation.services.analysis import write_analysis_files, write_outputs
from workstation.services.analysis_record import (
    FINDINGS_FILE,
    LABELS_FILE,
    RECORD_FILE,
    RECORD_VERSION,
    load_recorded_analysis,
    record_analysis,
    series_identity,
)
from workstation.services.studies import SeriesSource
from workstation.settings import Settings

logger = logging.getLogger(__name__)

FOLDER_NAME = "analyses"
WHERE = "the analysis store"
OUT_WHERE = "the output folder"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
ANY_VERSION = "*"  # in ``model_versions``: any recorded version matches (a configured remote node's models)


def series_digest(series_key: str) -> str:
    """The folder name of a series: a digest of its key (any UID or key makes a safe, short name)."""
    return hashlib.sha256(series_key.encode("utf-8")).hexdigest()[:32]


def model_folder_name(model_id: str) -> str:
    """A model id as a folder name (the record inside names the model exactly)."""
    name = _UNSAFE.sub("_", model_id).lstrip(".")
    return name or hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class StoredRecord:
    """What one stored analysis' record says, read without touching its label map."""

    folder: Path
    series_key: str
    instances_sha256: str
    model_id: str
    model_version: str
    saved_at: float

    def matches(self, identity: Mapping[str, str], versions: Mapping[str, str]) -> bool:
        """Of this series (key and instances) and of the model's current version, with both files present.

        A remote model's current version is the server's, which cannot be known
        without contacting it: ``versions`` names its configured node instead
        (``remote:NODE/*`` -> ``ANY_VERSION``, see ``model_versions``).
        """
        current = versions.get(self.model_id)
        if current is None and is_remote(self.model_id):
            current = versions.get(remote_model_id(self.model_id.removeprefix(REMOTE_PREFIX).partition("/")[0], "*"))
        return (self.series_key == identity["series_key"] and self.instances_sha256 == identity["instances_sha256"]
                and current in (self.model_version, ANY_VERSION)
                and (self.folder / LABELS_FILE).is_file() and (self.folder / FINDINGS_FILE).is_file())


def _read_record(folder: Path) -> StoredRecord | None:
    path = folder / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        saved_at = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION:
        return None
    try:
        return StoredRecord(folder, str(data["series_key"]), str(data["instances_sha256"]), str(data["model_id"]),
                            str(data["model_version"]), saved_at)
    except KeyError:
        return None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.is_dir()


class AnalysisStore:
    """The analyses kept under one root folder (``<data_dir>/analyses``), per series and model."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_settings(cls, settings: Settings) -> AnalysisStore:
        """The store in the settings' data dir."""
        return cls(settings.data_dir / FOLDER_NAME)

    def folder(self, series_key: str, model_id: str) -> Path:
        """Where the analysis of a series by a model is kept."""
        return self.root / series_digest(series_key) / model_folder_name(model_id)

    # --- writing -----------------------------------------------------------------------
    def save(self, source: SeriesSource, result: AnalysisResult, *, copy_from: Path | None = None) -> Path:
        """Keep ``result`` (an analysis of ``source``) as the series' analysis by its model; the folder.

        ``copy_from``: a folder where ``write_outputs`` just wrote this result's
        files (the command line's ``--out``), copied rather than written again.
        Replaces an earlier analysis of the same series and model. ``OSError`` if it cannot be written.
        """
        identity = series_identity(source)
        target = self.folder(identity["series_key"], result.provenance.model_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            names = (LABELS_FILE, FINDINGS_FILE)
            if copy_from is not None and all((copy_from / n).is_file() for n in names):
                for name in names:
                    shutil.copyfile(copy_from / name, stage / name)
            else:
                write_analysis_files(result, stage, source.label)
            record_analysis(stage, source, result)
            _replace_folder(stage, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        logger.info("analysis by %s %s kept in the store (%s)", result.provenance.model_id,
                    result.provenance.model_version, target.parent.name)
        return target

    # --- reading -----------------------------------------------------------------------
    def records(self, series_key: str | None = None) -> list[StoredRecord]:
        """The readable records of one series (by key), or of every series; JSON only."""
        if series_key is not None:
            folders: Iterable[Path] = [self.root / series_digest(series_key)]
        else:
            try:
                folders = sorted(p for p in self.root.iterdir() if _visible(p))
            except OSError:
                return []
        out = []
        for folder in folders:
            try:
                models = sorted(p for p in folder.iterdir() if _visible(p))
            except OSError:
                continue
            out += [r for r in map(_read_record, models) if r is not None]
        return out

    def load(self, source: SeriesSource, model_id: str, model_version: str, volume: Volume) -> AnalysisResult | None:
        """The stored analysis of ``source`` by this model and version, if every check passes (else None)."""
        folder = self.folder(series_identity(source)["series_key"], model_id)
        return load_recorded_analysis(folder, source, model_id, model_version, volume, where=WHERE)

    def latest(self, source: SeriesSource, volume: Volume, versions: Mapping[str, str],
               prefer: str | None = None) -> AnalysisResult | None:
        """The stored analysis to show for ``source``: by ``prefer`` if it has one, else the newest that passes."""
        identity = series_identity(source)
        found = [r for r in self.records(identity["series_key"]) if r.matches(identity, versions)]
        found.sort(key=lambda r: (r.model_id != prefer, -r.saved_at))
        for record in found:
            result = load_recorded_analysis(record.folder, source, record.model_id, record.model_version, volume,
                                            where=WHERE)
            if result is not None:
                return result
        return None


def _replace_folder(stage: Path, target: Path) -> None:
    """Put ``stage`` where ``target`` is (the old one moved aside first, then removed)."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".old-{uuid.uuid4().hex[:8]}")
        try:
            target.replace(old)
        except FileNotFoundError:  # another writer moved it first
            old = None
    try:
        stage.replace(target)
    except OSError:
        if target.exists():  # another writer's analysis landed first: as valid as this one
            logger.info("analysis store: another process saved the same analysis first")
        else:
            if old is not None:
                with contextlib.suppress(OSError):
                    old.replace(target)
            raise
    finally:
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


# --- what the command line asks ---------------------------------------------------------------
def find_reusable(store: AnalysisStore, out_dir: Path, source: SeriesSource, model_id: str, model_version: str,
                  volume: Volume) -> tuple[AnalysisResult | None, str]:
    """An analysis ``workstation report`` may reuse, and where it was: the store first, then ``out_dir``.

    The second value is ``WHERE``, ``OUT_WHERE`` or "" (nothing reusable).
    """
    result = store.load(source, model_id, model_version, volume)
    if result is not None:
        return result, WHERE
    result = load_recorded_analysis(out_dir, source, model_id, model_version, volume, where=OUT_WHERE)
    return (result, OUT_WHERE) if result is not None else (None, "")


def keep_everywhere(store: AnalysisStore, out_dir: Path, source: SeriesSource, result: AnalysisResult, *,
                    found_in: str = "", label: str | None = None) -> list[str]:
    """Make both ``out_dir`` and the store hold ``result`` (with its record); notes on what could not be kept.

    ``found_in`` is where the result came from (``find_reusable``), which needs
    no writing. ``label`` names the series in ``findings.json`` (a de-identified
    run passes its own), so the store's files are copied only under the same label.
    """
    label = source.label if label is None else label
    if found_in != OUT_WHERE:
        stored = store.folder(series_identity(source)["series_key"], result.provenance.model_id)
        if found_in == WHERE and label == source.label:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in (LABELS_FILE, FINDINGS_FILE):
                shutil.copyfile(stored / name, out_dir / name)
            write_montage(result, out_dir / "montage.png")
        else:
            write_outputs(result, out_dir, label)
        record_analysis(out_dir, source, result)
    if found_in == WHERE:
        return []
    try:
        store.save(source, result, copy_from=out_dir if label == source.label else None)
    except OSError as exc:
        logger.warning("analysis not kept in the store: %s", exc)
        return [f"the analysis could not be kept in the analysis store ({exc}); the window will not show it"]
    return []


# --- what the window asks --------------------------------------------------------------------
def model_versions(models_dir: Path | None, remote_nodes: Iterable[str] = ()) -> dict[str, str]:
    """The current version of every usable model (built-in and installed bundles), by id; JSON only, no torch.

    Each configured remote node adds ``remote:NODE/*`` -> ``ANY_VERSION``: its
    models' analyses are shown whatever server version they record (asking the
    node would contact it at every look-up).
    """
    from workstation.services.models import list_models

    versions = {str(r["id"]): str(r["version"]) for r in list_models(models_dir) if not r.get("problem")}
    return {**versions, **{remote_model_id(node, "*"): ANY_VERSION for node in remote_nodes}}


def analysed_series(store: AnalysisStore, index: StudyIndex, rows: Iterable[SeriesRow],
                    versions: Callable[[], Mapping[str, str]]) -> set[int]:
    """The ids of ``rows`` the store holds a valid analysis of, as far as the records tell (no label map read).

    ``versions`` is called only when the store holds a record of one of the
    rows (listing the models costs more than reading a few records).
    """
    by_key: dict[str, list[StoredRecord]] = {}
    for record in store.records():
        by_key.setdefault(record.series_key, []).append(record)
    if not by_key:
        return set()
    current: Mapping[str, str] | None = None
    out: set[int] = set()
    for row in rows:
        records = by_key.get(row.series_key)
        if not records:
            continue
        headers = index.series_headers(row.id)
        if not headers:
            continue
        current = current if current is not None else versions()
        identity = series_identity(SeriesSource("", headers))
        if any(r.matches(identity, current) for r in records):
            out.add(row.id)
    return out


def find_for_series(store: AnalysisStore, db_path: Path, series_id: int, volume: Volume,
                    models_dir: Path | None, prefer: str | None = None,
                    remote_nodes: Iterable[str] = ()) -> AnalysisResult | None:
    """The stored analysis of an indexed series to show with ``volume`` (the series as loaded), or None.

    ``remote_nodes``: the configured remote nodes, whose models' analyses are shown too.
    """
    with StudyIndex(db_path) as index:
        row = index.find_series(str(series_id))
        headers = index.series_headers(series_id) if row is not None else []
    if row is None or not headers:
        return None
    if not store.records(series_identity(SeriesSource("", headers))["series_key"]):
        return None
    label = f"series {row.id} ({row.description or row.modality})"
    return store.latest(SeriesSource(label, headers), volume, model_versions(models_dir, remote_nodes), prefer)


@dataclass(frozen=True)
class IndexedSeriesSink:
    """Keeps a window's analysis of an indexed series in the store; called on the worker thread.

    The series' headers (its identity in the record) are read from the index
    when the result arrives, so the GUI thread never waits for them.
    """

    store: AnalysisStore
    db_path: Path
    series_id: int
    label: str = ""

    def __call__(self, result: AnalysisResult) -> Any:
        """Save ``result``; the folder, or None when the index no longer holds the series."""
        with StudyIndex(self.db_path) as index:
            headers = index.series_headers(self.series_id)
        if not headers:
            logger.warning("series %d is no longer in the index: its analysis is not kept", self.series_id)
            return None
        return self.store.save(SeriesSource(self.label or f"series {self.series_id}", headers), result)
