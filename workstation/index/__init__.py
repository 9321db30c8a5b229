"""The study index (SQLite) and the import pipeline that fills it."""

from workstation.index.db import SeriesRow, StudyIndex
from workstation.index.importer import ImportResult, Rejected, import_paths, read_headers

__all__ = ["ImportResult", "Rejected", "SeriesRow", "StudyIndex", "import_paths", "read_headers"]
