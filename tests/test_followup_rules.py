"""Follow-up reading rules: lesion matching and change thresholds, doubling time, guideline tables, JSON round trip.

The guideline expectations are the rows of the published tables (Fleischner
Society 2017, MacMahon et al., Radiology 2017; ACR Lung-RADS v2022), one test
row each, so a wrong band edge or a swapped row fails here.
"""

from __future__ import annotations

import json
import math
from datetime import date

import numpy as np
import pytest

from inference.findings.model import Lesion
from inference.followup.guidelines import fleischner, lung_rads, lung_rads_category, recommend
from inference.followup.matching import doubling_time_days, match_lesions
from inference.followup.model import (
    ChangeStatus,
    Comparison,
    ComparisonFormatError,
    LesionChange,
    LesionSnapshot,
    Recommendation,
    RegistrationResult,
)


def _lesion(
    number: int,
    center: tuple[float, float, float],
    diameter: float,
    *,
    volume_ml: float | None = None,
    mean: float | None = 30.0,
    name: str = "lung_nodule",
) -> Lesion:
    vol = math.pi * diameter**3 / 6000.0 if volume_ml is None else volume_ml
    return Lesion(
        label=5,
        name=name,
        number=number,
        voxels=100,
        volume_ml=vol,
        mean=mean,
        units="HU",
        centroid_index=(0.0, 0.0, 0.0),
        centroid_lps=center,
        long_axis_mm=diameter,
        short_axis_mm=diameter,
        long_axis_3d_mm=diameter,
        short_axis_3d_mm=diameter,
        axial_slice=0,
        side="right",
        series_number=2,
        instance_number=10 + number,
    )


def _registration(matrix: np.ndarray | None = None, passed: bool = True) -> RegistrationResult:
    return RegistrationResult.from_array(
        np.eye(4) if matrix is None else matrix,
        kind="rigid",
        metric_name="Mattes mutual information",
        metric_value=-0.9,
        quality_name="ncc",
        quality_value=0.9 if passed else 0.2,
        quality_threshold=0.8,
        passed=passed,
        reason="" if passed else "alignment check failed",
    )


def _shift(dx: float, dy: float, dz: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (dx, dy, dz)
    return m


# --- matching and change ---------------------------------------------------------------------------------


def test_lesions_are_matched_through_the_transform_not_by_raw_position() -> None:
    # the prior was scanned 30 mm further along z: raw positions are far apart, the transform brings them together
    current = [_lesion(1, (10.0, 0.0, 0.0), 8.0), _lesion(2, (60.0, 0.0, 0.0), 8.0)]
    prior = [_lesion(1, (60.0, 0.0, 30.0), 8.0), _lesion(2, (10.0, 0.0, 30.0), 8.0)]
    changes = match_lesions(current, prior, _registration(_shift(0, 0, 30)), 365)
    assert [(c.current_id, c.prior_id) for c in changes] == [(1, 2), (2, 1)]
    assert all(c.status is ChangeStatus.STABLE for c in changes)
    assert all(c.distance_mm == pytest.approx(0.0) for c in changes)
    # without the transform the same lesions are too far apart: new ones and resolved ones
    unaligned = match_lesions(current, prior, _registration(), 365)
    assert sorted(c.status.value for c in unaligned) == ["new", "new", "resolved", "resolved"]


def test_matching_is_one_to_one_and_keeps_the_closest_pair() -> None:
    current = [_lesion(1, (0.0, 0.0, 0.0), 6.0), _lesion(2, (7.0, 0.0, 0.0), 6.0)]
    prior = [_lesion(1, (6.0, 0.0, 0.0), 6.0)]
    changes = match_lesions(current, prior, _registration(), 100)
    by_id = {c.current_id: c for c in changes}
    assert by_id[2].prior_id == 1 and by_id[2].distance_mm == pytest.approx(1.0)
    assert by_id[1].status is ChangeStatus.NEW and by_id[1].prior is None
    assert by_id[1].doubling_time_days is None and "new" in by_id[1].doubling_time_reason


def test_growth_threshold_is_more_than_1_5_mm_mean_diameter_or_25_percent_volume() -> None:
    reg = _registration()
    prior = [_lesion(1, (0.0, 0.0, 0.0), 8.0, volume_ml=0.268)]
    # +1.4 mm with +10 % volume: stable
    c = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 9.4, volume_ml=0.2948)], prior, reg, 180)[0]
    assert c.status is ChangeStatus.STABLE and c.doubling_time_days is None
    # +1.6 mm: grown by diameter even with only +10 % volume
    c = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 9.6, volume_ml=0.2948)], prior, reg, 180)[0]
    assert c.status is ChangeStatus.GROWN
    assert c.diameter_change_mm == pytest.approx(1.6)
    # +1.0 mm but +30 % volume: grown by volume
    c = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 9.0, volume_ml=0.268 * 1.3)], prior, reg, 180)[0]
    assert c.status is ChangeStatus.GROWN and c.volume_change_percent == pytest.approx(30.0)
    # -2 mm: shrunk, no doubling time
    c = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 6.0, volume_ml=0.113)], prior, reg, 180)[0]
    assert c.status is ChangeStatus.SHRUNK and c.doubling_time_days is None
    assert "shrunk" in c.doubling_time_reason


