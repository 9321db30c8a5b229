"""Import and index: idempotent, in place, robust grouping, kinds, rejects with reasons, notes."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from tests import dicom_factory as f
from workstation.index import StudyIndex, import_paths


def _digest_tree(folder: Path) -> dict[str, tuple[str, float]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudyIndex]:
    idx = StudyIndex(tmp_path_factory.mktemp("db") / "index.sqlite")
    yield idx
    idx.close()


def test_real_ct_with_empty_uids_forms_one_series_and_reimport_adds_nothing(
        shared_data: Path, tmp_path: Path, index: StudyIndex) -> None:
    src = tmp_path / "ct"
    shutil.copytree(shared_data / "ct_abdomen_totalseg" / "example_ct_dicom", src)
    before = _digest_tree(src)
    first = import_paths([src], index)
    assert first.added == 20 and not first.rejected
    series = index.series()
    assert len(series) == 1
    assert series[0].kind == "volume" and series[0].summary["instances"] == 20
    assert series[0].summary["shape"] == [20, 512, 512]
    counts = index.counts()
    again = import_paths([src], index)
    assert again.added == 0 and again.already_indexed == 20
    assert index.counts() == counts
    assert again.series_ids == [series[0].id], "a re-import still reports the study it belongs to"
    assert _digest_tree(src) == before, "source files must never be modified"


def test_same_series_number_in_two_studies_is_two_series(tmp_path: Path, index: StudyIndex) -> None:
    f.ct_series(tmp_path / "a", 4, series_number=3)
    f.ct_series(tmp_path / "b", 4, series_number=3)
    import_paths([tmp_path], index)
    assert len(index.studies()) == 2
    assert [s.summary["instances"] for s in index.series()] == [4, 4]


def test_many_acquisition_numbers_do_not_split_a_stack(tmp_path: Path, index: StudyIndex) -> None:
    study, series = generate_uid(), generate_uid()
    for k in range(6):
        f.ct_slice(tmp_path / f"s{k}.dcm", study_uid=study, series_uid=series, z=2.0 * k,
                   instance_number=k + 1, AcquisitionNumber=k + 1)
    import_paths([tmp_path], index)
    (row,) = index.series()
    assert row.kind == "volume" and row.summary["shape"][0] == 6


def test_repeated_positions_make_a_multi_volume_series(tmp_path: Path, index: StudyIndex) -> None:
    study, series = generate_uid(), generate_uid()
    for t in range(3):
        for k in range(4):
            f.ct_slice(tmp_path / f"t{t}_{k}.dcm", study_uid=study, series_uid=series, z=3.0 * k,
                       instance_number=t * 4 + k + 1, TemporalPositionIdentifier=t + 1, value=100 * t)
    import_paths([tmp_path], index)
    (row,) = index.series()
    assert row.kind == "multi_volume"
    assert row.summary["volumes"] == 3 and row.summary["shape"] == [4, 16, 16]


def test_non_image_objects_are_kept_apart(tmp_path: Path, index: StudyIndex) -> None:
    study, _ = f.ct_series(tmp_path, 5)
    f.ct_slice(tmp_path / "scout.dcm", study_uid=study, series_uid=generate_uid(), series_number=100,
               image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), iop=(0, 1, 0, 0, 0, -1))
    f.secondary_capture(tmp_path / "sc.dcm", study_uid=study, series_uid=generate_uid())
    f.text_sr(tmp_path / "sr.dcm", study_uid=study, series_uid=generate_uid(), text="Prior: 8 mm nodule RUL.")
    f.pdf_document(tmp_path / "pdf.dcm", study_uid=study, series_uid=generate_uid(), text="Prior PDF report")
    f.key_objects(tmp_path / "kos.dcm", study_uid=study, series_uid=generate_uid())
    f.presentation_state(tmp_path / "pr.dcm", study_uid=study, series_uid=generate_uid())
    result = import_paths([tmp_path], index)
    assert not result.rejected
    kinds = sorted(s.kind for s in index.series())
    assert kinds == ["document", "document", "key_objects", "localizer", "presentation_state",
                     "secondary_capture", "volume"]
    volume = next(s for s in index.series() if s.kind == "volume")
    assert volume.summary["instances"] == 5, "the scout must not join the axial stack"
    docs = {s.summary["reason"] for s in index.series() if s.kind == "document"}
    assert docs == {"sr", "pdf"}


def test_bad_files_are_listed_with_reasons_and_the_rest_loads(tmp_path: Path, index: StudyIndex) -> None:
    study, series = f.ct_series(tmp_path / "study", 6)
    good = sorted((tmp_path / "study").glob("*.dcm"))
    (tmp_path / "study" / "readme.bin").write_bytes(b"this is not DICOM at all" * 10)
    data = good[0].read_bytes()
    (tmp_path / "study" / "truncated.dcm").write_bytes(data[: len(data) - 200])
    f.ct_slice(tmp_path / "nopix.dcm", study_uid=study, series_uid=series, z=100)
    import pydicom

    ds = pydicom.dcmread(tmp_path / "nopix.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "study" / "nopixels.dcm")
    (tmp_path / "nopix.dcm").unlink()
    (tmp_path / "study" / "empty.dcm").write_bytes(b"")
    result = import_paths([tmp_path], index)
    reasons = {Path(r.file).name: r.reason for r in result.rejected}
    assert set(reasons) == {"readme.bin", "truncated.dcm", "nopixels.dcm", "empty.dcm"}
    assert "not a DICOM" in reasons["readme.bin"]
    assert "truncated" in reasons["truncated.dcm"]
    assert "without pixel data" in reasons["nopixels.dcm"]
    assert "empty" in reasons["empty.dcm"]
    (row,) = index.series()
    assert row.summary["instances"] == 6 and row.kind == "volume"
    assert {r["ref"] for r in index.rejects()} == {r.file for r in result.rejected}


def test_zip_is_read_in_place(tmp_path: Path, index: StudyIndex) -> None:
    f.ct_series(tmp_path / "src" / "study", 5)
    (tmp_path / "src" / "study" / "notes.txt").write_text("Cough for 3 weeks. Rule out pneumonia.")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "src").rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "src"))
    shutil.rmtree(tmp_path / "src")
    before = archive.read_bytes()
    result = import_paths([archive], index)
    assert result.added == 5
    (row,) = index.series()
    refs = [h.ref for h in index.series_headers(row.id)]
    assert all(r.startswith(str(archive) + "::study/") for r in refs)
    notes = index.notes(index.studies()[0].id)
    assert any(n.kind == "text file" and "pneumonia" in n.text for n in notes)
    assert archive.read_bytes() == before
    from workstation.dicomio.volume_builder import load_series

    vol = load_series(index.series_headers(row.id)).volumes[0]
    assert vol.shape == (5, 16, 16)
    assert int(vol.array[0, 0, 1]) == 100 + 1 - 1024


def test_dicomdir_imports_the_files_it_references(tmp_path: Path, index: StudyIndex) -> None:
    import pydicom

    f.ct_series(tmp_path / "raw", 4)
    fs = FileSet()
    for p in sorted((tmp_path / "raw").glob("*.dcm")):
        fs.add(pydicom.dcmread(p))
    fs.write(tmp_path / "cd")
    dicomdir = tmp_path / "cd" / "DICOMDIR"
    assert dicomdir.is_file()
    result = import_paths([dicomdir], index)
    assert result.added == 4 and not result.rejected
    assert any("DICOMDIR" in s.reason for s in result.skipped)
    (row,) = index.series()
    assert row.kind == "volume" and row.summary["instances"] == 4


def test_notes_come_from_text_files_dicom_fields_sr_and_pdf(tmp_path: Path, index: StudyIndex) -> None:
    study, _ = f.ct_series(tmp_path, 3, ReasonForTheRequestedProcedure="Dyspnoea, rule out PE",
                           AdditionalPatientHistory="Former smoker")
    (tmp_path / "history.md").write_text("# History\nRight upper lobe nodule on prior CT.")
    f.text_sr(tmp_path / "sr.dcm", study_uid=study, series_uid=generate_uid(), text="8 mm nodule in the RUL.")
    f.pdf_document(tmp_path / "pdf.dcm", study_uid=study, series_uid=generate_uid(), text="Prior PDF: stable.")
    result = import_paths([tmp_path], index)
    assert any("clinical notes" in s.reason for s in result.skipped)
    notes = index.notes(index.studies()[0].id)
    by_kind = {(n.kind, n.source.rsplit("/", 1)[-1]): n.text for n in notes}
    assert by_kind[("dicom field", "DICOM ReasonForTheRequestedProcedure")] == "Dyspnoea, rule out PE"
    assert by_kind[("dicom field", "DICOM AdditionalPatientHistory")] == "Former smoker"
    assert "Right upper lobe nodule" in by_kind[("text file", "history.md")]
    assert "8 mm nodule in the RUL." in by_kind[("prior report (SR)", "sr.dcm")]
    assert "Prior PDF: stable." in by_kind[("prior report (PDF)", "pdf.dcm")]
    import_paths([tmp_path], index)
    assert len(index.notes(index.studies()[0].id)) == len(notes), "notes are not duplicated on re-import"


def test_parallel_header_reading_matches_serial(tmp_path: Path) -> None:
    from workstation.index import read_headers

    f.ct_series(tmp_path, 40)
    refs = [str(p) for p in sorted(tmp_path.glob("*.dcm"))] * 6
    serial, _ = read_headers(refs, workers=1)
    from workstation.index import importer

    old = importer.PARALLEL_THRESHOLD
    importer.PARALLEL_THRESHOLD = 10
    try:
        parallel, _ = read_headers(refs, workers=2)
    finally:
        importer.PARALLEL_THRESHOLD = old
    assert [h.to_dict() for h in parallel] == [h.to_dict() for h in serial]


def test_a_series_uid_reused_for_other_geometry_splits_by_geometry(tmp_path: Path, index: StudyIndex) -> None:
    study, series = generate_uid(), generate_uid()
    for k in range(4):
        f.ct_slice(tmp_path / f"ax{k}.dcm", study_uid=study, series_uid=series, z=2.0 * k, instance_number=k + 1)
    for k in range(3):  # coronal reformats exported under the same SeriesInstanceUID and number
        f.ct_slice(tmp_path / f"cor{k}.dcm", study_uid=study, series_uid=series, instance_number=10 + k,
                   iop=(1, 0, 0, 0, 0, -1), size=12, ipp=(-10.0, 3.0 * k, 10.0))
    import_paths([tmp_path], index)
    shapes = sorted(tuple(s.summary["shape"]) for s in index.series())
    assert shapes == [(3, 12, 12), (4, 16, 16)]
    assert {s.kind for s in index.series()} == {"volume"}
