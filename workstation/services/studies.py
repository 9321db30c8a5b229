"""Find series (by index id, key, UID or folder), load them, and describe them as JSON."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.errors import NotAVolumeError
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import group_series
from workstation.dicomio.summary import summarize_series
from workstation.dicomio.volume_builder import NonUniform, SeriesVolumes, checked_plan, load_series
from workstation.index.importer import ImportResult, import_paths, read_headers

if TYPE_CHECKING:
    from workstation.dicomio.guards import ImportLimits
    from workstation.index.db import StudyIndex
    from workstation.index.rows import StudyRow
    from workstation.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class SeriesSource:
    """The headers of one series and a label naming where they came from."""

    label: str
    headers: list[InstanceHeader]


def resolve_series(ident: str, index: StudyIndex | None, limits: ImportLimits | None = None) -> SeriesSource:
    """A series by index id/key/UID, or the one image series in a folder or file (read within ``limits``:
    by default the settings')."""
    path = Path(ident)
    if path.exists():
        from workstation.dicomio.sources import expand_paths

        refs, _ = expand_paths([path])
        headers, rejected = read_headers([str(r) for r in refs], limits=limits)
        for r in rejected:
            logger.warning("skipped %s: %s", r.file, r.reason)
        groups = [g for g in group_series(headers) if g.kind == "image"]
        if not groups:
            raise NotAVolumeError(f"{ident}: no image series found")
        if len(groups) > 1:
            sizes = ", ".join(f"{len(g.headers)} files ({g.first.series_description or 'no description'})"
                              for g in groups)
            raise NotAVolumeError(f"{ident}: holds {len(groups)} image series ({sizes}); import it and "
                                  "pick one by id with 'workstation list'")
        return SeriesSource(str(path), groups[0].headers)
    _check_unusable_path(path)
    if index is None:
        raise NotAVolumeError(f"{ident}: no such file, folder or indexed series")
    row = index.find_series(ident)
    if row is None:
        raise NotAVolumeError(f"{ident}: no such file, folder or indexed series")
    return SeriesSource(f"series {row.id} ({row.description or row.modality})", index.series_headers(row.id))


def resolve_for_analysis(ident: str, index: StudyIndex | None, modalities: tuple[str, ...] = ("*",)
                         ) -> SeriesSource:
    """A series to analyse: a series (id, key, UID, folder of one series), or the best series of a study.

    A study is named by ``study:ID``, its StudyInstanceUID or key, or a folder holding several
    series; its best series is the image volume, of a modality the model takes, with most slices.
    """
    path = Path(ident)
    _check_unusable_path(path)
    candidates: list[SeriesSource] = []
    if path.exists():
        from workstation.dicomio.sources import expand_paths

        refs, _ = expand_paths([path])
        headers, _ = read_headers([str(r) for r in refs])
        groups = [g for g in group_series(headers) if g.kind == "image"]
        candidates = [SeriesSource(f"{path} series {g.first.series_number or '-'} "
                                   f"({g.first.series_description or g.first.modality})", g.headers) for g in groups]
    elif index is not None:
        study = index.find_study(ident)
        if study is None:
            return resolve_series(ident, index)
        for row in index.series_of_study(study.id):
            if row.kind in ("volume", "multi_volume"):
                candidates.append(SeriesSource(f"series {row.id} ({row.description or row.modality})",
                                               index.series_headers(row.id)))
    else:
        raise NotAVolumeError(f"{ident}: no such file, folder, study or series")

    def usable(src: SeriesSource) -> bool:
        return "*" in modalities or src.headers[0].modality in modalities

    fitting = [c for c in candidates if usable(c)]
    if not fitting:
        kinds = sorted({c.headers[0].modality for c in candidates}) or ["none"]
        raise NotAVolumeError(f"{ident}: no image volume of modality {'/'.join(modalities)} "
                              f"(found: {', '.join(kinds)})")
    return max(fitting, key=lambda c: len(c.headers))


def _check_unusable_path(path: Path) -> None:
    """A name that is a path on disk but cannot be read (link loop, dangling link...) is said to be one."""
    import os

    from workstation.dicomio.sources import path_problem

    if os.path.lexists(path) and not path.exists():
        raise NotAVolumeError(f"{path}: {path_problem(path)}")


def load_series_volumes(source: SeriesSource, nonuniform: NonUniform = "resample") -> SeriesVolumes:
    """Read a resolved series into volumes (recorded in the audit trail as the study being opened)."""
    from workstation.services.audit_trail import study_opened

    loaded = load_series(source.headers, nonuniform=nonuniform, label=source.label)
    if loaded.volumes:
        study_opened(loaded.volumes[0], "loaded for analysis or conversion")
    return loaded


@dataclass
class ConvertedSeries:
    """What ``convert_series`` wrote: the file, how many volumes, their grid (slices, rows, columns), notes."""

    path: Path
    volumes: int
    grid: tuple[int, ...]
    notes: tuple[str, ...]


def convert_series(source: SeriesSource, out: str | Path, nonuniform: NonUniform = "resample") -> ConvertedSeries:
    """Write a resolved series as NIfTI (recorded in the audit trail as the study being opened).

    A plain stack of uncompressed slices streams into the file without being held whole
    (``dicomio.nifti_stream``: same bytes, a fraction of the memory); anything else is loaded
    into volumes and written.
    """
    from workstation.dicomio.nifti import write_nifti
    from workstation.dicomio.nifti_stream import prepare_stream
    from workstation.services.audit_trail import series_opened

    stream = prepare_stream(checked_plan(source.headers, nonuniform, source.label))
    if stream is not None:
        first = stream.geometry.planes[0].header
        series_opened(first.study_uid, first.series_uid, "loaded for analysis or conversion")
        return ConvertedSeries(stream.write(out), 1, stream.grid, ())
    loaded = load_series_volumes(source, nonuniform)
    volume = loaded.volumes[0]
    return ConvertedSeries(write_nifti(loaded.volumes, out), len(loaded.volumes), volume.shape, volume.notes)


def series_json(index: StudyIndex, series_id: int) -> dict[str, Any]:
    """One indexed series as JSON (id, number, modality, description, kind, QA...)."""
    row = index.series_by_id(series_id)
    if row is None:
        raise KeyError(f"no series {series_id} in the index")
    out: dict[str, Any] = {
        "id": row.id, "key": row.series_key, "series_uid": row.series_uid, "number": row.number,
        "modality": row.modality, "description": row.description,
    }
    summary = row.summary or summarize_series(index.series_headers(row.id)).to_dict()
    out.update(summary)
    return out


def study_json(index: StudyIndex, study: StudyRow, series_ids: set[int] | None = None) -> dict[str, Any]:
    """One study with its series and notes (the ``--json`` output of ``import`` and ``list``)."""
    rows = [r for r in index.series_of_study(study.id) if series_ids is None or r.id in series_ids]
    patient = study.patient
    return {
        "id": study.id, "study_uid": study.study_uid, "key": study.study_key,
        "date": study.date, "description": study.description, "accession": study.accession,
        "patient": {"id": patient.patient_id, "name": patient.name, "sex": patient.sex,
                    "birth_date": patient.birth_date},
        "series": [series_json(index, r.id) for r in rows],
        "notes": [n.to_json() for n in index.notes(study.id)],
    }


def import_result_json(index: StudyIndex, result: ImportResult) -> dict[str, Any]:
    """The machine-readable import summary printed by ``import --json``."""
    studies = index.studies(result.study_ids)
    touched = set(result.series_ids)
    return {
        "files_seen": result.files_seen,
        "added": result.added,
        "already_indexed": result.already_indexed,
        "seconds": round(result.seconds, 3),
        "studies": [study_json(index, s, touched) for s in studies],
        "rejected": [{"file": r.file, "reason": r.reason} for r in result.rejected],
        "skipped": [{"file": r.file, "reason": r.reason} for r in result.skipped],
    }


def index_json(index: StudyIndex) -> dict[str, Any]:
    """Everything the index holds."""
    return {"counts": index.counts(), "studies": [study_json(index, s) for s in index.studies()]}


def demo_study(settings: Settings, index: StudyIndex) -> tuple[Path, ImportResult]:
    """Generate (or reuse) the demo study and import it."""
    from workstation.demo import ensure_demo_study

    folder = ensure_demo_study(settings.demo_dir)
    return folder, import_paths([folder], index, workers=settings.import_workers)
