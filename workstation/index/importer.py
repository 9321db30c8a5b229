"""Import files into the study index: headers only, in parallel, idempotent, committed as it goes.

Bad input never stops an import: each file that cannot be used is listed with
its reason and the rest of the study still loads. Each file's cost is bounded
(``ImportLimits``: bytes read before the pixel data, zip member size, declared
image size, seconds per file), so one hostile file cannot hold up the others.

Headers stream from the readers into batches that are committed one at a
time, each in its own transaction, at folder boundaries (at most every
``COMMIT_EVERY_S`` seconds, so series QA summaries are not recomputed for
every folder). A killed import keeps every batch it committed; a series is
split across commits only when one folder holds more than ``MAX_BATCH`` files,
and a later import completes it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from inference.errors import UnreadableFileError
from workstation.dicomio.guards import ImportLimits
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.reader import read_header
from workstation.dicomio.series import group_series
from workstation.dicomio.sopclasses import DICOMDIR_CLASS
from workstation.dicomio.sources import FileRef, expand_paths
from workstation.dicomio.summary import summarize_series
from workstation.notes import NOTE_SUFFIXES, note_from_document, notes_from_folders, notes_from_headers
from workstation.quick_settings import settings_now

if TYPE_CHECKING:
    from workstation.index.db import StudyIndex

logger = logging.getLogger(__name__)

# Below this many files, starting worker processes costs more than it saves (benchmarks/RESULTS.md).
PARALLEL_THRESHOLD = 1000
COMMIT_EVERY_S = 0.5  # a batch is committed at the next folder boundary once this long has passed
MAX_BATCH = 2000  # ... or at once when it holds this many files
Progress = Callable[[int, int], None]
Outcome = tuple[str, bool, Any]  # (ref, ok, the InstanceHeader or the reason it was rejected)


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


def _read_one(ref_text: str, limits: ImportLimits) -> tuple[bool, Any]:
    """(True, header) or (False, reason); headers travel from worker processes pickled as they are
    (a round trip through ``to_dict``/``from_dict`` cost ~30 % of reading a 300-slice series)."""
    try:
        return True, read_header(FileRef.parse(ref_text), limits)
    except UnreadableFileError as exc:
        return False, exc.reason
    except Exception as exc:  # any parser failure is a rejected file, never a failed import
        return False, f"unexpected error reading header: {exc!r}"


def _read_chunk(refs: list[str], limits: ImportLimits) -> list[tuple[bool, Any]]:
    return [_read_one(r, limits) for r in refs]


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the importing process is gone (killed), instead of lingering."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def default_limits() -> ImportLimits:
    """The import limits from the settings."""
    return ImportLimits.from_settings(settings_now())


def iter_headers(refs: Sequence[str], workers: int = 0, progress: Progress | None = None,
                 limits: ImportLimits | None = None) -> Iterator[Outcome]:
    """Read the headers of ``refs`` in order (in worker processes when there are many), as they come."""
    limits = limits or default_limits()
    n = len(refs)
    n_workers = workers or (os.cpu_count() or 1)
    if n < PARALLEL_THRESHOLD or n_workers == 1:
        for i, r in enumerate(refs):
            yield (r, *_read_one(r, limits))
            if progress and (i % 50 == 0 or i == n - 1):
                progress(i + 1, n)
        return
    import multiprocessing  # here: reading one series (`convert`) starts no processes
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(16, n // (n_workers * 8))
    chunks = [list(refs[i:i + chunk]) for i in range(0, n, chunk)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        done = 0
        for part_refs, part in zip(chunks, pool.map(partial(_read_chunk, limits=limits), chunks), strict=True):
            for r, (ok, value) in zip(part_refs, part, strict=True):
                yield r, ok, value
            done += len(part)
            if progress:
                progress(done, n)


def read_headers(refs: Sequence[str], workers: int = 0, progress: Progress | None = None,
                 limits: ImportLimits | None = None) -> tuple[list[InstanceHeader], list[Rejected]]:
    """Read headers of ``refs`` (in worker processes when there are many)."""
    headers: list[InstanceHeader] = []
    rejected: list[Rejected] = []
    for ref, ok, value in iter_headers(refs, workers, progress, limits):
        if ok:
            headers.append(value)
        else:
            rejected.append(Rejected(ref, value))
    return headers, rejected


def _stat(ref: FileRef) -> tuple[int, float]:
    try:
        st = Path(ref.path).stat()
    except OSError:
        return (0, 0.0)
    return (st.st_size, st.st_mtime)


def _folder(ref_text: str) -> str:
    ref = FileRef.parse(ref_text)
    return f"{ref.path}::{PurePosixPath(ref.member).parent}" if ref.member else str(Path(ref.path).parent)


def batches(outcomes: Iterable[Outcome], every_s: float = COMMIT_EVERY_S, max_batch: int = MAX_BATCH
            ) -> Iterator[list[Outcome]]:
    """Cut a stream of read headers into batches to commit: at folder boundaries, at most every ``every_s``."""
    batch: list[Outcome] = []
    folder = ""
    since = time.monotonic()
    for item in outcomes:
        here = _folder(item[0])
        if batch and (len(batch) >= max_batch or (here != folder and time.monotonic() - since >= every_s)):
            yield batch
            batch = []
            since = time.monotonic()
        batch.append(item)
        folder = here
    if batch:
        yield batch


def import_paths(paths: Iterable[str | Path], index: StudyIndex, *, workers: int = 0,
                 progress: Progress | None = None, limits: ImportLimits | None = None) -> ImportResult:
    """Index the DICOM files under ``paths``; files already indexed and unchanged are skipped.

    ``limits`` default to the settings' (``import_*``).
    """
    t0 = time.perf_counter()
    limits = limits or default_limits()
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
    touched: dict[int, set[int]] = {}
    from workstation.settings import get_settings  # pydantic: not for reading headers alone (`convert`)

    every_s = get_settings().import_commit_every_s
    for batch in batches(iter_headers(todo, workers, progress, limits), every_s=every_s):
        _commit(index, batch, stats, result, touched)
    for ser, sid in index.series_of_refs(unchanged).items():
        touched.setdefault(sid, set()).add(ser)
    result.study_ids = sorted(touched)
    result.series_ids = sorted(s for ids in touched.values() for s in ids)
    result.seconds = time.perf_counter() - t0
    logger.info("import: %d files, %d added, %d already indexed, %d rejected in %.2fs",
                result.files_seen, result.added, result.already_indexed, len(result.rejected), result.seconds)
    return result


def _commit(index: StudyIndex, batch: list[Outcome], stats: dict[str, tuple[int, float]], result: ImportResult,
            touched: dict[int, set[int]]) -> None:
    """Index one batch of read headers in one transaction: instances, series QA, notes, rejects."""
    headers: list[InstanceHeader] = [value for _, ok, value in batch if ok]
    rejected = [Rejected(ref, value) for ref, ok, value in batch if not ok]
    dicomdirs = [h for h in headers if h.sop_class_uid == DICOMDIR_CLASS]
    headers = [h for h in headers if h.sop_class_uid != DICOMDIR_CLASS]
    result.skipped += [Rejected(h.ref, "DICOMDIR (media index, not an image)") for h in dicomdirs]
    result.rejected += rejected
    here: dict[int, set[int]] = {}
    with index.transaction():
        for g in group_series(headers):
            sid, ser, added = index.add_group(g, stats)
            result.added += added
            here.setdefault(sid, set()).add(ser)
        for ser_ids in here.values():
            for ser in ser_ids:
                index.set_summary(ser, summarize_series(index.series_headers(ser), f"series {ser}"))
        for sid, ser_ids in here.items():
            _attach_notes(index, sid, sorted(ser_ids))
        index.set_rejects((r.file, r.reason) for r in rejected)
    for sid, ser_ids in here.items():
        touched.setdefault(sid, set()).update(ser_ids)


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
