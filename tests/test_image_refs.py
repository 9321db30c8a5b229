"""One image reference everywhere: a lesion, a key image and a viewer slice are named by SeriesNumber/InstanceNumber.

The truth is read here from the files themselves with pydicom (ImagePositionPatient
projected on the slice normal, InstanceNumber, frame), never from the loader, so a
loader that recorded the wrong plane, a reversed numbering or a grid index fails.
Cases: the demo study (instance 1 at the top), the real abdomen CT (InstanceNumbers
267.. from the top down, no SeriesNumber, empty UIDs), and synthetic series numbered
with the position, against it, at random and with gaps, resampled for gaps and
tilt, sagittal, and one enhanced multi-frame object (named by frame).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from inference.contract import AnalysisProvenance, AnalysisRequest, AnalysisResult
from inference.drafting.facts import collect_facts
from inference.engine import Engine
from inference.findings import Lesion
from inference.findings.measure import compute_findings
from inference.image_refs import (
    grid_slice,
    image_ref,
    image_text,
    lesion_ref,
    lesion_slice,
    lesion_text,
    slice_ref,
    slice_text,
)
from inference.labels import Label, LabelTable
from inference.volume import SourceImage, SourceImages, Volume
from tests import synth
from workstation.demo import generate_demo_study
from workstation.dicomio.headers import InstanceHeader, read_header_path
from workstation.dicomio.stream import empty_volume, stream_layout, stream_refusal
from workstation.dicomio.volume_builder import load_series, plan_series
from workstation.document import DraftSource, ReportDocument
from workstation.export import read_sources, render_pdf, write_measurement_sr, write_seg
from workstation.imaging import key_slices, slice_caption
from workstation.services.analysis_record import findings_from_dict

NODULE = LabelTable((Label(1, "lung_nodule", (255, 255, 0), lesion=True),))
TIE_MM = 1e-6


# ----------------------------------------------------------------------------- truth from the files

@dataclass(frozen=True)
class Truth:
    """One acquired image as the file says: position along the normal, InstanceNumber, UID, frame."""

    position: float
    instance: int | None
    uid: str
    frame: int | None


def file_truth(paths: Sequence[Path]) -> tuple[int | None, npt.NDArray[np.float64], list[Truth]]:
    """SeriesNumber, unit normal and every image plane of the files, read with pydicom."""
    out: list[Truth] = []
    normal = np.zeros(3)
    series: int | None = None
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series = int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None
        uid = str(ds.get("SOPInstanceUID") or "") or str(ds.file_meta.MediaStorageSOPInstanceUID)
        number = int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None
        if "PerFrameFunctionalGroupsSequence" in ds:
            iop = np.asarray(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                             .ImageOrientationPatient, dtype=np.float64)
            normal = np.cross(iop[:3], iop[3:])
            for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence, start=1):
                ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64)
                out.append(Truth(float(ipp @ normal), number, uid, f))
            continue
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(iop[:3], iop[3:])
        out.append(Truth(float(np.asarray(ds.ImagePositionPatient, dtype=np.float64) @ normal), number, uid, None))
    return series, normal / np.linalg.norm(normal), out


def nearest(truth: list[Truth], normal: npt.NDArray[np.float64], point: npt.ArrayLike) -> list[Truth]:
    """The images nearest ``point`` along the normal (several only on an exact tie)."""
    target = float(np.asarray(point, dtype=np.float64) @ normal)
    dist = np.array([abs(t.position - target) for t in truth])
    return [t for t, d in zip(truth, dist, strict=True) if d <= dist.min() + TIE_MM]


def renumber(paths: Sequence[Path], numbers: Sequence[int]) -> None:
    """Rewrite each file's InstanceNumber (in place)."""
    for path, number in zip(paths, numbers, strict=True):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = number
        ds.save_as(path, enforce_file_format=True)


def blob_lesion(volume: Volume, centre_index: Sequence[float], radius_mm: float = 6.0) -> tuple[
        npt.NDArray[np.uint8], Lesion]:
    """A ball label around a (continuous) grid point, measured by ``compute_findings``: its one lesion."""
    idx = np.indices(volume.shape).reshape(3, -1).T
    lps = volume.index_to_lps(idx)
    centre = volume.index_to_lps(np.asarray(centre_index, dtype=np.float64))
    lab = (np.linalg.norm(lps - centre, axis=1) <= radius_mm).reshape(volume.shape).astype(np.uint8)
    found = compute_findings(volume, lab, NODULE)
    assert len(found.lesions) == 1
    return lab, found.lesions[0]


