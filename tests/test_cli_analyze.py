"""``workstation analyze`` and ``workstation models`` as a user runs them: outputs, progress, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests import bundle_factory as bf
from workstation.cli import main
from workstation.demo import generate_demo_study, load_truth
from workstation.dicomio.headers import read_header_path
from workstation.dicomio.nifti import nifti_affine
from workstation.dicomio.volume_builder import load_series


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(60, 128, 128))
    return folder


def test_analyze_a_folder_writes_label_map_findings_and_montage(small_demo: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, "analyze", str(small_demo), "--device", "cpu", "--out", str(out_dir))
    assert code == 0, err
    assert "%]" in err or "%]" in out  # progress shown on the terminal
    # label map on the source grid: same shape and affine as the series converted on its own
    img = nib.load(str(out_dir / "labels.nii.gz"))
    files = sorted(p for p in small_demo.rglob("*.dcm"))
    (volume,) = load_series([read_header_path(p) for p in files]).volumes
    assert img.shape == volume.shape[::-1]
    np.testing.assert_allclose(img.affine, nifti_affine(volume), atol=1e-4)
    findings = json.loads((out_dir / "findings.json").read_text())
    assert findings["status"].startswith("AI draft")
    assert findings["provenance"]["model_id"] == "builtin.ct"
    assert findings["provenance"]["device"].startswith("cpu")
    names = {lab["name"] for lab in findings["labels"]}
    assert {"lung_right", "lung_left", "lung_nodule"} <= names
    # the lung volume written agrees with the phantom's truth
    truth = load_truth(small_demo)
    total = next(m for m in findings["findings"]["measurements"] if m["name"] == "total lung volume")
    assert total["value"] == pytest.approx(truth.total_lung_volume_ml, rel=0.05)
    montage = Image.open(out_dir / "montage.png")
    assert montage.width >= 600 and montage.height >= 300
    # the red draft banner is drawn in the top strip
    strip = np.asarray(montage.convert("RGB"))[:24]
    assert ((strip[..., 0] > 200) & (strip[..., 1] < 120)).sum() > 50


def test_analyze_errors_are_clear_and_exit_non_zero(small_demo: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "o"))
    assert code == 2 and "missing" in err
    code, _, err = _run(capsys, "analyze", str(small_demo), "--model", "no.such.model", "--out", str(tmp_path / "o"))
    assert code == 2 and "unknown model 'no.such.model'" in err
    assert not (tmp_path / "o" / "findings.json").exists()


def test_models_install_list_remove_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    monkeypatch.setenv("WORKSTATION_MODELS_DIR", str(models))
    from workstation.settings import get_settings

    get_settings.cache_clear()
    src = bf.make_threshold_bundle(tmp_path / "build", "thr")
    zip_path = bf.zip_bundle(src, tmp_path / "thr.zip")
    code, out, err = _run(capsys, "models", "install", str(zip_path))
    assert code == 0, err
    code, out, _ = _run(capsys, "models", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert "builtin.ct" in rows
    installed = [r for r in rows.values() if r["source"] != "built-in"]
    assert len(installed) == 1 and installed[0]["sha256"] and installed[0]["problem"] is None
    code, _, err = _run(capsys, "models", "install", str(zip_path))
    assert code == 2 and "already installed" in err
    code, _, _ = _run(capsys, "models", "remove", installed[0]["id"])
    assert code == 0
    code, out, _ = _run(capsys, "models", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == ["builtin.ct"]
