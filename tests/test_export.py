"""Exports on the demo study and real scanner CT: SEG, SR, PDF, text, NIfTI, de-identification, validation."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from inference.contract import AnalysisRequest, AnalysisResult
from inference.engine import Engine
from inference.volume import Volume
from tests.requirements import SYSTEM_TOOLS_FIX, requires
from workstation.demo import generate_demo_study
from workstation.dicomio.headers import InstanceHeader
from workstation.document import DraftSource, ReportDocument
from workstation.export import (
    Deidentifier,
    ExportError,
    ExportOptions,
    export_study,
    read_sources,
    render_pdf,
    report_text,
    validate_file,
    write_labelmap_nifti,
    write_measurement_sr,
    write_report_sr,
    write_seg,
)
from workstation.export.sr import tracking_name
from workstation.export.validate import dciodvfy_path, parse_output
from workstation.services.studies import load_series_volumes, resolve_series

NEEDS_DCIODVFY = requires(dciodvfy_path() is not None, "dciodvfy (Debian package dicom3tools) is not installed",
                          SYSTEM_TOOLS_FIX)
SIGNED_AT = datetime(2024, 3, 15, 10, 30, tzinfo=UTC)
DEMO_IDENTITY = ("Demo^Phantom", "DEMO0001", "19560210", "DEMOACC0001", "Demo Hospital", "Phantom")


@dataclass
class Case:
    name: str
    folder: Path
    headers: list[InstanceHeader]
    volume: Volume
    result: AnalysisResult
    hashes: dict[Path, str]


def _hashes(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _case(name: str, folder: Path) -> Case:
    source = resolve_series(str(folder), None)
    volume = load_series_volumes(source).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    return Case(name, folder, source.headers, volume, result, _hashes(folder))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Case:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(40, 96, 96))
    return _case("demo", folder)


@pytest.fixture(scope="module")
def real(shared_data: Path) -> Case:
    return _case("real", shared_data / "ct_abdomen_totalseg" / "example_ct_dicom")


@pytest.fixture(params=["demo", "real"])
def case(request: pytest.FixtureRequest) -> Case:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def make_report(signed: bool) -> ReportDocument:
    doc = ReportDocument.from_draft("study", {
        "Clinical information": "Follow-up of a pulmonary nodule.",
        "Technique": "CT without contrast.",
        "Findings": "A 20.6 mm nodule in the left lung. No pleural effusion.",
        "Impression": ["1. Left lung nodule.", "2. No effusion."]}, DraftSource("template", "1", "builtin.ct", "1.0.0"))
    if signed:
        doc.sign("Jane Smith", now=SIGNED_AT)
        doc.add_addendum("Reviewed with the prior study.", "Jane Smith", now=SIGNED_AT)
    return doc


def assert_valid(path: Path) -> None:
    """Validate when dciodvfy is installed (``test_every_dicom_object_passes_dciodvfy`` skips, with the reason,
    when it is not)."""
    if dciodvfy_path() is None:
        return
    result = validate_file(path)
    assert result.available and result.errors == [], result.errors


def test_seg_frames_map_to_the_right_source_slices(case: Case, tmp_path: Path) -> None:
    sources = read_sources(case.headers, case.volume)
    assert sources.mapped
    exp = write_seg(case.result, sources, tmp_path / "seg.dcm", protect=[h.ref for h in case.headers])
    assert_valid(exp.path)
    seg = hd.seg.segread(exp.path)
    assert seg.SeriesDescription == "AI SEG (draft)"
    assert seg.SegmentationType == "BINARY"
    # every referenced instance is a source file, by the UID the file is stored under
    source_uids = [h.sop_instance_uid for h in case.headers]
    referenced = {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence
                  for i in s.ReferencedInstanceSequence}
    assert referenced == set(source_uids)
    slice_uids = [str(ds.SOPInstanceUID) for ds in sources.slice_datasets()]
    for k, ds in enumerate(sources.slice_datasets()):  # slice k of the volume is the file at its position
        assert np.allclose(np.asarray(ds.ImagePositionPatient, float), case.volume.index_to_lps([k, 0, 0]),
                           atol=1e-3)
    numbers = [s.number for s in exp.segments]
    masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=slice_uids, segment_numbers=numbers,
                                              combine_segments=False, skip_overlap_checks=True)
    labelmap = case.result.labelmap
    for info in exp.segments:
        expected = labelmap == info.label_value
        if info.lesion_number is not None:
            comps, _ = ndimage.label(expected, structure=np.ones((3, 3, 3), bool))
            lesion = next(les for les in case.result.findings.lesions if les.number == info.lesion_number)
            expected = comps == comps[tuple(np.rint(lesion.centroid_index).astype(int))]
            assert int(expected.sum()) == lesion.voxels
        assert np.array_equal(masks[..., info.number - 1] > 0, expected), info.name
    described = {int(d.SegmentNumber): d for d in seg.SegmentSequence}
    for info in exp.segments:
        label = case.result.label_table.by_value(info.label_value)
        d = described[info.number]
        assert label is not None and d.SegmentLabel == info.name
        assert label.code is not None and d.SegmentedPropertyTypeCodeSequence[0].CodeValue == label.code.value
        assert d.SegmentAlgorithmType == "AUTOMATIC" and d.SegmentAlgorithmName == "builtin.ct"
    present = {int(v) for v in np.unique(labelmap) if v}
    assert {s.label_value for s in exp.segments} == present
    assert _hashes(case.folder) == case.hashes


def test_real_ct_without_uids_gets_derived_study_and_series(real: Case) -> None:
    sources = read_sources(real.headers, real.volume)
    assert any("StudyInstanceUID empty" in r for r in sources.repairs)
    assert sources.study_uid.startswith("2.25.") and sources.study_uid == read_sources(real.headers,
                                                                                        real.volume).study_uid
    assert all(str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.2" for ds in sources.datasets)


def test_lesions_each_get_a_segment_numbered_as_the_findings(demo: Case, tmp_path: Path) -> None:
    sources = read_sources(demo.headers, demo.volume)
    exp = write_seg(demo.result, sources, tmp_path / "seg.dcm")
    lesions = demo.result.findings.lesions
    assert len(lesions) >= 2
    assert [s.name for s in exp.segments if s.lesion_number] == [f"lung_nodule {les.number}" for les in lesions]


def test_resampled_grid_is_written_on_its_own_plane_positions(demo: Case, tmp_path: Path) -> None:
    folder = tmp_path / "gapped"
    folder.mkdir()
    for p in sorted(demo.folder.glob("*.dcm")):
        if p.name != "IM0020.dcm":
            shutil.copy(p, folder / p.name)
    gapped = _case("gapped", folder)
    assert any("resampled" in n for n in gapped.volume.notes)
    sources = read_sources(gapped.headers, gapped.volume)
    assert not sources.mapped and "resampled" in sources.reason_unmapped
    exp = write_seg(gapped.result, sources, tmp_path / "seg.dcm")
    assert not exp.per_slice_references
    assert_valid(exp.path)
    ds = pydicom.dcmread(exp.path)
    assert ds.FrameOfReferenceUID == gapped.volume.frame_of_reference_uid
    seg_numbers = {s.number: s for s in exp.segments}
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    for f, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        k = gapped.volume.lps_to_index(ipp)
        assert np.allclose(k, np.rint(k), atol=1e-3) and np.allclose(k[1:], 0, atol=1e-3)
        info = seg_numbers[int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        if info.lesion_number is None:
            assert np.array_equal(pixels[f] > 0, gapped.result.labelmap[round(k[0])] == info.label_value)


def _groups(sr: Any) -> dict[str, dict[str, tuple[float, str]]]:
    out: dict[str, dict[str, tuple[float, str]]] = {}
    content = sr.content
    for g in [*content.get_volumetric_roi_measurement_groups(), *content.get_image_measurement_groups()]:
        out[str(g.tracking_identifier)] = {m.name.meaning: (float(m.value), m.unit.value) for m in g.get_measurements()}
    return out


def test_measurement_sr_round_trip(case: Case, tmp_path: Path) -> None:
    sources = read_sources(case.headers, case.volume)
    seg = write_seg(case.result, sources, tmp_path / "seg.dcm")
    path, _ = write_measurement_sr(case.result, sources, seg, tmp_path / "sr.dcm")
    assert_valid(path)
    sr = hd.sr.srread(path)
    assert sr.VerificationFlag == "UNVERIFIED" and sr.SeriesDescription.endswith("(draft)")
    groups = _groups(sr)
    findings = case.result.findings
    lesion_labels = {les.label for les in findings.lesions}
    for s in findings.structures:
        if s.label in lesion_labels:
            continue
        got = groups[s.name]
        assert got["Volume"][0] == pytest.approx(s.volume_ml, rel=1e-9) and got["Volume"][1] == "mL"
        assert got["Attenuation Coefficient"][0] == pytest.approx(s.mean, rel=1e-9)
        assert got["Attenuation Coefficient"][1] == "[hnsf'U]"
    for les in findings.lesions:
        got = groups[f"{les.name} {les.number}"]
        assert got["Long axis"][0] == pytest.approx(les.long_axis_mm, rel=1e-9) and got["Long axis"][1] == "mm"
        assert got["Short axis"][0] == pytest.approx(les.short_axis_mm, rel=1e-9) and got["Short axis"][1] == "mm"
        assert got["Volume"][0] == pytest.approx(les.volume_ml, rel=1e-9)
    for m in findings.measurements:
        ((value, _unit),) = groups[tracking_name(m)].values()
        assert value == pytest.approx(m.value, rel=1e-9)
    seg_uid = str(seg.dataset.SOPInstanceUID)
    for g in sr.content.get_volumetric_roi_measurement_groups():
        ref = g.referenced_segment
        assert ref.referenced_sop_instance_uid == seg_uid
        assert seg.segments[ref.referenced_segment_numbers[0] - 1].tracking_uid == g.tracking_uid
    # a lesion's group names one source image: the file with the InstanceNumber its findings quote
    instance_of = {h.sop_instance_uid: h.instance_number for h in case.headers}
    groups_by_id = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    for les in findings.lesions:
        images = groups_by_id[f"{les.name} {les.number}"].referenced_segment.source_images_for_segmentation
        assert [instance_of[str(im.referenced_sop_instance_uid)] for im in images] == [les.instance_number]
    assert _hashes(case.folder) == case.hashes


@pytest.mark.parametrize("signed", [False, True])
def test_report_sr_states_draft_or_signer(case: Case, tmp_path: Path, signed: bool) -> None:
    sources = read_sources(case.headers, case.volume)
    doc = make_report(signed)
    path, _ = write_report_sr(doc, sources, tmp_path / "report.dcm")
    assert_valid(path)
    ds = pydicom.dcmread(path)
    texts = [str(v.value) for v in _all_elements(ds) if v.keyword == "TextValue"]
    assert any("A 20.6 mm nodule in the left lung." in t for t in texts)
    if signed:
        assert (ds.VerificationFlag, ds.CompletionFlag, ds.PreliminaryFlag) == ("VERIFIED", "COMPLETE", "FINAL")
        observer = ds.VerifyingObserverSequence[0]
        assert str(observer.VerifyingObserverName) == "Smith^Jane"
        assert str(observer.VerificationDateTime) == "20240315103000+0000"
        names = [str(v.value) for v in _all_elements(ds) if v.keyword == "PersonName"]
        assert names == ["Smith^Jane"]
        assert any(t.startswith("Signed by Jane Smith") for t in texts)
        assert any("Reviewed with the prior study." in t for t in texts)
    else:
        assert (ds.VerificationFlag, ds.CompletionFlag) == ("UNVERIFIED", "PARTIAL")
        assert "VerifyingObserverSequence" not in ds
        assert any(t.startswith("DRAFT - not signed") for t in texts)
        assert ds.SeriesDescription == "Radiology report (draft)"


def _all_elements(ds: Any) -> list[Any]:
    out: list[Any] = []
    ds.walk(lambda _d, e: out.append(e))
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.walk(lambda _d, e: out.append(e))
    return out


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def test_pdf_and_text_show_draft_then_signer(demo: Case, tmp_path: Path) -> None:
    draft = export_study(demo.result, demo.headers, tmp_path / "draft", make_report(False),
                         ExportOptions(formats=frozenset({"pdf", "txt"})))
    text = _pdf_text(draft.files["pdf"])
    assert "DRAFT - NOT SIGNED" in text and "Signed by" not in text
    assert "A 20.6 mm nodule in the left lung." in text and "Impression" in text
    assert "Key images" in text and "Lesions" in text and "DEMO0001" in text
    for les in demo.result.findings.lesions:  # the image a reader goes to, never a grid index
        assert les.instance_number is not None and f"Se 2 Im {les.instance_number}\n" in text + "\n"
    signed = export_study(demo.result, demo.headers, tmp_path / "signed", make_report(True),
                          ExportOptions(formats=frozenset({"pdf", "txt"})))
    text = _pdf_text(signed.files["pdf"])
    assert "Signed by Jane Smith on 2024-03-15 10:30 UTC" in text
    assert "DRAFT" not in text.upper().replace("DRAFTED BY", "")
    assert "analysis builtin.ct 1.0.0" in text and "Reviewed with the prior study." in text
    plain = signed.files["txt"].read_text(encoding="utf-8")
    assert "Signed by Jane Smith on 2024-03-15 10:30 UTC" in plain and "NOT SIGNED" not in plain
    assert "NOT SIGNED" in draft.files["txt"].read_text(encoding="utf-8")


def test_export_study_writes_everything_valid_and_leaves_sources(case: Case, tmp_path: Path) -> None:
    res = export_study(case.result, case.headers, tmp_path / "out", make_report(True))
    assert set(res.files) == {"seg", "sr", "report_sr", "pdf", "txt", "nifti"}
    if dciodvfy_path() is not None:
        assert set(res.validation) == {"seg", "sr", "report_sr"} and res.ok, res.validation
    seg = pydicom.dcmread(res.files["seg"])
    assert seg.SeriesDescription == "AI SEG (signed report)"
    report_sr = pydicom.dcmread(res.files["report_sr"])
    evidence = {str(i.ReferencedSOPInstanceUID) for s in report_sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert str(seg.SOPInstanceUID) in evidence
    assert str(pydicom.dcmread(res.files["sr"]).SOPInstanceUID) in evidence
    assert _hashes(case.folder) == case.hashes


def test_export_refuses_the_source_folder_and_source_files(demo: Case, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="source files"):
        export_study(demo.result, demo.headers, demo.folder, make_report(False))
    sources = read_sources(demo.headers, demo.volume)
    with pytest.raises(ExportError, match="source file"):
        write_seg(demo.result, sources, Path(demo.headers[0].ref), protect=[h.ref for h in demo.headers])
    assert _hashes(demo.folder) == demo.hashes


def test_deidentified_exports_hold_no_identity(demo: Case, tmp_path: Path) -> None:
    doc = make_report(True)
    res = export_study(demo.result, demo.headers, tmp_path / "anon", doc,
                       ExportOptions(deidentify=True, salt="test-salt"))
    deid = Deidentifier("test-salt")
    needles = [n.lower() for n in (*DEMO_IDENTITY, "Demo Phantom", "1956-02-10")]
    datasets = {k: pydicom.dcmread(res.files[k]) for k in ("seg", "sr", "report_sr")}
    for kind, ds in datasets.items():
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        for elem in _all_elements(ds):
            if elem.VR in ("SQ", "OB", "OW", "UN"):
                continue
            value = str(elem.value).lower()
            assert not any(n in value for n in needles), (kind, elem)
        assert ds.PatientID.startswith("ANON-") and str(ds.StudyDate) != "20240315"
    # UIDs are remapped consistently: the SR points at the de-identified SEG and the remapped sources
    seg, sr = datasets["seg"], datasets["sr"]
    refs = {str(e.value) for e in _all_elements(sr) if e.keyword == "ReferencedSOPInstanceUID"}
    assert str(seg.SOPInstanceUID) in refs
    assert {deid.uid(h.sop_instance_uid) for h in demo.headers} <= refs
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == deid.uid(demo.headers[0].study_uid)
    assert not {h.sop_instance_uid for h in demo.headers} & refs
    for kind in ("pdf", "txt"):
        text = (_pdf_text(res.files[kind]) if kind == "pdf" else res.files[kind].read_text("utf-8")).lower()
        assert not any(n in text for n in needles), kind
    pdf_text = _pdf_text(res.files["pdf"])
    assert "Signed by [removed]" in pdf_text and "Reviewed with the prior study." in pdf_text
    for kind in ("seg", "sr", "report_sr", "txt"):  # staff names are removed too (PS3.15 basic profile)
        assert b"Smith" not in res.files[kind].read_bytes(), kind
    assert _hashes(demo.folder) == demo.hashes


def test_text_export_scrubs_typed_identifiers(demo: Case) -> None:
    doc = make_report(False)
    doc.add("Findings", "Discussed with Demo Phantom (ID DEMO0001).")
    sources = read_sources(demo.headers, demo.volume)
    text = report_text(doc, sources.info, deid=Deidentifier("s"))
    assert "Phantom" not in text and "DEMO0001" not in text and "[removed]" in text


def test_known_identifier_rule_is_shared_by_exports_and_notes() -> None:
    """One rule (``identifier_patterns``) for the exports and the drafter's notes: settled where they differed."""
    from workstation.export.deid import identifier_patterns, remove_identifiers

    deid = Deidentifier("s")
    deid.learn("WHITE^LI", "AB1234", "19500201")
    text = "Li White (AB1234), born 01/02/1950 or 1950-02-01; white matter normal; 12 mm."
    scrubbed = deid.scrub(text)
    assert scrubbed == remove_identifiers(text, identifier_patterns("WHITE^LI", "AB1234", "19500201"))
    # name parts of 2 letters where capitalised; a lowercase common word survives; dates in common forms
    assert scrubbed == ("[removed] [removed] ([removed]), born [removed] or [removed]; white matter normal; 12 mm.")
    short = Deidentifier("s")
    short.learn("12")
    assert short.scrub("12 mm") == "12 mm"  # a 2-character ID would eat measurements