def assert_names_nearest(volume: Volume, truth: list[Truth], normal: npt.NDArray[np.float64],
                         series: int | None) -> None:
    """Every grid slice and a spread of points name the acquired image nearest them."""
    for k in range(volume.shape[0]):
        ref = slice_ref(volume, k)
        assert ref is not None and ref.series_number == series
        best = nearest(truth, normal, volume.index_to_lps([k, 0, 0]))
        assert (ref.instance_number, ref.image.frame) in {(t.instance, t.frame) for t in best}, k
        assert ref.image.sop_instance_uid in {t.uid for t in best}
    rng = np.random.default_rng(7)
    for c in rng.uniform(0, np.asarray(volume.shape) - 1, size=(40, 3)):
        point = volume.index_to_lps(c)
        ref = image_ref(volume, point=point)
        assert ref is not None
        assert (ref.instance_number, ref.image.frame) in {(t.instance, t.frame) for t in nearest(truth, normal, point)}


# ----------------------------------------------------------------------------- the function itself

def _volume(positions: Sequence[float], numbers: Sequence[int | None], spacing: float, count: int,
            series: int | None = 4) -> Volume:
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 0] = (0.0, 0.0, spacing)
    aff[:3, 1] = (0.0, 0.8, 0.0)
    aff[:3, 2] = (0.7, 0.0, 0.0)
    aff[:3, 3] = (-10.0, -20.0, positions[0])
    images = tuple(SourceImage(p, n, f"1.2.3.{i}") for i, (p, n) in enumerate(zip(positions, numbers, strict=True)))
    return Volume(np.zeros((count, 4, 4), np.int16), aff, "CT", "HU",
                  source=SourceImages(series, (0.0, 0.0, 2.0), images))


def test_nearest_by_position_whatever_the_numbers_say() -> None:
    positions = [100.0 + 2.5 * k for k in range(12)]
    numbers = [300 - 3 * k for k in range(12)]  # running against the position, with gaps
    vol = _volume(positions, numbers, 2.5, 12)
    assert vol.source is not None and vol.source.normal == (0.0, 0.0, 1.0), "normal is stored as a unit vector"
    for k in range(12):
        assert slice_text(vol, k) == f"Se 4 Im {300 - 3 * k}"
        assert slice_text(vol, k, "long") == f"series 4, image {300 - 3 * k}"
    # a point 1 mm above slice 5 is on image 285; the in-plane position does not matter
    ref = image_ref(vol, point=(55.0, -80.0, 100.0 + 2.5 * 5 + 1.0))
    assert ref is not None and ref.instance_number == 285 and ref.distance_mm == pytest.approx(1.0)
    assert not ref.on_plane
    assert image_ref(vol, slice_index=5.4) == image_ref(vol, point=vol.index_to_lps([5.4, 2.0, 3.0]))
    # half-way between two images: the image of the grid slice round() gives (half to even), as the viewer goes
    assert image_ref(vol, slice_index=5.5).instance_number == 300 - 3 * 6  # type: ignore[union-attr]
    assert image_ref(vol, slice_index=6.5).instance_number == 300 - 3 * 6  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="either"):
        image_ref(vol)


def test_resampled_grid_names_the_nearest_acquired_image_and_says_so() -> None:
    # acquired at 0, 2 and 5 mm (uneven); the grid has 4 slices 5/3 mm apart, as the loader makes it
    vol = _volume([0.0, 2.0, 5.0], [7, 5, 1], 5.0 / 3.0, 4)
    assert [slice_text(vol, k) for k in range(4)] == ["Se 4 Im 7", "Se 4 Im 5 (nearest)", "Se 4 Im 5 (nearest)",
                                                      "Se 4 Im 1"]
    # a centre at 3.6 mm is nearest the image at 5 mm, though the grid slice nearest it (3.33 mm) is nearest 2 mm
    ref = image_ref(vol, point=(0.0, 0.0, 3.6))
    assert ref is not None and ref.instance_number == 1
    assert grid_slice(vol, ref.image) == 3, "the key image of that lesion is the acquired plane itself"


def test_no_dicom_source_names_no_image() -> None:
    vol = Volume(np.zeros((3, 4, 4), np.int16), np.eye(4))
    assert image_ref(vol, slice_index=1) is None and slice_text(vol, 1) == ""
    assert slice_caption(vol, 1) == "slice 2/3"
    assert image_text(None, 12) == "Im 12" and image_text(3, None) == ""
    assert image_text(3, 1, 37) == "Se 3 Im 1 Fr 37" and image_text(3, 1, 37, "long") == "series 3, image 1, frame 37"


