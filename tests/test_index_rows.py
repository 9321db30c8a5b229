"""The study index returns typed rows, and finds a study by id, key or UID with an indexed query (no scan)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import group_series
from workstation.index import NoteRow, PatientRow, SeriesRow, StudyIndex, StudyRow
from workstation.services.studies import study_json

STUDIES = 300


def _header(n: int, *, uid: bool = True) -> InstanceHeader:
    """One CT instance of study ``n`` (patient ``n // 2``); without ``uid`` the study has no StudyInstanceUID."""
    return InstanceHeader(
        ref=f"/nowhere/s{n}/1.dcm", sop_instance_uid=f"1.2.3.{n}.1.1", study_uid=f"1.2.3.{n}" if uid else "",
        series_uid=f"1.2.3.{n}.1", series_number=1, modality="CT", patient_id=f"P{n // 2}",
        patient_name=f"Doe^Pat{n // 2}", patient_birth_date="19500101", patient_sex="F",
        study_date=f"2024{1 + n % 12:02d}01", study_time="080000", accession=f"A{n}",
        study_description=f"CT chest {n}", series_description="axial", instance_number=1)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[StudyIndex]:
    """An index of ``STUDIES`` studies (one series each), the last one without a StudyInstanceUID."""
    idx = StudyIndex(tmp_path / "index.sqlite")
    headers = [_header(n, uid=n != STUDIES - 1) for n in range(STUDIES)]
    with idx.transaction():
        for group in group_series(headers):
            idx.add_group(group, {})
    yield idx
    idx.close()


def test_the_index_returns_typed_rows(index: StudyIndex) -> None:
    studies = index.studies()
    assert len(studies) == STUDIES and all(isinstance(s, StudyRow) for s in studies)
    assert [(s.date, s.time, s.id) for s in studies] == sorted((s.date, s.time, s.id) for s in studies)
    study = index.study_by_uid("1.2.3.7")
    assert study is not None and study.study_key == "1.2.3.7"
    assert (study.date, study.time, study.description, study.accession) == ("20240801", "080000", "CT chest 7", "A7")
    assert study.patient == PatientRow(study.patient.id, "P3", "Doe^Pat3", "19500101", "F")
    assert index.study_by_uid("1.2.3.6") is not None
    assert index.study_by_uid("1.2.3.6").patient == study.patient  # type: ignore[union-attr]
    (series,) = index.series_of_study(study.id)
    assert isinstance(series, SeriesRow) and series.study_id == study.id and series.series_uid == "1.2.3.7.1"
    assert index.series_by_id(series.id) == series and index.series_by_id(10**9) is None


def test_lookups_by_id_key_uid_and_name(index: StudyIndex) -> None:
    study = index.study_by_key("1.2.3.42")
    assert study is not None and index.study(study.id) == study
    assert index.find_study(f"study:{study.id}") == study
    assert index.find_study("1.2.3.42") == study
    assert index.find_study("study:0") is None and index.find_study("study:01") is None
    assert index.find_study("study:x") is None and index.find_study("1.2.3.no") is None
    assert index.study(10**9) is None and index.study_by_key("nope") is None
    (no_uid,) = [s for s in index.studies() if not s.study_uid]
    assert no_uid.study_key.startswith("nouid-")
    assert index.find_study(no_uid.study_key) == no_uid
    assert index.study_by_uid("") is None, "a study without a UID is not found by the empty UID"
    subset = index.studies([study.id, no_uid.id, 10**9])
    assert {s.id for s in subset} == {study.id, no_uid.id}
    assert index.studies([]) == []


@pytest.mark.parametrize(("sql", "index_name"), [
    ("SELECT id FROM studies WHERE study_key=?", "sqlite_autoindex_studies_1"),
    ("SELECT id FROM studies WHERE study_uid=?", "studies_uid"),
    ("SELECT id FROM series WHERE study_ref=?", "series_study"),
    ("SELECT id FROM series WHERE series_uid=?", "series_uid"),
])
def test_lookups_use_an_index_not_a_scan(index: StudyIndex, sql: str, index_name: str) -> None:
    with sqlite3.connect(index.path) as db:
        plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, ("x",)))
    assert index_name in plan and "SCAN" not in plan, plan


def test_the_lookup_queries_themselves_search_by_index(index: StudyIndex) -> None:
    traced: list[str] = []
    index._db.set_trace_callback(traced.append)  # the statements the index really runs
    try:
        index.find_study("1.2.3.5")
        index.study(3)
        index.series_of_study(3)
    finally:
        index._db.set_trace_callback(None)
    assert len(traced) >= 3
    with sqlite3.connect(index.path) as db:
        for sql in traced:
            plan = " ".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql))
            assert "SCAN" not in plan.replace("USE TEMP B-TREE", ""), (sql, plan)


def test_an_older_index_gets_the_lookup_indexes_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    StudyIndex(path).close()
    with sqlite3.connect(path) as db:
        for name in ("studies_uid", "series_study", "series_uid"):
            db.execute(f"DROP INDEX {name}")
    StudyIndex(path).close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"studies_uid", "series_study", "series_uid"} <= names


def test_notes_are_typed_and_print_as_before(index: StudyIndex) -> None:
    study = index.study_by_key("1.2.3.9")
    assert study is not None
    index.add_note(study.id, "history.txt", "text file", "Smoker.")
    typed = index.add_typed_note(study.id, "Called referrer.")
    notes = index.notes(study.id)
    assert [type(n) for n in notes] == [NoteRow, NoteRow]
    assert notes[1] == NoteRow(typed, study.id, "typed", "typed note", "Called referrer.")
    assert index.note(typed) == notes[1] and index.note(10**9) is None
    out = study_json(index, study)
    assert out["notes"] == [{"source": "history.txt", "kind": "text file", "text": "Smoker."},
                            {"source": "typed", "kind": "typed note", "text": "Called referrer."}]
    assert out["patient"] == {"id": "P4", "name": "Doe^Pat4", "sex": "F", "birth_date": "19500101"}
    assert (out["key"], out["study_uid"], out["date"], out["accession"]) == ("1.2.3.9", "1.2.3.9", "20241001", "A9")
