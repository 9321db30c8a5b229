"""What ``workstation gui TARGET`` opens: a study or series of the index, or a folder/zip/file imported first.

Resolved before any window exists (no Qt here), so a target that names nothing
ends the command with a one-line message and exit status 2 instead of an empty
window. ``TARGET`` is what the other commands take:

- a series: its index id (``workstation list``), series key or SeriesInstanceUID;
- a study: ``study:ID``, its StudyInstanceUID or study key;
- a folder, zip, DICOMDIR or file: imported (headers only, in place), then its
  one image volume series is opened, or the first study's main series when it
  holds several.

A study opens on its main image volume (the series with most images), as the
window's "open study" does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from inference.errors import NotAVolumeError
from workstation.index.db import SeriesRow, StudyIndex
from workstation.index.importer import import_paths
from workstation.settings import Settings

logger = logging.getLogger(__name__)

VOLUME_KINDS = ("volume", "multi_volume")


@dataclass(frozen=True)
class OpenTarget:
    """A study to open, and the series to show (None: the study's main image volume)."""

    study_id: int
    series_id: int | None = None
    imported: int = 0  # files newly added to the index by resolving it

    def describe(self) -> str:
        """``series 3 of study 1`` or ``study 1`` (ids only: nothing about the patient)."""
        return f"series {self.series_id} of study {self.study_id}" if self.series_id is not None \
            else f"study {self.study_id}"


def _volumes(rows: list[SeriesRow]) -> list[SeriesRow]:
    return [r for r in rows if r.kind in VOLUME_KINDS]


def _from_path(path: Path, index: StudyIndex, settings: Settings) -> OpenTarget:
    result = import_paths([path], index, workers=settings.import_workers)
    rows = [row for sid in result.series_ids if (row := index.find_series(str(sid))) is not None]
    volumes = _volumes(rows)
    if not volumes:
        found = f"{result.files_seen} files, {len(result.rejected)} rejected"
        raise NotAVolumeError(f"{path}: no image volume to open ({found})")
    if len(volumes) == 1:
        return OpenTarget(volumes[0].study_id, volumes[0].id, result.added)
    return OpenTarget(min(r.study_id for r in volumes), None, result.added)


def resolve_open_target(target: str, index: StudyIndex, settings: Settings) -> OpenTarget:
    """What to open for ``target`` (see the module docstring); ``NotAVolumeError`` naming it when nothing fits."""
    path = Path(target)
    if os.path.lexists(path) and not path.exists():
        from workstation.dicomio.sources import path_problem

        raise NotAVolumeError(f"{path}: {path_problem(path)}")
    if path.exists():
        return _from_path(path, index, settings)
    study = index.find_study(target)
    if study is not None:
        if not _volumes(index.series_of_study(study.id)):
            raise NotAVolumeError(f"{target}: the study holds no image volume to show")
        return OpenTarget(study.id)
    row = index.find_series(target)
    if row is not None:
        if row.kind not in VOLUME_KINDS:
            raise NotAVolumeError(f"{target}: series {row.id} is not an image volume ({row.kind or 'unknown'})")
        return OpenTarget(row.study_id, row.id)
    raise NotAVolumeError(f"{target}: no such file, folder, study or series (see 'workstation list')")