def test_pdf_of_a_report_alone(tmp_path: Path) -> None:
    data = render_pdf(make_report(False))
    assert data.startswith(b"%PDF")
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    assert "DRAFT - NOT SIGNED" in _pdf_text(path)


def test_pdf_without_a_unicode_font_folds_text(monkeypatch: pytest.MonkeyPatch, demo: Case, tmp_path: Path) -> None:
    from workstation.export import pdf

    monkeypatch.setattr(pdf, "_font_files", lambda: None)
    doc = make_report(False)
    doc.add("Findings", "Nodule ≤ 3 cm – stable; 5 µm ± 1.")
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf.render_pdf(doc, demo.result, key_images=1))
    text = _pdf_text(path)
    assert "Nodule <= 3 cm - stable; 5 µm ± 1." in text and "DRAFT - NOT SIGNED" in text


def test_nifti_label_map_round_trip(demo: Case, tmp_path: Path) -> None:
    import nibabel as nib

    from workstation.dicomio.nifti import volume_from_nifti_layout

    path = write_labelmap_nifti(demo.result, tmp_path / "labels.nii.gz")
    img = nib.load(str(path))
    arr, affine = volume_from_nifti_layout(np.asarray(img.dataobj), img.affine)
    assert np.array_equal(arr, demo.result.labelmap) and np.allclose(affine, demo.volume.affine, atol=1e-4)
    assert (tmp_path / "labels.labels.json").is_file()