# ----------------------------------------------------------------------------- synthetic series

def _sagittal(n: int = 16, spacing: float = 3.0) -> list[synth.SliceSpec]:
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    off = synth._centre_offset(iop)
    return [synth.SliceSpec((float(off[0] + (k - n / 2) * spacing), float(off[1]), float(off[2])), iop)
            for k in range(n)]


STACKS: dict[str, Callable[[], list[synth.SliceSpec]]] = {
    "uniform": lambda: synth.axial_stack(16, 4.0),
    "uneven": lambda: synth.gapped_stack([4.0] * 6 + [7.0] * 3 + [5.0] * 3),
    "missing": lambda: synth.drop(synth.axial_stack(16, 3.0), [4, 9, 10]),
    "tilted": lambda: synth.tilted_stack(14, 4.0, 12.0),
    "sagittal": _sagittal,
}


@pytest.mark.parametrize("numbering", ["position", "reversed", "random", "gaps"])
@pytest.mark.parametrize("stack", sorted(STACKS))
def test_synthetic_series_name_the_nearest_image(tmp_path: Path, stack: str, numbering: str) -> None:
    slices = STACKS[stack]()
    series = synth.write_series(tmp_path, slices, name=f"{stack}-{numbering}",
                                instance_numbers="reversed" if numbering == "gaps" else numbering)  # type: ignore[arg-type]
    if numbering == "gaps":  # running from the last slice down, in steps of 3 from 201
        renumber(series.files, [201 + 3 * (len(slices) - k) for k in range(len(slices))])
    number, normal, truth = file_truth(series.files)
    volume = load_series(series.headers()).volumes[0]
    resampled = any("resampled" in n for n in volume.notes)
    assert resampled == (stack in ("uneven", "missing", "tilted"))
    assert volume.source is not None and len(volume.source.images) == len(slices)
    assert sorted(im.instance_number for im in volume.source.images if im.instance_number is not None) == sorted(
        t.instance for t in truth if t.instance is not None)
    assert_names_nearest(volume, truth, normal, number)
    # a lesion away from any grid symmetry: its instance is the file nearest its centre
    centre = (np.asarray(volume.shape) - 1) * np.array([0.37, 0.55, 0.45])
    _, les = blob_lesion(volume, centre, radius_mm=5.0)
    best = nearest(truth, normal, les.centroid_lps)
    assert les.series_number == 3 and les.instance_number in {t.instance for t in best}
    assert lesion_text(les) == f"Se 3 Im {les.instance_number}"
    # the key image of the lesion shows that image, and says which
    k = lesion_slice(volume, les)
    ref = slice_ref(volume, k)
    assert ref is not None and ref.instance_number == les.instance_number
    assert slice_caption(volume, k).startswith(f"series 3, image {les.instance_number}")


def test_streaming_loader_records_the_same_source_images(tmp_path: Path) -> None:
    series = synth.write_series(tmp_path, synth.axial_stack(12, 2.5), name="stream", instance_numbers="random")
    headers = series.headers()
    plan = plan_series(headers)
    assert stream_refusal(plan) == ""
    streamed = empty_volume(stream_layout(plan.volumes[0]))
    loaded = load_series(headers).volumes[0]
    assert streamed.source == loaded.source and streamed.source is not None


def test_enhanced_multiframe_names_the_frame(tmp_path: Path) -> None:
    series = synth.write_enhanced(tmp_path, synth.axial_stack(10, 3.0), name="enh")
    number, normal, truth = file_truth(series.files)
    volume = load_series(series.headers()).volumes[0]
    assert volume.source is not None
    assert {im.frame for im in volume.source.images} == set(range(1, 11))
    assert_names_nearest(volume, truth, normal, number)
    _, les = blob_lesion(volume, (np.asarray(volume.shape) - 1) * np.array([0.62, 0.5, 0.5]), 4.0)
    ref = lesion_ref(volume, les)
    frames = {t.frame for t in nearest(truth, normal, les.centroid_lps)}
    assert ref is not None and ref.image.frame in frames and les.instance_number == 1
    assert lesion_text(les, volume=volume) == f"Se 3 Im 1 Fr {ref.image.frame}"


# ----------------------------------------------------------------------------- the demo study, end to end

