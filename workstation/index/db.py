"""The study index: patients, studies, series, instances and notes in SQLite.

Files are referenced in place by path (``zip::member`` for zip members); the
index never copies or modifies them. Each instance's header is stored as JSON,
so a series can be turned into a volume without parsing headers again.

Several processes and threads write the same index at once (command-line
imports, the storage listener, a drop in the window), so every write happens
in a ``BEGIN IMMEDIATE`` transaction: the writer takes the write lock before it
reads anything it decides on, and others wait for it (busy timeout) instead of
failing. Rows shared between writers (patients, studies, series) are inserted
with ``ON CONFLICT DO NOTHING`` and then looked up. WAL journaling lets readers
(the window) go on while a writer commits.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inference.gil import share_gil
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import SeriesGroup, patient_key
from workstation.dicomio.summary import SeriesSummary
from workstation.index.rows import NoteRow, PatientRow, SeriesRow, StudyRow

__all__ = ["NoteRow", "PatientRow", "SeriesRow", "StudyIndex", "StudyRow"]

logger = logging.getLogger(__name__)
_SHARE_EVERY = 32
"""Headers read between two ``share_gil`` calls (a 500-slice series takes ~50 ms of Python to read)."""

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another writer's transaction to end
SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY, patient_key TEXT UNIQUE NOT NULL,
    patient_id TEXT, name TEXT, birth_date TEXT, sex TEXT);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY, study_key TEXT UNIQUE NOT NULL,
    patient_ref INTEGER NOT NULL REFERENCES patients(id),
    study_uid TEXT, date TEXT, time TEXT, description TEXT, accession TEXT);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, series_key TEXT UNIQUE NOT NULL,
    study_ref INTEGER NOT NULL REFERENCES studies(id),
    series_uid TEXT, number INTEGER, modality TEXT, description TEXT,
    kind TEXT, summary_json TEXT);
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY, series_ref INTEGER NOT NULL REFERENCES series(id),
    ref TEXT UNIQUE NOT NULL, sop_uid TEXT, instance_number INTEGER,
    size INTEGER, mtime REAL, header_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_ref);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY, study_ref INTEGER NOT NULL REFERENCES studies(id),
    source TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
    UNIQUE(study_ref, source, kind));
CREATE TABLE IF NOT EXISTS rejects (ref TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS studies_uid ON studies(study_uid);
CREATE INDEX IF NOT EXISTS series_study ON series(study_ref);
CREATE INDEX IF NOT EXISTS series_uid ON series(series_uid);
"""
# An index made before one of these objects existed gets it on its next open (all statements are IF NOT EXISTS).
SCHEMA_OBJECTS = frozenset({"patients", "studies", "series", "instances", "instances_series", "notes", "rejects",
                            "studies_uid", "series_study", "series_uid"})
# A study with its patient, as ``StudyRow.from_sql`` reads it.
STUDY_SELECT = ("SELECT s.id, s.study_key, s.study_uid, s.date, s.time, s.description, s.accession,"
                " p.id AS p_id, p.patient_id AS p_patient_id, p.name AS p_name, p.birth_date AS p_birth_date,"
                " p.sex AS p_sex FROM studies s JOIN patients p ON p.id = s.patient_ref")
STUDY_ORDER = " ORDER BY s.date, s.time, s.id"


