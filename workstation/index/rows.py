"""Typed rows of the study index: what ``StudyIndex`` returns for patients, studies, series and notes.

Rows are frozen snapshots of the database at the time of the read; nothing
writes through them. Text columns the index stores empty come back as ``""``
(never ``None``), so callers need no ``or ""``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PatientRow:
    """One patient as stored in the index (the DICOM patient module's identifying fields)."""

    id: int
    patient_id: str
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StudyRow:
    """One study as stored in the index, with its patient.

    ``study_key`` is the StudyInstanceUID, or a digest of the other study
    identifiers when the files have none (``study_uid`` is then ``""``).
    """

    id: int
    study_key: str
    study_uid: str
    date: str
    time: str
    description: str
    accession: str
    patient: PatientRow

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> StudyRow:
        """A row of ``StudyIndex.STUDY_SELECT`` (study columns plus ``p_``-prefixed patient columns)."""
        patient = PatientRow(int(r["p_id"]), r["p_patient_id"] or "", r["p_name"] or "",
                             r["p_birth_date"] or "", r["p_sex"] or "")
        return cls(int(r["id"]), r["study_key"], r["study_uid"] or "", r["date"] or "", r["time"] or "",
                   r["description"] or "", r["accession"] or "", patient)


@dataclass(frozen=True)
class SeriesRow:
    """One series as stored in the index."""

    id: int
    series_key: str
    study_id: int
    series_uid: str
    number: int | None
    modality: str
    description: str
    kind: str
    summary: dict[str, Any]

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> SeriesRow:
        """A row of the ``series`` table."""
        return cls(int(r["id"]), r["series_key"], int(r["study_ref"]), r["series_uid"] or "", r["number"],
                   r["modality"] or "", r["description"] or "", r["kind"] or "",
                   json.loads(r["summary_json"] or "{}"))


@dataclass(frozen=True)
class NoteRow:
    """One clinical note attached to a study: where it came from (``source``, ``kind``) and its text."""

    id: int
    study_id: int
    source: str
    kind: str
    text: str

    @classmethod
    def from_sql(cls, r: sqlite3.Row) -> NoteRow:
        """A row of the ``notes`` table."""
        return cls(int(r["id"]), int(r["study_ref"]), r["source"], r["kind"], r["text"])

    def to_json(self) -> dict[str, str]:
        """``{"source", "kind", "text"}``: the note as the command line prints it (``--json``)."""
        return {"source": self.source, "kind": self.kind, "text": self.text}