@dataclass
class Demo:
    folder: Path
    headers: list[InstanceHeader]
    volume: Volume
    result: AnalysisResult
    normal: npt.NDArray[np.float64]
    truth: list[Truth]

    def uid_instance(self) -> dict[str, int | None]:
        return {t.uid: t.instance for t in self.truth}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(40, 96, 96))
    paths = sorted(folder.glob("*.dcm"))
    headers = [read_header_path(p) for p in paths]
    volume = load_series(headers).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct", "cpu"))
    _, normal, truth = file_truth(paths)
    return Demo(folder, headers, volume, result, normal, truth)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def _report() -> ReportDocument:
    return ReportDocument.from_draft("study", {"Findings": "Nodules."}, DraftSource("template", "1", "builtin.ct",
                                                                                     "1.0.0"))


def test_demo_lesions_name_the_image_nearest_their_centre(demo: Demo) -> None:
    lesions = demo.result.findings.lesions
    assert len(lesions) >= 2
    # instance 1 is the top slice: a grid index counted from the feet is not it, nor is it plus one
    top = max(demo.truth, key=lambda t: t.position)
    assert top.instance == 1
    for les in lesions:
        best = nearest(demo.truth, demo.normal, les.centroid_lps)
        assert les.series_number == 2 and les.instance_number in {t.instance for t in best}
        assert les.instance_number not in (les.axial_slice, les.axial_slice + 1)
    assert_names_nearest(demo.volume, demo.truth, demo.normal, 2)


def test_demo_findings_json_pdf_montage_and_sr_agree(demo: Demo, tmp_path: Path) -> None:
    from workstation.services.analysis import write_outputs

    result = demo.result
    lesions = result.findings.lesions
    expected = {les.number: les.instance_number for les in lesions}
    # findings.json carries the numbers and reads back
    outputs = write_outputs(result, tmp_path / "analysis")
    data = json.loads(outputs.findings.read_text(encoding="utf-8"))
    assert {x["number"]: (x["series_number"], x["instance_number"]) for x in data["findings"]["lesions"]} == {
        n: (2, i) for n, i in expected.items()}
    again = findings_from_dict(data["findings"])
    assert [(x.series_number, x.instance_number) for x in again.lesions] == [(2, expected[x.number]) for x in lesions]
    # the montage's captions: each lesion's key image is its image
    from PIL import Image

    picks = key_slices(result)
    captions = Image.open(outputs.montage).text["Captions"].split("\n")  # type: ignore[attr-defined]
    assert len(captions) == len(picks)
    shown = 0
    for les in lesions:
        k = lesion_slice(demo.volume, les)
        if k in picks:
            shown += 1
            assert captions[picks.index(k)].startswith(f"series 2, image {les.instance_number}  z ")
    assert shown >= 1
    assert not any(re.search(r"\bslice \d+/", c) for c in captions), "no grid index in the captions"
    # the PDF: table rows and key image captions
    text = _pdf_text(render_pdf(_report(), result))
    for les in lesions:
        row = next(line for line in text.splitlines() if line.startswith(f"{les.number} lung nodule"))
        assert row.endswith(f"Se 2 Im {les.instance_number}"), row
    largest = max(lesions, key=lambda x: x.volume_ml)
    assert f"series 2, image {largest.instance_number}, z" in text
    assert not re.search(r"\bslice \d+/\d+", text)
    # the measurement SR: each lesion's group references the file with that InstanceNumber
    sources = read_sources(demo.headers, demo.volume)
    seg = write_seg(result, sources, tmp_path / "seg.dcm")
    path, _ = write_measurement_sr(result, sources, seg, tmp_path / "sr.dcm")
    refs = sr_lesion_images(pydicom.dcmread(path))
    by_uid = demo.uid_instance()
    for les in lesions:
        assert [by_uid[u] for u, _ in refs[f"{les.name} {les.number}"]] == [les.instance_number]
    # the report's facts carry them for the drafter
    from inference.drafting.inputs import ReportInputs

    facts = collect_facts(ReportInputs(findings=result.findings, label_table=result.label_table))
    links = {f.link.key: f.link for f in facts.facts if f.link.kind == "lesion"}
    for les in lesions:
        link = links[f"lesion:{les.name}:{les.number}"]
        assert (link.series_number, link.instance_number) == (2, les.instance_number)


