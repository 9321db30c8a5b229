"""Follow-up reading end to end: registration of a real CT, the demo pair's known change, ``report --prior``.

The registration test moves a real chest CT (COPDGene, CIP test data) by a
known rigid transform with SimpleITK's own resampler and checks the transform
found at lung and bone landmarks. The demo pair (``workstation.demo.prior``)
is imported like a user's two studies and reported through the command line;
the comparison written to ``findings.json`` is checked against the pair's truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from inference.cancel import CancelledError, CancelToken
from inference.followup.registration import register
from inference.volume import Volume
from workstation.cli import main
from workstation.demo import ensure_demo_study, load_truth
from workstation.demo.phantom import PRIOR_FOLDER_NAME
from workstation.demo.prior import FollowupTruth, load_followup_truth
from workstation.dicomio.headers import read_header_path
from workstation.dicomio.volume_builder import load_series

CIP = Path("cip_copdgene_10002K_ct64") / "Testing" / "Data" / "Input"
ANGLES_DEG = (4.0, -3.0, 5.0)
SHIFT_MM = (8.0, -6.0, 10.0)


def _load(folder: Path) -> Volume:
    return load_series([read_header_path(p) for p in sorted(folder.iterdir()) if p.is_file()]).volumes[0]


@pytest.fixture(scope="module")
def chest_pair(shared_data: Path) -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """The real CT, a copy moved by a known rigid transform, the true current->prior matrix, the lung mask."""
    import SimpleITK as sitk  # noqa: N813 - the library's own convention

    current = _load(shared_data / CIP / "ct-64Dicom")
    image = sitk.ReadImage(str(shared_data / CIP / "ct-64.nrrd"))  # the same scan, read by SimpleITK itself
    assert np.allclose(image.GetOrigin(), current.affine[:3, 3], atol=1e-3)
    center = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])
    moved_by = sitk.Euler3DTransform(center, *(math.radians(a) for a in ANGLES_DEG), SHIFT_MM)
    # Resample: prior(p) = current(T(p)), so T maps prior points to current points
    prior_image = sitk.Resample(image, image, moved_by, sitk.sitkLinear, -1024.0, sitk.sitkInt16)
    prior = Volume(sitk.GetArrayFromImage(prior_image), current.affine, modality="CT", units="HU")
    m = np.eye(4)
    m[:3, :3] = np.asarray(moved_by.GetMatrix()).reshape(3, 3)
    m[:3, 3] = np.asarray(moved_by.GetTranslation()) + np.asarray(center) - m[:3, :3] @ np.asarray(center)
    lungs = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / CIP / "wholeLung-64.nrrd"))) > 0
    return current, prior, np.linalg.inv(m), lungs


def _residuals(reg_to_prior: np.ndarray, truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    want = points @ truth[:3, :3].T + truth[:3, 3]
    return np.asarray(np.linalg.norm(reg_to_prior - want, axis=1))


def test_real_chest_ct_registers_to_a_moved_copy_within_1_mm_at_lung_and_bone(
    chest_pair: tuple[Volume, Volume, np.ndarray, np.ndarray],
) -> None:
    current, prior, truth, lungs = chest_pair
    seen: list[tuple[float, str]] = []
    result = register(current, prior, progress=lambda f, s: seen.append((f, s)))
    assert result.passed, result.reason
    assert result.kind == "rigid"
    rng = np.random.default_rng(0)
    # landmarks: CIP's lung mask, and bone (> 300 HU) away from the edge of the field, where the moved copy is cut
    edge = np.zeros(current.shape, dtype=bool)
    edge[8:-8, 8:-8, 8:-8] = True
    for name, mask in (("lung", lungs & edge), ("bone", (current.array > 300) & edge)):
        idx = np.argwhere(mask)
        assert len(idx) > 50, name
        points = current.index_to_lps(idx[rng.choice(len(idx), 200, replace=False)])
        res = _residuals(result.to_prior(points), truth, points)
        assert res.max() <= 1.0, f"{name}: residual up to {res.max():.2f} mm"
    assert result.rotation_deg == pytest.approx(math.degrees(math.acos((np.trace(truth[:3, :3]) - 1) / 2)), abs=0.5)
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert any("rigid registration" in s for _, s in seen)


@pytest.mark.parametrize(("first", "last"), [(25, 55), (0, 40)])
def test_a_prior_with_a_shorter_field_of_view_registers_and_passes_its_check(
    chest_pair: tuple[Volume, Volume, np.ndarray, np.ndarray], first: int, last: int,
) -> None:
    """Follow-ups rarely cover the same length (a chest-only prior, a current that goes lower). The prior
    here keeps slices ``first``..``last`` of 79 and has other noise (another dose); the check scored 0 and
    refused the comparison when under half of the current's body lay in the prior's field."""
    current, prior, truth, lungs = chest_pair
    rng = np.random.default_rng(2)
    part = prior.array[first:last].astype(np.float32) + rng.normal(0.0, 25.0, size=prior.array[first:last].shape)
    affine = prior.affine.copy()
    affine[:3, 3] += prior.affine[:3, 0] * first
    short = Volume(np.clip(part, -1024, 3071).astype(np.int16), affine, modality="CT", units="HU")
    result = register(current, short)
    assert result.passed, result.reason
    edge = np.zeros(current.shape, dtype=bool)
    edge[8:-8, 8:-8, 8:-8] = True
    idx = np.argwhere(lungs & edge)
    points = current.index_to_lps(idx[rng.choice(len(idx), 300, replace=False)])
    slice_in_prior = short.lps_to_index(points @ truth[:3, :3].T + truth[:3, 3])[:, 0]
    covered = points[(slice_in_prior >= 0) & (slice_in_prior <= short.shape[0] - 1)]
    assert len(covered) > 50
    assert _residuals(result.to_prior(covered), truth, covered).max() <= 1.0


def test_a_prior_that_shares_too_little_anatomy_is_refused_with_that_reason(
    chest_pair: tuple[Volume, Volume, np.ndarray, np.ndarray],
) -> None:
    """Two slices of the prior: no alignment can be checked on that; the reason names the overlap."""
    current, prior, _, _ = chest_pair
    affine = prior.affine.copy()
    affine[:3, 3] += prior.affine[:3, 0] * 40
    sliver = Volume(np.ascontiguousarray(prior.array[40:42]), affine, modality="CT", units="HU")
    result = register(current, sliver)
    assert not result.passed
    assert "overlap" in result.reason


def test_a_registration_that_fails_its_check_says_so(chest_pair: tuple[Volume, Volume, np.ndarray, np.ndarray]) -> None:
    current, _, _, _ = chest_pair
    noise = np.random.default_rng(1).integers(-1000, 1000, size=current.shape).astype(np.int16)
    result = register(current, Volume(noise, current.affine, modality="CT"))
    assert not result.passed
    assert "alignment check failed" in result.reason and result.quality_value < result.quality_threshold


def test_registration_stops_when_cancelled(chest_pair: tuple[Volume, Volume, np.ndarray, np.ndarray]) -> None:
    current, prior, _, _ = chest_pair
    token = CancelToken()
    stages: list[str] = []

    def progress(fraction: float, stage: str) -> None:
        stages.append(stage)
        if "rigid registration" in stage:
            token.cancel()

    with pytest.raises(CancelledError):
        register(current, prior, progress=progress, cancel=token)
    assert not any("affine" in s or "done" in s for s in stages)


# --- the demo pair ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, FollowupTruth]:
    """The demo as the application makes it (current study with its prior inside), imported into an index."""
    root = tmp_path_factory.mktemp("followup")
    study = ensure_demo_study(root / "cache")
    db = root / "index.sqlite"
    assert main(["--db", str(db), "import", str(study)]) == 0
    return study, db, load_followup_truth(study / PRIOR_FOLDER_NAME)


def test_the_demo_prior_is_an_earlier_study_of_the_same_patient(
    demo_pair: tuple[Path, Path, FollowupTruth], capsys: pytest.CaptureFixture[str]
) -> None:
    study, db, truth = demo_pair
    capsys.readouterr()
    assert main(["--db", str(db), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["studies"]
    assert sorted(s["date"] for s in listed) == ["20230315", "20240315"]
    assert len({s["patient"]["id"] for s in listed}) == 1
    assert truth.interval_days == 366
    assert [n.status for n in truth.nodules] == ["grown", "new", "stable", "stable"]
    # the current study's own truth is the demo's, unchanged by the prior
    assert [n.diameter_mm for n in load_truth(study).nodules] == [9.0, 6.0, 14.0, 22.0]
    grown = truth.nodules[0]
    assert grown.diameter_then_mm == 6.0 and grown.doubling_time_days is not None


def _comparison_of(out: Path) -> dict[str, object]:
    data = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    comparison = data["comparison"]
    assert isinstance(comparison, dict)
    return comparison


def test_report_finds_the_prior_and_measures_the_known_change(
    demo_pair: tuple[Path, Path, FollowupTruth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, db, truth = demo_pair
    out = tmp_path / "report"
    code = main(["--db", str(db), "report", "study:2", "--out", str(out), "--device", "cpu"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "comparison with prior of 2023-03-15" in stdout
    comparison = _comparison_of(out)
    assert comparison["prior"]["study_date"] == "2023-03-15" and comparison["interval_days"] == 366  # type: ignore[index]
    reg = comparison["registration"]
    assert reg["passed"] is True  # type: ignore[index]
    found = np.asarray(reg["matrix_current_to_prior_lps"])  # type: ignore[index]
    want = np.asarray(truth.current_to_prior)
    for nodule in truth.nodules:  # the transform is right where the nodules are
        p = np.asarray(nodule.center_current_lps_mm)
        assert np.linalg.norm(found[:3, :3] @ p + found[:3, 3] - (want[:3, :3] @ p + want[:3, 3])) <= 1.0
    lesions = comparison["lesions"]
    assert isinstance(lesions, list) and len(lesions) == len(truth.nodules)
    for nodule in truth.nodules:
        here = np.asarray(nodule.center_current_lps_mm)
        change = min(lesions, key=lambda c: np.linalg.norm(np.asarray(c["current"]["centroid_lps"]) - here))
        assert np.linalg.norm(np.asarray(change["current"]["centroid_lps"]) - here) <= 2.0
        assert change["status"] == nodule.status, nodule
        assert abs(change["current"]["mean_diameter_mm"] - nodule.diameter_now_mm) <= 1.0
        if nodule.diameter_then_mm is None:
            assert change["prior"] is None
        else:
            assert abs(change["prior"]["mean_diameter_mm"] - nodule.diameter_then_mm) <= 1.0
        if nodule.doubling_time_days is None:
            assert change["doubling_time_days"] is None
        else:
            assert change["doubling_time_days"] == pytest.approx(nodule.doubling_time_days, rel=0.10)
    rec = comparison["recommendation"]
    assert rec["rule"] == "Fleischner 2017: growing solid nodule"  # type: ignore[index]


def test_report_with_an_explicit_prior_and_without_one(
    demo_pair: tuple[Path, Path, FollowupTruth], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, db, _ = demo_pair
    out = tmp_path / "explicit"
    assert (
        main(
            ["--db", str(db), "report", "study:2", "--prior", "study:1", "--out", str(out), "--device", "cpu", "--json"]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["comparison"] == _comparison_of(out)
    assert [c["status"] for c in printed["comparison"]["lesions"]].count("grown") == 1
    none = tmp_path / "none"
    assert main(["--db", str(db), "report", "study:2", "--no-prior", "--out", str(none), "--device", "cpu"]) == 0
    assert "comparison" not in json.loads((none / "findings.json").read_text(encoding="utf-8"))
    # the prior itself has no earlier study: its report makes no comparison
    early = tmp_path / "prior_report"
    assert main(["--db", str(db), "report", "study:1", "--out", str(early), "--device", "cpu"]) == 0
    assert "comparison" not in json.loads((early / "findings.json").read_text(encoding="utf-8"))
