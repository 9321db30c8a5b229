"""The study index (SQLite) and the import pipeline that fills it."""

from workstation.index.db import StudyIndex
from workstation.index.importer import ImportResult, Rejected, import_paths, read_headers
from workstation.index.rows import NoteRow, PatientRow, SeriesRow, StudyRow

__all__ = ["ImportResult", "NoteRow", "PatientRow", "Rejected", "SeriesRow", "StudyIndex", "StudyRow", "import_paths",
           "read_headers"]