def test_doubling_time_follows_the_formula() -> None:
    # a volume that doubles in a year doubles in 365 days; one that grows 8-fold in a year in a third of it
    assert doubling_time_days(100.0, 200.0, 365)[0] == pytest.approx(365.0)
    assert doubling_time_days(100.0, 800.0, 365)[0] == pytest.approx(365.0 / 3.0)
    vdt, why = doubling_time_days(100.0, 90.0, 365)
    assert vdt is None and "not growing" in why
    assert doubling_time_days(100.0, 200.0, 0)[0] is None


def test_resolved_lesions_follow_the_current_ones() -> None:
    changes = match_lesions(
        [_lesion(1, (0.0, 0.0, 0.0), 6.0)],
        [_lesion(1, (0.0, 0.0, 0.0), 6.0), _lesion(2, (80.0, 0.0, 0.0), 5.0)],
        _registration(),
        365,
    )
    assert [c.status for c in changes] == [ChangeStatus.STABLE, ChangeStatus.RESOLVED]
    assert changes[1].current is None and changes[1].prior_id == 2 and changes[1].diameter_then_mm == 5.0


# --- guidelines ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("diameters", "high_risk", "expected", "row"),
    [
        ([5.0], False, "No routine follow-up.", "single, <6 mm, low risk"),
        ([5.0], True, "Optional CT at 12 months.", "single, <6 mm, high risk"),
        ([7.0], False, "CT at 6-12 months, then consider CT at 18-24 months.", "single, 6-8 mm, low risk"),
        ([7.0], True, "CT at 6-12 months, then CT at 18-24 months.", "single, 6-8 mm, high risk"),
        ([9.0], False, "Consider CT at 3 months, PET/CT, or tissue sampling.", "single, >8 mm, low risk"),
        ([9.0], True, "Consider CT at 3 months, PET/CT, or tissue sampling.", "single, >8 mm, high risk"),
        ([5.0, 4.0], False, "No routine follow-up.", "multiple, <6 mm, low risk"),
        ([5.0, 4.0], True, "Optional CT at 12 months.", "multiple, <6 mm, high risk"),
        ([7.0, 4.0], False, "CT at 3-6 months, then consider CT at 18-24 months.", "multiple, 6-8 mm, low risk"),
        ([7.0, 4.0], True, "CT at 3-6 months, then at 18-24 months.", "multiple, 6-8 mm, high risk"),
        ([12.0, 4.0], False, "CT at 3-6 months, then consider CT at 18-24 months.", "multiple, >8 mm, low risk"),
    ],
)
def test_fleischner_2017_solid_nodule_table(diameters: list[float], high_risk: bool, expected: str, row: str) -> None:
    lesions = [_lesion(i + 1, (30.0 * i, 0.0, 0.0), d) for i, d in enumerate(diameters)]
    rec = fleischner(lesions, high_risk=high_risk).recommendation
    assert rec is not None
    assert rec.text == expected
    assert rec.rule == f"Fleischner 2017: solid nodule, {row}"
    assert rec.assumptions == ()


def test_fleischner_states_the_risk_it_assumed() -> None:
    rec = fleischner([_lesion(1, (0.0, 0.0, 0.0), 7.0)]).recommendation
    assert rec is not None and "high risk" in rec.rule
    assert any("risk not stated" in a for a in rec.assumptions)


def test_fleischner_growing_nodule_and_two_year_stability() -> None:
    reg = _registration()
    grown = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 9.0)], [_lesion(1, (0.0, 0.0, 0.0), 6.0)], reg, 365)
    rec = fleischner([_lesion(1, (0.0, 0.0, 0.0), 9.0)], grown, interval_days=365).recommendation
    assert rec is not None and rec.rule == "Fleischner 2017: growing solid nodule"
    assert "6.0 mm to 9.0 mm" in rec.basis
    stable = match_lesions([_lesion(1, (0.0, 0.0, 0.0), 7.0)], [_lesion(1, (0.0, 0.0, 0.0), 7.0)], reg, 800)
    rec = fleischner([_lesion(1, (0.0, 0.0, 0.0), 7.0)], stable, interval_days=800).recommendation
    assert rec is not None and rec.rule == "Fleischner 2017: solid nodule stable for 2 years"
    # one year of stability is not two: the size table applies
    rec = fleischner([_lesion(1, (0.0, 0.0, 0.0), 7.0)], stable, interval_days=365, high_risk=False).recommendation
    assert rec is not None and "6-8 mm" in rec.rule