def sr_lesion_images(ds: Any) -> dict[str, list[tuple[str, Any]]]:
    """Tracking identifier -> (SOP Instance UID, frames) of each group's "Source image for segmentation"."""
    out: dict[str, list[tuple[str, Any]]] = {}

    def walk(items: Any, current: str) -> None:
        for item in items:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            if item.ValueType == "CONTAINER" and name == "Image Library":
                continue
            if item.ValueType == "TEXT" and name == "Tracking Identifier":
                current = str(item.TextValue)
                out.setdefault(current, [])
            if item.ValueType == "IMAGE" and name.lower() == "source image for segmentation" and current:
                r = item.ReferencedSOPSequence[0]
                out[current].append((str(r.ReferencedSOPInstanceUID), r.get("ReferencedFrameNumber")))
            if "ContentSequence" in item:
                walk(item.ContentSequence, current)

    walk(ds.ContentSequence, "")
    return out


def test_demo_viewer_and_findings_panel_agree(qtbot: QtBot, demo: Demo) -> None:
    from workstation.qt.panels import FindingsPanel
    from workstation.qt.viewer import MprViewer
    from workstation.viewing.image_number import plane_image_text

    lesions = demo.result.findings.lesions
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.set_result(demo.result)
    qtbot.waitUntil(lambda: not panel.filling, timeout=2000)  # the table fills over the next turns
    images = [panel.proxy.index(r, 5).data() for r in range(len(lesions))]
    assert images == [f"Se 2 Im {les.instance_number}" for les in lesions]
    assert panel.model.headerData(5, Qt.Orientation.Horizontal) == "Image\n(Se / Im)"
    viewer = MprViewer()
    qtbot.addWidget(viewer)
    viewer.resize(800, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.set_volume(demo.volume)
    for les in lesions:
        viewer.go_to_lps(les.centroid_lps)  # what selecting the finding does
        axial = viewer.view("axial")
        assert axial.geom is not None and axial.geom.normal == 0
        text = plane_image_text(demo.volume, axial.geom, axial.slice_index)
        assert text == f"Se 2 Im {les.instance_number}"
        axial.grab()  # paints the view
        painted = getattr(axial, "corner_text", None)  # what the last paint wrote, where the view records it
        if painted is not None:
            assert text in painted["tr"], painted
        assert f"on Se 2 Im {les.instance_number}" in [row[0] for row in viewer.info_pane.lines()]
        coronal = viewer.view("coronal")
        assert coronal.geom is not None
        assert plane_image_text(demo.volume, coronal.geom, coronal.slice_index).startswith("MPR ")


# ----------------------------------------------------------------------------- real CT

def test_real_ct_numbered_from_the_top_down(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "ct_abdomen_totalseg" / "example_ct_dicom"
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    series, normal, truth = file_truth(paths)
    assert series is None, "this series has no SeriesNumber"
    by_position = sorted(truth, key=lambda t: t.position)
    assert [t.instance or 0 for t in by_position] == sorted((t.instance or 0 for t in truth), reverse=True), (
        "InstanceNumbers run from the top slice down")
    headers = [read_header_path(p) for p in paths]
    volume = load_series(headers).volumes[0]
    assert_names_nearest(volume, truth, normal, None)
    labels = np.zeros(volume.shape, np.uint8)
    lesions = []
    for centre in ((4.3, 250.0, 200.0), (13.6, 300.0, 330.0)):
        lab, les = blob_lesion(volume, centre, radius_mm=5.0)
        labels[lab > 0] = 1
        best = nearest(truth, normal, les.centroid_lps)
        assert les.series_number is None and les.instance_number in {t.instance for t in best}
        assert lesion_text(les) == f"Im {les.instance_number}"
        lesions.append(les)
    assert lesions[0].instance_number != lesions[1].instance_number
    findings = compute_findings(volume, labels, NODULE)
    assert sorted(x.instance_number or 0 for x in findings.lesions) == sorted(x.instance_number or 0 for x in lesions)
    result = AnalysisResult(AnalysisRequest(volume, "test.nodules"), labels, NODULE, findings,
                            AnalysisProvenance("test.nodules", "1", "cpu", "CPU", False))
    sources = read_sources(headers, volume)
    seg = write_seg(result, sources, tmp_path / "seg.dcm")
    path, _ = write_measurement_sr(result, sources, seg, tmp_path / "sr.dcm")
    refs = sr_lesion_images(pydicom.dcmread(path))
    by_uid = {t.uid: t.instance for t in truth}  # SOPInstanceUIDs are empty: the file-meta UIDs name them
    for les in findings.lesions:
        assert [by_uid[u] for u, _ in refs[f"{les.name} {les.number}"]] == [les.instance_number]
    text = _pdf_text(render_pdf(_report(), result))
    for les in findings.lesions:
        row = next(line for line in text.splitlines() if line.startswith(f"{les.number} lung nodule"))
        assert row.endswith(f"Im {les.instance_number}"), row