class StudyIndex:
    """A connection to the SQLite index (one per thread; any number of processes).

    The connection is in autocommit mode: reads see the latest commit, and
    writes go through ``transaction()`` (or commit at once, one statement each).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._use_wal()
        self._db.execute("PRAGMA foreign_keys=ON")
        self._create_schema()

    def _use_wal(self) -> None:
        """Switch to WAL journaling (once per database file; retried while another process is switching)."""
        for attempt in range(50):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)

    def _create_schema(self) -> None:
        """Create the tables when missing; a plain read when they are all there (no write lock)."""
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if names >= SCHEMA_OBJECTS and version == SCHEMA_VERSION:
            return
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> StudyIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE``, commit on success, roll back on error.

        The write lock is taken first (waiting up to ``BUSY_TIMEOUT_S`` for other
        writers), so what the transaction reads cannot change under it. Nested
        use joins the outer transaction.
        """
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    # --- writing -----------------------------------------------------------------
    def known_refs(self) -> dict[str, tuple[int, float]]:
        """Every indexed file with the size and mtime it had when indexed."""
        rows = self._db.execute("SELECT ref, size, mtime FROM instances")
        return {r["ref"]: (r["size"], r["mtime"]) for r in rows}

    def _upsert(self, table: str, key_col: str, key: str, values: dict[str, Any]) -> int:
        """The id of the row with ``key``, inserted with ``values`` if there is none (race-free)."""
        cols = [key_col, *values]
        marks = ",".join("?" for _ in cols)
        self._db.execute(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks}) ON CONFLICT({key_col}) DO NOTHING",
                         (key, *values.values()))
        row = self._db.execute(f"SELECT id FROM {table} WHERE {key_col}=?", (key,)).fetchone()
        return int(row["id"])

    def add_group(self, group: SeriesGroup, stats: dict[str, tuple[int, float]]) -> tuple[int, int, int]:
        """Insert a series group's new instances; returns ``(study_id, series_id, added)``."""
        with self.transaction():
            return self._add_group(group, stats)

    def _add_group(self, group: SeriesGroup, stats: dict[str, tuple[int, float]]) -> tuple[int, int, int]:
        h = group.first
        pid = self._upsert("patients", "patient_key", patient_key(h), {
            "patient_id": h.patient_id, "name": h.patient_name,
            "birth_date": h.patient_birth_date, "sex": h.patient_sex})
        sid = self._upsert("studies", "study_key", group.study_key, {
            "patient_ref": pid, "study_uid": h.study_uid, "date": h.study_date, "time": h.study_time,
            "description": h.study_description, "accession": h.accession})
        ser = self._upsert("series", "series_key", group.series_key, {
            "study_ref": sid, "series_uid": h.series_uid, "number": h.series_number,
            "modality": h.modality, "description": h.series_description, "kind": group.kind,
            "summary_json": "{}"})
        rows = [
            (ser, x.ref, x.sop_instance_uid, x.instance_number, *stats.get(x.ref, (0, 0.0)),
             json.dumps(x.to_dict(), separators=(",", ":")))
            for x in group.headers
        ]
        cur = self._db.executemany(
            "INSERT OR IGNORE INTO instances (series_ref, ref, sop_uid, instance_number, size, mtime, header_json)"
            " VALUES (?,?,?,?,?,?,?)", rows)
        return sid, ser, cur.rowcount

    def series_of_refs(self, refs: Iterable[str]) -> dict[int, int]:
        """``{series_id: study_id}`` for the indexed files among ``refs``."""
        wanted = sorted(set(refs))
        found: dict[int, int] = {}
        for start in range(0, len(wanted), 500):  # looked up by the unique index on ref, 500 at a time
            chunk = wanted[start:start + 500]
            rows = self._db.execute(
                "SELECT DISTINCT s.id, s.study_ref FROM instances i JOIN series s ON s.id = i.series_ref"
                f" WHERE i.ref IN ({','.join('?' for _ in chunk)})", chunk)
            found.update((int(r["id"]), int(r["study_ref"])) for r in rows)
        return found

    def set_summary(self, series_id: int, summary: SeriesSummary) -> None:
        """Store a series' kind and QA summary."""
        self._db.execute("UPDATE series SET kind=?, summary_json=? WHERE id=?",
                         (summary.kind, json.dumps(summary.to_dict()), series_id))

    def add_note(self, study_id: int, source: str, kind: str, text: str) -> bool:
        """Attach a clinical note to a study (once per source and kind); True if new."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO notes (study_ref, source, kind, text) VALUES (?,?,?,?)",
            (study_id, source, kind, text))
        return cur.rowcount > 0

    def set_rejects(self, rejects: Iterable[tuple[str, str]]) -> None:
        """Remember files that could not be imported, with the reason."""
        self._db.executemany("INSERT OR REPLACE INTO rejects (ref, reason) VALUES (?,?)", list(rejects))

    # --- reading -----------------------------------------------------------------
    def studies(self, ids: Iterable[int] | None = None) -> list[StudyRow]:
        """All studies (or those with the given ids) with their patient, by date, time and id."""
        if ids is None:
            rows = self._db.execute(STUDY_SELECT + STUDY_ORDER)
        else:
            wanted = sorted(set(ids))
            if not wanted:
                return []
            marks = ",".join("?" for _ in wanted)
            rows = self._db.execute(f"{STUDY_SELECT} WHERE s.id IN ({marks}){STUDY_ORDER}", wanted)
        return [StudyRow.from_sql(r) for r in rows]

    def _one_study(self, where: str, value: object) -> StudyRow | None:
        r = self._db.execute(f"{STUDY_SELECT} WHERE {where}{STUDY_ORDER} LIMIT 1", (value,)).fetchone()
        return StudyRow.from_sql(r) if r else None

    def study(self, study_id: int) -> StudyRow | None:
        """One study by id (None if there is none)."""
        return self._one_study("s.id=?", study_id)

    def study_by_key(self, study_key: str) -> StudyRow | None:
        """The study with this key (StudyInstanceUID, or the index's ``nouid-`` substitute)."""
        return self._one_study("s.study_key=?", study_key)

    def study_by_uid(self, study_uid: str) -> StudyRow | None:
        """The study with this StudyInstanceUID (None for ``""``: studies without one have no UID to find)."""
        return self._one_study("s.study_uid=?", study_uid) if study_uid else None

    def find_study(self, ident: str) -> StudyRow | None:
        """A study by ``study:ID``, StudyInstanceUID or study key (None if none matches)."""
        number = ident.removeprefix("study:")
        if number != ident and number.isascii() and number.isdigit() and str(int(number)) == number:
            return self.study(int(number))
        return self.study_by_key(ident) or self.study_by_uid(ident)

    def series(self, study_id: int | None = None) -> list[SeriesRow]:
        """Series of a study (or all), ordered by series number."""
        sql = "SELECT * FROM series" + (" WHERE study_ref=?" if study_id is not None else "")
        rows = self._db.execute(sql + " ORDER BY study_ref, number, id",
                                (study_id,) if study_id is not None else ())
        return [SeriesRow.from_sql(r) for r in rows]

    def series_of_study(self, study_id: int) -> list[SeriesRow]:
        """A study's series, ordered by series number (an indexed lookup)."""
        return self.series(study_id)

    def series_by_id(self, series_id: int) -> SeriesRow | None:
        """One series by id (None if there is none)."""
        r = self._db.execute("SELECT * FROM series WHERE id=?", (series_id,)).fetchone()
        return SeriesRow.from_sql(r) if r else None

    def find_series(self, ident: str) -> SeriesRow | None:
        """A series by numeric id, series key, or SeriesInstanceUID."""
        if ident.isdigit():
            return self.series_by_id(int(ident))
        r = self._db.execute("SELECT * FROM series WHERE series_key=? OR series_uid=? LIMIT 1",
                             (ident, ident)).fetchone()
        return SeriesRow.from_sql(r) if r else None

    def series_headers(self, series_id: int) -> list[InstanceHeader]:
        """The stored headers of a series' instances."""
        rows = self._db.execute("SELECT header_json FROM instances WHERE series_ref=?", (series_id,))
        headers = []
        for i, r in enumerate(rows, 1):
            headers.append(InstanceHeader.from_dict(json.loads(r["header_json"])))
            if i % _SHARE_EVERY == 0:  # ~0.1 ms a header: on a worker thread, the GUI drawing meanwhile goes first
                share_gil()
        return headers

    def notes(self, study_id: int) -> list[NoteRow]:
        """A study's clinical notes with where each came from, oldest first."""
        rows = self._db.execute("SELECT id, study_ref, source, kind, text FROM notes WHERE study_ref=? ORDER BY id",
                                (study_id,))
        return [NoteRow.from_sql(r) for r in rows]

    # --- editing notes (the notes panel) ------------------------------------------------
    def note(self, note_id: int) -> NoteRow | None:
        """One note by row id (None if there is none)."""
        r = self._db.execute("SELECT id, study_ref, source, kind, text FROM notes WHERE id=?",
                             (note_id,)).fetchone()
        return NoteRow.from_sql(r) if r else None

    def update_note(self, note_id: int, text: str) -> bool:
        """Replace a note's text, keeping its source and kind; True if the note exists.

        Committed at once (a single small write), so an edit survives a crash.
        A later re-import does not undo it: imports only insert notes they lack.
        """
        with self.transaction():
            cur = self._db.execute("UPDATE notes SET text=? WHERE id=?", (text, note_id))
        return cur.rowcount > 0

    def add_typed_note(self, study_id: int, text: str, source: str = "typed") -> int:
        """Add a note typed in the application (kind ``typed note``); returns its id. Committed at once.

        Notes are unique per study, source and kind, so a second typed note gets
        the source ``typed (2)``, and so on.
        """
        kind = "typed note"
        with self.transaction():  # the free name is chosen and taken under the write lock
            taken = {r["source"] for r in self._db.execute(
                "SELECT source FROM notes WHERE study_ref=? AND kind=?", (study_id, kind))}
            name, n = source, 1
            while name in taken:
                n += 1
                name = f"{source} ({n})"
            cur = self._db.execute("INSERT INTO notes (study_ref, source, kind, text) VALUES (?,?,?,?)",
                                   (study_id, name, kind, text))
        return int(cur.lastrowid or 0)

    def rejects(self) -> list[dict[str, str]]:
        """Files that could not be imported."""
        return [dict(r) for r in self._db.execute("SELECT ref, reason FROM rejects ORDER BY ref")]

    def counts(self) -> dict[str, int]:
        """Number of rows per table."""
        return {t: int(self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
                for t in ("patients", "studies", "series", "instances", "notes")}
