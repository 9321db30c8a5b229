"""The demo study: a real CT series the project's own loader reads, with truth that matches it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID
from scipy import ndimage

from inference.volume import Volume
from workstation.demo import (
    DEMO_FOLDER_NAME,
    GENERATOR_VERSION,
    DemoTruth,
    build_phantom,
    ensure_demo_study,
    generate_demo_study,
    load_truth,
)
from workstation.demo import phantom as phantom_module
from workstation.demo.phantom import VERSION_FILE
from workstation.dicomio.headers import read_header_path
from workstation.dicomio.volume_builder import SeriesVolumes, load_series

SHAPE = (120, 256, 256)
SMALL = (40, 96, 96)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoTruth]:
    folder = tmp_path_factory.mktemp("demo") / "study"
    return folder, generate_demo_study(folder)


@pytest.fixture(scope="module")
def loaded(study: tuple[Path, DemoTruth]) -> SeriesVolumes:
    folder, _ = study
    return load_series([read_header_path(p) for p in sorted(folder.glob("*.dcm"))])


@pytest.fixture(scope="module")
def vol(loaded: SeriesVolumes) -> Volume:
    return loaded.volumes[0]


def _ellipsoid_mask(vol: Volume, center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Voxels whose centres lie in an axis-aligned LPS ellipsoid (the demo grid is axial)."""
    assert np.count_nonzero(vol.affine[:3, :3]) == 3
    total = np.zeros(vol.shape, dtype=np.float64)
    for axis, n in enumerate(vol.shape):
        index = np.zeros((n, 3))
        index[:, axis] = np.arange(n)
        lps = vol.index_to_lps(index)
        coord = int(np.argmax(np.abs(vol.affine[:3, axis])))
        term = ((lps[:, coord] - center[coord]) / radii[coord]) ** 2
        shape = [1, 1, 1]
        shape[axis] = n
        total += term.reshape(shape)
    return total <= 1.0


def _hu_at(vol: Volume, point: tuple[float, float, float]) -> int:
    idx = np.rint(vol.lps_to_index(point)).astype(int)
    return int(vol.array[tuple(idx)])


def _mean_at(vol: Volume, point: tuple[float, float, float]) -> float:
    """Mean HU of the 3x3x3 voxels around a point (beats the noise down by ~5)."""
    k, r, c = np.rint(vol.lps_to_index(point)).astype(int)
    return float(vol.array[k - 1:k + 2, r - 1:r + 2, c - 1:c + 2].mean())


