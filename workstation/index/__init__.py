"""The study index (SQLite) and the import pipeline that fills it.

The names load on first use, so reading a folder's headers (``workstation convert``) does not open SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from workstation.index.db import StudyIndex
    from workstation.index.importer import ImportResult, Rejected, import_paths, read_headers
    from workstation.index.rows import NoteRow, PatientRow, SeriesRow, StudyRow

__all__ = ["ImportResult", "NoteRow", "PatientRow", "Rejected", "SeriesRow", "StudyIndex", "StudyRow", "import_paths",
           "read_headers"]

_HOMES = {
    "StudyIndex": "workstation.index.db",
    **dict.fromkeys(("ImportResult", "Rejected", "import_paths", "read_headers"), "workstation.index.importer"),
    **dict.fromkeys(("NoteRow", "PatientRow", "SeriesRow", "StudyRow"), "workstation.index.rows"),
}


__getattr__ = lazy_getattr(__name__, _HOMES, globals())
