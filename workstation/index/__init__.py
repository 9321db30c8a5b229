"""The study index (SQLite) and the import pipeline that fills it.

The names load on first use, so reading a folder's headers (``workstation convert``) does not open SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'workstation.index' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