def test_no_recommendation_the_numbers_do_not_support() -> None:
    out = fleischner([])
    assert out.recommendation is None and "no lung nodule" in out.reason
    subsolid = [_lesion(1, (0.0, 0.0, 0.0), 12.0, mean=-650.0)]
    out = recommend(subsolid)
    assert out.recommendation is None and "solid" in out.reason
    out = recommend([_lesion(1, (0.0, 0.0, 0.0), 12.0, mean=None)], screening=True)
    assert out.recommendation is None
    # a lesion that is not a lung nodule (e.g. a liver lesion) is outside these guidelines
    assert fleischner([_lesion(1, (0.0, 0.0, 0.0), 20.0, name="liver_lesion")]).recommendation is None


@pytest.mark.parametrize(
    ("size", "status", "category"),
    [
        (5.9, None, "2"),
        (6.0, None, "3"),
        (7.9, None, "3"),
        (8.0, None, "4A"),
        (14.9, None, "4A"),
        (15.0, None, "4B"),
        (3.9, ChangeStatus.NEW, "2"),
        (4.0, ChangeStatus.NEW, "3"),
        (6.0, ChangeStatus.NEW, "4A"),
        (8.0, ChangeStatus.NEW, "4B"),
        (7.9, ChangeStatus.GROWN, "4A"),
        (8.0, ChangeStatus.GROWN, "4B"),
        (20.0, ChangeStatus.STABLE, "2"),
    ],
)
def test_lung_rads_v2022_solid_nodule_categories(size: float, status: ChangeStatus | None, category: str) -> None:
    assert lung_rads_category(size, status) == category


def test_lung_rads_exam_category_is_the_most_suspicious_nodule() -> None:
    lesions = [_lesion(1, (0.0, 0.0, 0.0), 5.0), _lesion(2, (40.0, 0.0, 0.0), 10.0)]
    rec = lung_rads(lesions).recommendation
    assert rec is not None and rec.category == "4A" and rec.rule == "Lung-RADS v2022 category 4A"
    assert rec.text.startswith("Low-dose CT in 3 months")
    none = lung_rads([]).recommendation
    assert none is not None and none.category == "1"
    assert recommend(lesions, screening=True).recommendation == rec


# --- records ---------------------------------------------------------------------------------------------


def test_comparison_round_trips_through_json() -> None:
    m = _shift(3.0, -2.0, 5.0)
    changes = match_lesions(
        [_lesion(1, (0.0, 0.0, 0.0), 9.0), _lesion(2, (50.0, 0.0, 0.0), 6.0)],
        [_lesion(1, (3.0, -2.0, 5.0), 6.0)],
        _registration(m),
        366,
    )
    comparison = Comparison(
        prior_study_date=date(2023, 3, 15),
        prior_study_uid="1.2.3",
        prior_study_description="CT CHEST",
        prior_series_number=2,
        prior_series_uid="1.2.3.4",
        current_study_date=date(2024, 3, 15),
        registration=_registration(m),
        changes=changes,
        recommendation=Recommendation(
            text="x", rule="Fleischner 2017: growing solid nodule", guideline="Fleischner 2017", assumptions=("a",)
        ),
    )
    data = json.loads(json.dumps(comparison.to_dict()))
    assert Comparison.from_dict(data) == comparison
    assert data["interval_days"] == 366
    lesion = data["lesions"][0]
    assert lesion["status"] == "grown" and lesion["current"]["centroid_lps"] == [0.0, 0.0, 0.0]
    assert set(lesion["current"]) >= {"centroid_lps", "long_axis_mm", "volume_ml", "series_number", "instance_number"}
    assert data["lesions"][1]["prior"] is None and data["lesions"][1]["doubling_time_days"] is None
    with pytest.raises(ComparisonFormatError):
        Comparison.from_dict({"prior": {}})


def test_registration_maps_points_both_ways() -> None:
    reg = _registration(_shift(1.0, 2.0, 3.0))
    assert reg.to_prior([0.0, 0.0, 0.0]).tolist() == [1.0, 2.0, 3.0]
    assert reg.to_current([1.0, 2.0, 3.0]).tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert reg.translation_mm == pytest.approx(math.sqrt(14.0)) and reg.rotation_deg == pytest.approx(0.0)
    snap = LesionSnapshot.from_lesion(_lesion(3, (1.0, 2.0, 3.0), 8.0))
    change = LesionChange(status=ChangeStatus.RESOLVED, current=None, prior=snap)
    assert change.volume_then_mm3 == pytest.approx(snap.volume_ml * 1000.0) and change.volume_now_mm3 is None
