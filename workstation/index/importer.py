"""Import files into the study index: headers only, in parallel, idempotent.

Bad input never stops an import: each file that cannot be used is listed with
its reason and the rest of the study still loads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.errors import UnreadableFileError
from workstation.dicomio.headers import InstanceHeader, read_header
from workstation.dicomio.series import group_series
from workstation.dicomio.sopclasses import DICOMDIR_CLASS
from workstation.dicomio.sources import FileRef, expand_paths
from workstation.dicomio.summary import summarize_series
from workstation.index.db import StudyIndex
from workstation.notes import NOTE_SUFFIXES, note_from_document, notes_from_folders, notes_from_headers

logger = logging.getLogger(__name__)

# Below this many files, starting worker processes costs more than it saves (benchmarks/RESULTS.md).
PARALLEL_THRESHOLD = 1000
Progress = Callable[[int, int], None]


@dataclass
class Rejected:
    """A file that was not imported, and why."""

    file: str
    reason: str


@dataclass
class ImportResult:
    """What one import did."""

    files_seen: int = 0
    added: int = 0
    already_indexed: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    skipped: list[Rejected] = field(default_factory=list)
    study_ids: list[int] = field(default_factory=list)
    series_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _read_one(ref_text: str) -> tuple[bool, Any]:
    try:
        return True, read_header(FileRef.parse(ref_text)).to_dict()
    except UnreadableFileError as exc:
        return False, exc.reason
    except Exception as exc:  # any parser failure is a rejected file, never a failed import
        return False, f"unexpected error reading header: {exc!r}"


def _read_chunk(refs: list[str]) -> list[tuple[bool, Any]]:
    return [_read_one(r) for r in refs]


def read_headers(refs: Sequence[str], workers: int = 0, progress: Progress | None = None
                 ) -> tuple[list[InstanceHeader], list[Rejected]]:
    """Read headers of ``refs`` (in worker processes when there are many)."""
    n = len(refs)
    results: list[tuple[bool, Any]] = []
    n_workers = workers or (os.cpu_count() or 1)
    if n < PARALLEL_THRESHOLD or n_workers == 1:
        for i, r in enumerate(refs):
            results.append(_read_one(r))
            if progress and (i % 50 == 0 or i == n - 1):
                progress(i + 1, n)
    else:
        chunk = max(16, n // (n_workers * 8))
        chunks = [list(refs[i:i + chunk]) for i in range(0, n, chunk)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            done = 0
            for part in pool.map(_read_chunk, chunks):
                results.extend(part)
                done += len(part)
                if progress:
                    progress(done, n)
    headers: list[InstanceHeader] = []
    rejected: list[Rejected] = []
    for ref, (ok, value) in zip(refs, results, strict=True):
        if ok:
            headers.append(InstanceHeader.from_dict(value))
        else:
            rejected.append(Rejected(ref, value))
    return headers, rejected


def _stat(ref: FileRef) -> tuple[int, float]:
    try:
        st = Path(ref.path).stat()
    except OSError:
        return (0, 0.0)
    return (st.st_size, st.st_mtime)


def import_paths(paths: Iterable[str | Path], index: StudyIndex, *, workers: int = 0,
                 progress: Progress | None = None) -> ImportResult:
    """Index the DICOM files under ``paths``; files already indexed and unchanged are skipped."""
    t0 = time.perf_counter()
    result = ImportResult()
    refs, skipped = expand_paths(paths)
    result.skipped = [Rejected(str(s.ref), s.reason) for s in skipped]
    result.files_seen = len(refs)
    known = index.known_refs()
    stats = {str(r): _stat(r) for r in refs}
    notes = [r for r in refs if Path(r.member or r.path).suffix.lower() in NOTE_SUFFIXES]
    result.skipped += [Rejected(str(r), "text file (read as clinical notes of the study beside it)") for r in notes]
    unchanged = [str(r) for r in refs if known.get(str(r)) == stats[str(r)]]
    note_set = set(notes)
    todo = [str(r) for r in refs if known.get(str(r)) != stats[str(r)] and r not in note_set]
    result.already_indexed = len(unchanged)
    headers, rejected = read_headers(todo, workers, progress)
    dicomdirs = [h for h in headers if h.sop_class_uid == DICOMDIR_CLASS]
    headers = [h for h in headers if h.sop_class_uid != DICOMDIR_CLASS]
    result.skipped += [Rejected(h.ref, "DICOMDIR (media index, not an image)") for h in dicomdirs]
    result.rejected = rejected
    groups = group_series(headers)
    touched: dict[int, set[int]] = {}
    with index.transaction():
        for g in groups:
            sid, ser, added = index.add_group(g, stats)
            result.added += added
            touched.setdefault(sid, set()).add(ser)
        for ser_ids in touched.values():
            for ser in ser_ids:
                all_headers = index.series_headers(ser)
                index.set_summary(ser, summarize_series(all_headers, f"series {ser}"))
        for sid, ser_ids in touched.items():
            _attach_notes(index, sid, sorted(ser_ids))
        index.set_rejects((r.file, r.reason) for r in rejected)
    for ser, sid in index.series_of_refs(unchanged).items():
        touched.setdefault(sid, set()).add(ser)
    result.study_ids = sorted(touched)
    result.series_ids = sorted(s for ids in touched.values() for s in ids)
    result.seconds = time.perf_counter() - t0
    logger.info("import: %d files, %d added, %d already indexed, %d rejected in %.2fs",
                result.files_seen, result.added, result.already_indexed, len(rejected), result.seconds)
    return result


def _attach_notes(index: StudyIndex, study_id: int, series_ids: list[int]) -> None:
    headers = [h for ser in series_ids for h in index.series_headers(ser)]
    for note in notes_from_headers(headers):
        index.add_note(study_id, note.source, note.kind, note.text)
    for note in notes_from_folders(h.ref for h in headers):
        index.add_note(study_id, note.source, note.kind, note.text)
    for row in index.series(study_id):
        if row.kind == "document" and row.id in series_ids:
            for h in index.series_headers(row.id):
                doc = note_from_document(h)
                if doc is not None:
                    index.add_note(study_id, doc.source, doc.kind, doc.text)
