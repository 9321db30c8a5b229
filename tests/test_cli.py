"""The ``workstation`` command as a user runs it: import, list, qa, convert, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests import dicom_factory as f
from workstation.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_json_lists_studies_series_kinds_and_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, _ = f.ct_series(tmp_path, 4, series_number=2)
    f.text_sr(tmp_path / "sr.dcm", study_uid=study, series_uid=generate_uid(), text="Prior report")
    (tmp_path / "junk.dat").write_bytes(b"\x00junk" * 50)
    code, out, _ = _run(capsys, "import", str(tmp_path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["added"] == 5
    (st,) = data["studies"]
    kinds = {s["kind"]: s for s in st["series"]}
    assert kinds["volume"]["instances"] == 4 and kinds["volume"]["modality"] == "CT"
    assert kinds["volume"]["shape"] == [4, 16, 16]
    assert {q["check"] for q in kinds["volume"]["qa"]} >= {"spacing", "tilt", "orientation", "missing slices"}
    assert kinds["document"]["reason"] == "sr"
    assert data["rejected"] == [{"file": str(tmp_path / "junk.dat"), "reason": "not a DICOM file"}]
    code, out, _ = _run(capsys, "list", "--json")
    listed = json.loads(out)
    assert listed["counts"]["instances"] == 5 and len(listed["studies"]) == 1


def test_convert_real_ct_matches_dcm2niix_affine(shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ref = json.loads((shared_data / "ct_abdomen_totalseg" / "regenerated_ref" /
                      "dcm2niix_v1.0.20260724_fingerprints.json").read_text())["files"]["ct.nii"]
    _run(capsys, "import", str(shared_data / "ct_abdomen_totalseg" / "example_ct_dicom"))
    code, out, _ = _run(capsys, "list", "--json")
    series_id = json.loads(out)["studies"][0]["series"][0]["id"]
    out_path = tmp_path / "ct.nii.gz"
    code, out, err = _run(capsys, "convert", str(series_id), "--out", str(out_path))
    assert code == 0, err
    img = nib.load(out_path)
    assert img.shape == tuple(ref["shape"])
    np.testing.assert_allclose(img.affine, np.array(ref["affine_sform"]), atol=1e-4)
    data = np.asanyarray(img.dataobj)
    assert data.sum(axis=(0, 1)).tolist() == ref["scaled_per_slice_sum"]


def test_qa_and_refused_nonuniform_spacing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study, series = generate_uid(), generate_uid()
    for k, z in enumerate([0.0, 4.0, 11.0, 15.0]):
        f.ct_slice(tmp_path / f"s{k}.dcm", study_uid=study, series_uid=series, z=z, instance_number=k + 1)
    code, out, _ = _run(capsys, "qa", str(tmp_path), "--json")
    assert code == 0
    qa = {q["check"]: q for q in json.loads(out)["qa"]}
    assert qa["spacing"]["status"] == "warning" and "non-uniform" in qa["spacing"]["detail"]
    assert "resampled" in qa["spacing"]["action"]
    code, _, err = _run(capsys, "convert", str(tmp_path), "--out", str(tmp_path / "x.nii.gz"), "--refuse-nonuniform")
    assert code == 2
    assert str(tmp_path) in err and "non-uniform" in err
    code, out, err = _run(capsys, "convert", str(tmp_path), "--out", str(tmp_path / "x.nii.gz"))
    assert code == 0 and "resampled" in out


def test_unknown_series_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "convert", "12345", "--out", str(tmp_path / "x.nii"))
    assert code == 2
    assert err.startswith("workstation: 12345: no such file, folder or indexed series")


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "workstation", "--help"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0
    for sub in ("import", "list", "convert", "qa", "demo"):
        assert sub in proc.stdout