@pytest.mark.needs_tool
@NEEDS_DCIODVFY
@pytest.mark.parametrize("deidentify", [False, True])
def test_every_dicom_object_passes_dciodvfy(case: Case, tmp_path: Path, deidentify: bool) -> None:
    for signed in (False, True):
        res = export_study(case.result, case.headers, tmp_path / f"out{signed}", make_report(signed),
                           ExportOptions(formats=frozenset({"seg", "sr", "report_sr"}), deidentify=deidentify))
        assert set(res.validation) == {"seg", "sr", "report_sr"}
        for kind, result in res.validation.items():
            assert result.available and result.errors == [], (kind, signed, result.errors)


def test_dciodvfy_output_is_parsed() -> None:
    errors, warnings, iod = parse_output(
        "Segmentation\nError - Missing attribute Type 1 Required Element=<X> Module=<Y>\n"
        "Warning - Value dubious for this VR\nCTImage\n")
    assert iod == "Segmentation" and len(errors) == 1 and len(warnings) == 1


@pytest.mark.needs_tool
@NEEDS_DCIODVFY
def test_dciodvfy_reports_errors_on_a_broken_object(demo: Case, tmp_path: Path) -> None:
    sources = read_sources(demo.headers, demo.volume)
    exp = write_seg(demo.result, sources, tmp_path / "seg.dcm")
    ds = pydicom.dcmread(exp.path)
    del ds.SegmentSequence
    ds.save_as(tmp_path / "broken.dcm")
    result = validate_file(tmp_path / "broken.dcm")
    assert result.errors and not result.ok
