"""Real scanner data (../shared/data) through the loader, against references others made.

References: dcm2niix fingerprints and NIfTIs, TotalSegmentator's segmentation of
the same series, CIP's NRRD of the same CT, the independent worldcheck tool, and
dcm2niix run live. Tests skip when the data (or the tool) is absent.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

from inference.volume import Volume
from tests import synth
from tests.conftest import REPO, SHARED_DATA
from tests.requirements import DATA_FIX, SYSTEM_TOOLS_FIX, import_or_missing, missing
from workstation.dicomio.headers import InstanceHeader, read_header_path
from workstation.dicomio.nifti import nifti_affine, nifti_array, volume_from_nifti_layout, write_nifti
from workstation.dicomio.qa import Status
from workstation.dicomio.volume_builder import SeriesVolumes, load_series

WORLDCHECK = SHARED_DATA.parent / "tools" / "worldcheck.py"
CT_ABDOMEN = "ct_abdomen_totalseg"
CIP_DICOM = "cip_copdgene_10002K_ct64/Testing/Data/Input/ct-64Dicom"
CIP_NRRD = "cip_copdgene_10002K_ct64/Testing/Data/Input/ct-64.nrrd"
DECUBITUS = "mr_decubitus_dcm_qa_decubitus"
FINGERPRINTS = "regenerated_ref/dcm2niix_v1.0.20260724_fingerprints.json"


def headers_in(folder: Path) -> list[InstanceHeader]:
    """Headers of every file under ``folder``."""
    return [read_header_path(p) for p in sorted(folder.rglob("*")) if p.is_file()]


def load_dir(folder: Path) -> SeriesVolumes:
    return load_series(headers_in(folder))


def stored_sha256(volume: Volume, intercept: float = 0.0, slope: float = 1.0) -> str:
    """sha256 of the NIfTI-stored voxels ((value - intercept) / slope as '<i2', Fortran order), as fingerprinted."""
    stored = (nifti_array(volume).astype(np.float64) - intercept) / slope
    as_int = np.rint(stored).astype("<i2")
    assert np.array_equal(as_int, stored), "values are not whole stored integers"
    return hashlib.sha256(as_int.tobytes(order="F")).hexdigest()


def nifti_data(path: Path) -> npt.NDArray[np.float64]:
    """The scaled voxel values of a NIfTI file, squeezed to 3-D."""
    return np.asarray(nib.load(str(path)).get_fdata(), dtype=np.float64).squeeze()


@pytest.fixture(scope="module")
def ct_abdomen(shared_data: Path) -> SeriesVolumes:
    return load_dir(shared_data / CT_ABDOMEN / "example_ct_dicom")


@pytest.fixture(scope="module")
def cip(shared_data: Path) -> SeriesVolumes:
    return load_dir(shared_data / CIP_DICOM)


# ----------------------------------------------------------------------------- CT abdomen (TotalSegmentator)

def test_ct_abdomen_equals_the_dcm2niix_fingerprint(shared_data: Path, ct_abdomen: SeriesVolumes) -> None:
    ref = json.loads((shared_data / CT_ABDOMEN / FINGERPRINTS).read_text())["files"]["ct.nii"]
    (vol,) = ct_abdomen.volumes
    assert vol.units == "HU" and vol.array.dtype == np.int16 and vol.notes == ()
    assert list(nifti_array(vol).shape) == ref["shape"]
    assert stored_sha256(vol, intercept=ref["scl_inter"]) == ref["sha256_stored_voxels_fortran_order_le"]
    np.testing.assert_allclose(nifti_affine(vol), np.array(ref["affine_sform"]), atol=1e-5)
    assert (vol.array.min(), vol.array.max()) == (ref["scaled_min"], ref["scaled_max"])
    per_slice = nifti_array(vol).astype(np.int64).sum(axis=(0, 1))
    assert per_slice.tolist() == ref["scaled_per_slice_sum"]
    assert ct_abdomen.qa.worst is Status.OK


def test_ct_abdomen_with_empty_uids_and_top_down_instance_numbers(shared_data: Path,
                                                                 ct_abdomen: SeriesVolumes) -> None:
    headers = headers_in(shared_data / CT_ABDOMEN / "example_ct_dicom")
    assert {h.study_uid for h in headers} == {""} and {h.series_uid for h in headers} == {""}
    assert len({h.sop_instance_uid for h in headers}) == 20  # from the file meta
    by_number = sorted(headers, key=lambda h: h.instance_number or 0)
    assert by_number[0].ipp[2] > by_number[-1].ipp[2]  # type: ignore[index]  # numbering runs top down
    vol = ct_abdomen.volumes[0]
    assert vol.shape[0] == 20
    assert vol.affine[2, 0] > 0  # our slice index runs upwards, whatever the numbering
    assert vol.index_to_lps([0, 0, 0])[2] == pytest.approx(min(h.ipp[2] for h in headers))  # type: ignore[index]


def test_totalsegmentator_reference_segmentation_overlays_without_resampling(
        shared_data: Path, ct_abdomen: SeriesVolumes) -> None:
    vol = ct_abdomen.volumes[0]
    seg = nib.load(str(shared_data / CT_ABDOMEN / "example_seg_dicom.nii.gz"))
    assert seg.shape == nifti_array(vol).shape
    np.testing.assert_allclose(seg.affine, nifti_affine(vol), atol=1e-4)
    labels, seg_lps_affine = volume_from_nifti_layout(np.asarray(seg.dataobj), seg.affine)
    np.testing.assert_allclose(seg_lps_affine, vol.affine, atol=1e-4)
    # The overlay puts each organ on the right voxels: per-label volume and mean HU as published.
    stats = json.loads((shared_data / CT_ABDOMEN / "example_seg_dicom_labels_and_stats.json").read_text())
    hu = vol.array.astype(np.float64)
    for entry in stats["labels"]:
        mask = labels == entry["label"]
        assert int(mask.sum()) == entry["voxels"], entry["name"]
        assert mask.sum() * vol.voxel_volume_ml == pytest.approx(entry["volume_ml"], abs=0.01), entry["name"]
        assert hu[mask].mean() == pytest.approx(entry["mean_hu"], abs=0.01), entry["name"]
    # Sensitivity: the segmentation one row off (or upside down) no longer gives the liver's HU.
    liver = next(e for e in stats["labels"] if e["name"] == "liver")
    for moved in (np.roll(labels, 3, axis=1), labels[:, ::-1, :]):
        assert abs(hu[moved == liver["label"]].mean() - liver["mean_hu"]) > 1.0


# ----------------------------------------------------------------------------- codecs and 12-bit

def test_all_nine_codec_files_decode_identically_and_equal_dcm2niix(shared_data: Path) -> None:
    root = shared_data / "codec_dcm_qa_ts"
    arrays: list[npt.NDArray[Any]] = []
    syntaxes: set[str] = set()
    for n in range(1, 10):
        h = read_header_path(root / "In" / f"{n}.dcm")
        syntaxes.add(h.transfer_syntax)
        sv = load_series([h])
        (vol,) = sv.volumes
        assert vol.shape == (35, 64, 64)  # the 6x6 mosaic unpacked into 35 slices
        ref = nib.load(str(root / "Ref" / f"{n}.nii"))
        np.testing.assert_array_equal(nifti_array(vol), nifti_data(root / "Ref" / f"{n}.nii"), err_msg=f"{n}.dcm")
        np.testing.assert_allclose(nifti_affine(vol), ref.affine, atol=1e-4, err_msg=f"{n}.dcm")
        arrays.append(vol.array)
    # 9 files from different encoders, 7 distinct syntaxes (two JPEG lossless, two JPEG-LS encoders).
    assert syntaxes == {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5",
                        "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"}, syntaxes
    for n, arr in enumerate(arrays[1:], start=2):
        np.testing.assert_array_equal(arr, arrays[0], err_msg=f"{n}.dcm decodes differently from 1.dcm")
    assert arrays[0].std() > 0


@pytest.mark.parametrize(("name", "ref", "lo", "hi"), [
    ("12bitUnsigned", 2, 0, 2908),
    ("12bitUnsigned_0x0F0F", 3, 0, 4095),
    ("12bitSigned_0x0F0F", 4, -2048, 2047),
])
def test_12bit_pixels_equal_dcm2niix(shared_data: Path, name: str, ref: int, lo: int, hi: int) -> None:
    root = shared_data / "pixel12bit_dcm_qa_12bit"
    (vol,) = load_dir_file(root / "In" / f"{name}.dcm").volumes
    expected = nifti_data(root / "Ref" / f"{ref}.nii")
    np.testing.assert_array_equal(nifti_array(vol), expected)
    np.testing.assert_allclose(nifti_affine(vol), nib.load(str(root / "Ref" / f"{ref}.nii")).affine, atol=1e-4)
    assert (int(vol.array.min()), int(vol.array.max())) == (lo, hi)


def load_dir_file(path: Path) -> SeriesVolumes:
    return load_series([read_header_path(path)])


# ----------------------------------------------------------------------------- patient position

def test_decubitus_positions_match_fingerprints_and_share_one_geometry(shared_data: Path) -> None:
    root = shared_data / DECUBITUS
    fingerprints = json.loads((root / FINGERPRINTS).read_text())["files"]
    by_position: dict[str, dict[str, Any]] = {}
    for sidecar in (root / "regenerated_ref").glob("t1_fl2d_sag_*.json"):
        by_position[json.loads(sidecar.read_text())["PatientPosition"]] = fingerprints[sidecar.stem + ".nii"]
    assert set(by_position) == {"HFS", "HFP", "HFDR", "HFDL"}
    affines = []
    for position, ref in by_position.items():
        sv = load_dir(root / "In" / position)
        (vol,) = sv.volumes
        header = sv.plan.volumes[0].planes[0].header
        assert header.patient_position == position
        assert position in sv.qa.get("orientation").detail  # type: ignore[union-attr]
        assert stored_sha256(vol) == ref["sha256_stored_voxels_fortran_order_le"], position
        np.testing.assert_allclose(nifti_affine(vol), np.array(ref["affine_sform"]), atol=1e-3)
        affines.append(vol.affine)
    for a in affines[1:]:
        np.testing.assert_array_equal(a, affines[0])  # PatientPosition never changes the geometry


# ----------------------------------------------------------------------------- CIP COPDGene CT

def test_cip_dicom_series_equals_the_nrrd(shared_data: Path, cip: SeriesVolumes) -> None:
    sitk = import_or_missing("SimpleITK", "pip install -e '.[test]' (bash scripts/setup.sh test)")
    image = sitk.ReadImage(str(shared_data / CIP_NRRD))
    expected = sitk.GetArrayFromImage(image)  # [z, y, x] = [slice, row, column]
    (vol,) = cip.volumes
    np.testing.assert_array_equal(vol.array, expected)
    # SimpleITK geometry is LPS: index (i, j, k) -> origin + D @ diag(spacing) @ (i, j, k).
    direction = np.array(image.GetDirection()).reshape(3, 3)
    itk_columns = direction * np.array(image.GetSpacing())
    np.testing.assert_allclose(vol.affine[:3, [2, 1, 0]], itk_columns, atol=1e-4)
    np.testing.assert_allclose(vol.affine[:3, 3], image.GetOrigin(), atol=1e-3)
    assert cip.qa.worst is Status.OK


# ----------------------------------------------------------------------------- dcm2niix live

def run_dcm2niix(dicom_dir: Path, out: Path) -> nib.Nifti1Image:
    exe = shutil.which("dcm2niix")
    if exe is None:
        missing("dcm2niix not on PATH", SYSTEM_TOOLS_FIX)
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([exe, "-z", "n", "-f", "out", "-o", str(out), str(dicom_dir)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    produced = sorted(out.glob("out*.nii"))
    assert len(produced) == 1, f"dcm2niix wrote {produced}: {proc.stdout}"
    return nib.load(str(produced[0]))


def assert_same_as_dcm2niix(volume: Volume, dicom_dir: Path, tmp_path: Path) -> None:
    theirs = run_dcm2niix(dicom_dir, tmp_path / "dcm2niix")
    ours = nib.load(str(write_nifti(volume, tmp_path / "ours.nii")))
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.asarray(ours.get_fdata()), np.asarray(theirs.get_fdata()))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3)


@pytest.mark.needs_tool
@pytest.mark.parametrize("enhanced", [False, True], ids=["single-frame", "enhanced-multiframe"])
def test_synthetic_series_equals_live_dcm2niix(tmp_path: Path, enhanced: bool) -> None:
    slices = synth.axial_stack(20, 4.0)
    folder = tmp_path / "dicom"
    s = synth.write_enhanced(folder, slices) if enhanced else synth.write_series(folder, slices)
    assert_same_as_dcm2niix(load_series(s.headers()).volumes[0], folder, tmp_path)


@pytest.mark.needs_tool
def test_cip_series_equals_live_dcm2niix(shared_data: Path, cip: SeriesVolumes, tmp_path: Path) -> None:
    assert_same_as_dcm2niix(cip.volumes[0], shared_data / CIP_DICOM, tmp_path)


# ----------------------------------------------------------------------------- worldcheck

@pytest.mark.parametrize("series", [f"{CT_ABDOMEN}/example_ct_dicom", CIP_DICOM, f"{DECUBITUS}/In/HFDL"],
                         ids=["ct-abdomen", "cip-ct64", "mr-decubitus-hfdl"])
def test_real_series_pass_worldcheck(shared_data: Path, tmp_path: Path, series: str) -> None:
    if not WORLDCHECK.is_file():
        missing(f"worldcheck tool not found at {WORLDCHECK}", DATA_FIX)
    folder = shared_data / series
    nii = write_nifti(load_dir(folder).volumes[0], tmp_path / "vol.nii")
    python = REPO / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python if python.exists() else sys.executable), str(WORLDCHECK), str(nii),
                           str(folder)], capture_output=True, text=True, timeout=300, check=False)
    match = re.search(r"slices=(\d+) worst_corr=(-?[\d.]+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert proc.returncode == 0 and float(match.group(2)) >= 0.95, proc.stdout
    assert int(match.group(1)) == len([p for p in folder.rglob("*") if p.is_file()])