def test_generation_is_deterministic(study: tuple[Path, DemoTruth], tmp_path: Path) -> None:
    folder, truth = study
    again = generate_demo_study(tmp_path / "again")
    assert again == truth
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in ("IM0001.dcm", "IM0060.dcm", "IM0120.dcm", "truth.json", "notes.txt"):
        assert (folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_another_seed_gives_another_study(tmp_path: Path) -> None:
    a = generate_demo_study(tmp_path / "a", shape=SMALL, seed=1)
    b = generate_demo_study(tmp_path / "b", shape=SMALL, seed=2)
    da = pydicom.dcmread(tmp_path / "a" / "IM0010.dcm")
    db = pydicom.dcmread(tmp_path / "b" / "IM0010.dcm")
    assert da.StudyInstanceUID != db.StudyInstanceUID
    assert da.PixelData != db.PixelData
    assert a.lung("right").voxel_count == b.lung("right").voxel_count  # same anatomy, new noise


def test_every_file_is_a_complete_ct_image(study: tuple[Path, DemoTruth]) -> None:
    folder, truth = study
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == truth.shape[0]
    sop_uids: set[str] = set()
    shared: set[tuple[str, str, str]] = set()
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
            assert UID(uid).is_valid, uid
        sop_uids.add(ds.SOPInstanceUID)
        shared.add((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID))
        assert ds.Modality == "CT"
        assert str(ds.PatientName) == "Demo^Phantom" and ds.PatientID == "DEMO0001"
        assert ds.StudyDescription == "CT CHEST WITHOUT CONTRAST"
        assert ds.SeriesDescription and ds.SeriesNumber == 2
        assert ds.ConvolutionKernel == "B30f" and ds.BodyPartExamined == "CHEST"
        assert ds.Manufacturer == "Workstation Demo"
        assert "ContrastBolusAgent" not in ds
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == [1.5, 1.5]
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.5
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert ds.WindowCenter is not None and ds.WindowWidth is not None
        assert ds.RequestedProcedureDescription and ds.ReasonForTheRequestedProcedure
        assert "pack-years" in ds.AdditionalPatientHistory
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
    assert len(sop_uids) == len(files)
    assert len(shared) == 1
    pixels = pydicom.dcmread(files[60]).pixel_array
    assert pixels.dtype == np.uint16 and pixels.max() < 4096


def test_notes_file_and_header_texts(study: tuple[Path, DemoTruth]) -> None:
    folder, _ = study
    notes = (folder / "notes.txt").read_text(encoding="utf-8")
    assert "40 pack-years" in notes and "right upper lobe nodule" in notes and "emphysema" in notes
    texts = read_header_path(folder / "IM0001.dcm").texts
    for name in ("RequestedProcedureDescription", "ReasonForTheRequestedProcedure",
                 "AdditionalPatientHistory", "StudyDescription"):
        assert texts.get(name), name


def test_series_loads_with_the_project_loader(study: tuple[Path, DemoTruth], loaded: SeriesVolumes,
                                              vol: Volume) -> None:
    _, truth = study
    assert len(loaded.volumes) == 1
    assert all(item.status.value == "ok" for item in loaded.qa.items), loaded.qa
    assert vol.shape == truth.shape and vol.array.dtype == np.int16
    assert vol.modality == "CT" and vol.units == "HU"
    np.testing.assert_allclose(vol.affine, np.asarray(truth.affine))
    np.testing.assert_allclose(vol.spacing, truth.spacing_mm)
    # What the loader rebuilds is exactly what the generator made in memory.
    np.testing.assert_array_equal(vol.array, build_phantom(SHAPE, seed=0).hu)


def test_field_of_view_covers_a_chest(vol: Volume) -> None:
    corners = vol.index_to_lps(np.array([[0, 0, 0], [s - 1 for s in vol.shape]]))
    extent = np.abs(corners[1] - corners[0])
    assert 370 <= extent[0] <= 390 and 370 <= extent[1] <= 390  # x, y
    assert 280 <= extent[2] <= 310  # z


def test_truth_json_round_trips(study: tuple[Path, DemoTruth]) -> None:
    folder, truth = study
    assert load_truth(folder) == truth
    assert json.loads((folder / "truth.json").read_text())["generator_version"] == GENERATOR_VERSION


def test_nodules_are_where_the_truth_says(study: tuple[Path, DemoTruth], vol: Volume) -> None:
    _, truth = study
    sigma = truth.noise_sigma_hu
    assert sorted(n.diameter_mm for n in truth.nodules) == [6.0, 9.0, 14.0, 22.0]
    assert {n.side for n in truth.nodules} == {"right", "left"}
    for n in truth.nodules:
        assert abs(_hu_at(vol, n.center_lps_mm) - 30) <= 4 * sigma
        assert (n.center_lps_mm[0] < 0) == (n.side == "right")
        # Surrounded by normal lung on all six sides.
        for axis in range(3):
            for sign in (-1, 1):
                p = list(n.center_lps_mm)
                p[axis] += sign * (n.diameter_mm / 2 + 3.0)
                assert -850 - 4 * sigma <= _hu_at(vol, tuple(p)) <= -850 + 4 * sigma  # type: ignore[arg-type]
        # Everything solid in a box around it is the nodule, voxel for voxel.
        r = n.diameter_mm / 2 + 2.0
        lo = np.floor(vol.lps_to_index(np.asarray(n.center_lps_mm) - r)).astype(int)
        hi = np.ceil(vol.lps_to_index(np.asarray(n.center_lps_mm) + r)).astype(int)
        box = vol.array[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        assert int((box > -400).sum()) == n.voxel_count
        assert n.volume_ml == pytest.approx(n.nominal_volume_ml, rel=0.2)


def test_lung_volumes_match_a_threshold_inside_the_lung_envelopes(
        study: tuple[Path, DemoTruth], vol: Volume) -> None:
    _, truth = study
    for lung in truth.lungs:
        inside = _ellipsoid_mask(vol, lung.envelope_center_lps_mm, lung.envelope_radii_mm)
        airlike = int((inside & (vol.array < -400)).sum())
        nodules = sum(n.voxel_count for n in truth.nodules if n.side == lung.side)
        # Airways inside the envelope count as air here but not in the lung mask: under 1%.
        assert airlike + nodules == pytest.approx(lung.voxel_count, rel=0.01), lung.side
        assert lung.volume_ml == pytest.approx(lung.voxel_count * vol.voxel_volume_ml)
    right, left = truth.lung("right"), truth.lung("left")
    assert 1500 < left.volume_ml < right.volume_ml < 3500  # the heart takes room from the left
    assert truth.total_lung_volume_ml == pytest.approx(right.volume_ml + left.volume_ml)


def test_right_lung_is_on_the_patients_right(vol: Volume) -> None:
    parenchyma = (vol.array > -950) & (vol.array < -700)
    labels, n = ndimage.label(parenchyma)
    border = np.unique(np.concatenate([
        labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel(), labels[:, :, [0, -1]].ravel()]))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(n + 1))
    sizes[border] = 0
    lungs = np.argsort(sizes)[-2:]
    emphysema = vol.array < -950
    by_x = []
    for lab in lungs:
        centroid = vol.index_to_lps(np.array(ndimage.center_of_mass(labels == lab)))
        grown = ndimage.binary_dilation(labels == lab, iterations=2)
        by_x.append((centroid[0], int((grown & emphysema).sum())))
    (x_right, low_right), (x_left, low_left) = sorted(by_x)
    assert x_right < 0 < x_left  # LPS: the patient's right is -x
    assert low_right > 10 * low_left  # the emphysema is in the right upper zone
    # Display convention: column 0 is the patient's right.
    assert vol.index_to_lps([0, 0, 0])[0] < vol.index_to_lps([0, 0, vol.shape[2] - 1])[0]


def test_emphysema_region_is_below_minus_950(study: tuple[Path, DemoTruth], vol: Volume) -> None:
    _, truth = study
    e = truth.emphysema
    assert e.side == "right" and 150 < e.volume_ml < 500
    inside = _ellipsoid_mask(vol, e.envelope_center_lps_mm, e.envelope_radii_mm) & (vol.array < -900)
    values = vol.array[inside]
    assert values.mean() < -950
    assert values.size == pytest.approx(e.voxel_count, rel=0.01)
    assert 100 * (values < -950).mean() == pytest.approx(e.below_950_percent, abs=0.5)
    right = truth.lung("right")
    assert right.laa950_percent == pytest.approx(
        e.voxel_count * e.below_950_percent / right.voxel_count, rel=1e-6)
    assert truth.lung("left").laa950_percent == 0.0


def test_table_is_separate_from_the_body(study: tuple[Path, DemoTruth], vol: Volume) -> None:
    _, truth = study
    assert truth.body_present and truth.body_volume_ml > 10000
    k = vol.shape[0] // 2
    dense, _ = ndimage.label(vol.array[k] > -500)
    z = float(vol.index_to_lps([k, 0, 0])[2])
    skin = np.rint(vol.lps_to_index([0.0, 104.0, z])).astype(int)
    table = np.rint(vol.lps_to_index([0.0, truth.table_top_y_mm + 1.5, z])).astype(int)
    body_label, table_label = dense[skin[1], skin[2]], dense[table[1], table[2]]
    assert body_label and table_label and body_label != table_label


def test_anatomy_looks_like_a_chest(vol: Volume) -> None:
    def hu(x: float, y: float, z: float = 0.0) -> float:
        return _mean_at(vol, (x, y, z))

    assert hu(0, 48) > 150  # vertebral body, posterior
    assert hu(0, -180) < -950  # air in front of the patient
    assert hu(0, -5, 80) < -950  # trachea
    assert 20 < hu(20, -38, -55) < 60  # heart, anterior and to the patient's left
    assert hu(-78, 0, 0) == pytest.approx(-850, abs=15)  # right lung
    assert -130 < hu(-159, -12) < -70  # subcutaneous fat at the right flank
    assert 30 < hu(-144, -12) < 70  # chest wall muscle


def test_ensure_generates_once_and_regenerates_on_version_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = ensure_demo_study(tmp_path)
    assert study == tmp_path / DEMO_FOLDER_NAME
    assert json.loads((study / VERSION_FILE).read_text())["generator_version"] == GENERATOR_VERSION
    assert len(list(study.glob("*.dcm"))) == SHAPE[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEMO_FOLDER_NAME]

    calls: list[Path] = []
    monkeypatch.setattr(phantom_module, "generate_demo_study", lambda folder, **_: calls.append(folder))
    assert ensure_demo_study(tmp_path) == study
    assert calls == []
    monkeypatch.undo()

    (study / "marker").write_text("old")
    (study / VERSION_FILE).write_text(json.dumps({"generator_version": "0"}))
    assert ensure_demo_study(tmp_path) == study
    assert not (study / "marker").exists()
    assert json.loads((study / VERSION_FILE).read_text())["generator_version"] == GENERATOR_VERSION

    monkeypatch.setattr(phantom_module, "GENERATOR_VERSION", "999")
    ensure_demo_study(tmp_path)
    assert json.loads((study / VERSION_FILE).read_text())["generator_version"] == "999"
    assert load_truth(study).generator_version == "999"
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEMO_FOLDER_NAME]


def test_a_crash_never_leaves_a_half_written_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = phantom_module._write_series

    def crash(folder: Path, *args: object, **kwargs: object) -> None:
        real_write(folder, *args, **kwargs)  # type: ignore[arg-type]
        raise OSError("disk full")

    monkeypatch.setattr(phantom_module, "_write_series", crash)
    with pytest.raises(OSError, match="disk full"):
        ensure_demo_study(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "other.dcm").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        generate_demo_study(tmp_path, shape=SMALL)


def test_small_shapes_cover_the_same_chest(tmp_path: Path) -> None:
    truth = generate_demo_study(tmp_path / "s", shape=SMALL)
    assert truth.shape == SMALL
    assert truth.lung("right").volume_ml == pytest.approx(2170, rel=0.05)


def test_package_imports_no_qt_or_ai_stack() -> None:
    code = ("import sys, workstation.demo; bad = [m for m in ('PySide6', 'torch', 'monai', "
            "'transformers') if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
