"""Autosave of report drafts under the user data dir, atomically, for crash recovery.

Each study's document is one JSON file ``<data_dir>/report_drafts/<digest>.json``
(a digest of the study key, so any UID or key makes a safe file name). A save
writes a temporary file in the same folder, flushes it to disk and renames it
over the old file with ``os.replace``: a crash or ``kill -9`` at any moment
leaves either the previous complete file or the new one, never a torn one.

The store does no debouncing: the editor decides when to call ``save``, with
``SaveSchedule`` (Qt-free): a save follows a pause in the edits (the debounce),
and continuous editing is still saved at least every ``AUTOSAVE_MAX_WAIT_S``
seconds, so a radiologist who types without pausing never has more than that
to lose. On the next start ``drafts()`` lists what is still there (the GUI offers it back);
``discard`` removes a study's file once its signed report has been exported,
so a signed report is never lost between sign-off and export.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workstation.document.editing import ReportDocument, ReportError
from workstation.settings import Settings, get_settings

logger = logging.getLogger(__name__)

AUTOSAVE_DEBOUNCE_S = 1.0
AUTOSAVE_MAX_WAIT_S = 10.0
FOLDER_NAME = "report_drafts"
SUFFIX = ".json"
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class DraftInfo:
    """A saved draft found at start-up: what study, how far along, and where."""

    study_key: str
    study_description: str
    path: Path
    modified_at: str
    revision: int
    signed: bool
    sentences: int
    worked_on: bool = False  # a person accepted, edited, typed, overrode or signed (``ReportDocument.worked_on``)


@dataclass
class SaveSchedule:
    """When to autosave: ``debounce_s`` after the last change, and never later than ``max_wait_s`` after
    the first change not yet saved (a debounce alone is postponed forever by continuous edits).

    ``changed(now)`` returns the delay until the save (restart the timer with
    it); ``saved()`` after each save starts a new window. Times are monotonic seconds.
    """

    debounce_s: float = AUTOSAVE_DEBOUNCE_S
    max_wait_s: float = AUTOSAVE_MAX_WAIT_S
    first_unsaved: float | None = None

    def changed(self, now: float) -> float:
        """A change at ``now``: seconds from ``now`` until the document should be saved."""
        if self.first_unsaved is None:
            self.first_unsaved = now
        deadline = self.first_unsaved + self.max_wait_s
        return max(0.0, min(self.debounce_s, deadline - now))

    def saved(self) -> None:
        """The document was saved (or there is nothing to save): the next change opens a new window."""
        self.first_unsaved = None


def _file_name(study_key: str) -> str:
    return hashlib.sha256(study_key.encode("utf-8")).hexdigest()[:32] + SUFFIX


class AutosaveStore:
    """Report drafts of all studies in one folder (default: the settings' data dir)."""

    def __init__(self, folder: Path | None = None, settings: Settings | None = None) -> None:
        if folder is None:
            folder = (settings or get_settings()).data_dir / FOLDER_NAME
        self.folder = Path(folder)

    def path_for(self, study_key: str) -> Path:
        """The file a study's draft is saved to."""
        return self.folder / _file_name(study_key)

    def save(self, doc: ReportDocument) -> Path:
        """Write ``doc`` atomically (temp file + fsync + ``os.replace``); returns the file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_for(doc.study_key)
        data = doc.to_json().encode("utf-8")
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=SUFFIX, dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp_name).replace(target)  # os.replace: atomic on POSIX and Windows
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp_name).unlink()
            raise
        _fsync_dir(self.folder)
        logger.debug("autosaved report draft revision %d to %s", doc.revision, target.name)
        return target

    def load(self, study_key: str) -> ReportDocument | None:
        """The saved draft of a study, or ``None`` if there is none (or it is unreadable)."""
        path = self.path_for(study_key)
        if not path.is_file():
            return None
        return _read(path)

    def drafts(self) -> list[DraftInfo]:
        """Every saved draft (newest first), for the "recover unsaved report?" offer at start-up.

        Unreadable files are skipped with a warning; temporary files left by a
        crash in the middle of a save are removed (the previous save is intact).
        """
        if not self.folder.is_dir():
            return []
        for stale in self.folder.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        out = []
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            doc = _read(path)
            if doc is None:
                continue
            out.append(DraftInfo(doc.study_key, doc.study_description, path, doc.modified_at, doc.revision,
                                 doc.signed, sum(1 for _ in doc.sentences()), doc.worked_on))
        out.sort(key=lambda d: d.modified_at, reverse=True)
        return out

    def finished(self, doc: ReportDocument) -> bool:
        """Delete the draft of a signed report once it is exported; an unsigned one is kept (False)."""
        if not doc.signed:
            return False
        return self.discard(doc.study_key)

    def discard(self, study_key: str) -> bool:
        """Delete a study's saved draft (after its signed report was exported); True if one existed."""
        path = self.path_for(study_key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.folder)
        logger.info("removed autosaved report draft %s", path.name)
        return True


def _read(path: Path) -> ReportDocument | None:
    try:
        return ReportDocument.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError, ReportError) as exc:
        logger.warning("ignoring unreadable report draft %s: %s", path.name, exc)
        return None


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

