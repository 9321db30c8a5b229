"""Side-by-side reading without Qt: a current and a prior viewer model linked through a known rigid transform.

The pair is synthetic with a transform chosen here (a 6 degree turn about the
table axis plus a shift) and two different grids; every expected voxel is
worked out from the grids and the transform in this file, not read back from
the link under test.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from inference.followup.model import RegistrationResult
from inference.labels import Label, LabelTable
from inference.volume import Volume
from workstation.viewing import CursorMoved, ViewerModel, WindowLevelChanged
from workstation.viewing.linking import ViewerLink

CURRENT_GRID = ((36, 64, 60), (2.5, 0.8, 0.75), (-22.0, -25.0, -40.0))  # shape, (slice, row, col) mm, origin LPS
PRIOR_GRID = ((44, 70, 66), (2.0, 0.7, 0.9), (-35.0, -30.0, -30.0))
TURN_DEG, SHIFT_MM = 6.0, (4.0, -3.0, 5.0)


def grid_affine(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> npt.NDArray[np.float64]:
    """Axial grid: slices towards the head (+z), rows towards the back (+y), columns to the left (+x)."""
    a = np.eye(4)
    a[:3, 0] = (0.0, 0.0, spacing[0])
    a[:3, 1] = (0.0, spacing[1], 0.0)
    a[:3, 2] = (spacing[2], 0.0, 0.0)
    a[:3, 3] = origin
    return a


def volume(grid: tuple[tuple[int, int, int], tuple[float, float, float], tuple[float, float, float]]) -> Volume:
    shape, spacing, origin = grid
    k, j, i = np.indices(shape)
    return Volume((k * 100 + j + i).astype(np.int16), grid_affine(spacing, origin), modality="CT", units="HU")


def current_to_prior() -> npt.NDArray[np.float64]:
    t = math.radians(TURN_DEG)
    m = np.eye(4)
    m[:3, :3] = [[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0], [0.0, 0.0, 1.0]]
    m[:3, 3] = SHIFT_MM
    return m


def registration(passed: bool = True) -> RegistrationResult:
    return RegistrationResult.from_array(
        current_to_prior(), kind="rigid", metric_name="Mattes mutual information", metric_value=-0.8,
        quality_name="normalised cross-correlation", quality_value=0.9 if passed else 0.1, quality_threshold=0.5,
        passed=passed, reason="" if passed else "normalised cross-correlation 0.10 is below 0.5")


def expected_prior_index(current_index: tuple[int, int, int]) -> npt.NDArray[np.float64]:
    """Continuous prior voxel showing the anatomy at a current voxel, from the two grids and the transform."""
    p_current = grid_affine(*CURRENT_GRID[1:]) @ np.array([*current_index, 1.0])
    p_prior = current_to_prior() @ p_current
    return np.asarray((np.linalg.inv(grid_affine(*PRIOR_GRID[1:])) @ p_prior)[:3], dtype=np.float64)


def expected_current_index(prior_index: tuple[int, int, int]) -> npt.NDArray[np.float64]:
    p_prior = grid_affine(*PRIOR_GRID[1:]) @ np.array([*prior_index, 1.0])
    p_current = np.linalg.inv(current_to_prior()) @ p_prior
    return np.asarray((np.linalg.inv(grid_affine(*CURRENT_GRID[1:])) @ p_current)[:3], dtype=np.float64)


Pair = tuple[ViewerModel, ViewerModel, list[object], list[object]]


@pytest.fixture
def pair() -> Pair:
    current, prior = ViewerModel(), ViewerModel()
    current.set_volume(volume(CURRENT_GRID))
    prior.set_volume(volume(PRIOR_GRID))
    seen_current: list[object] = []
    seen_prior: list[object] = []
    current.subscribe(seen_current.append)
    prior.subscribe(seen_prior.append)
    return current, prior, seen_current, seen_prior


def test_moving_the_current_cursor_lands_the_prior_cursor_on_the_same_anatomy(pair: Pair) -> None:
    current, prior, _seen_current, _seen_prior = pair
    link = ViewerLink(current, prior, registration())
    for target in ((20, 30, 25), (5, 50, 10), (30, 12, 44)):
        current.set_cursor_index(target)
        want = expected_prior_index(target)
        assert np.all(np.abs(np.array(prior.current_index()) - want) <= 0.5 + 1e-9), (target, want)
    link.close()


def test_scrolling_the_prior_moves_the_current_and_no_change_bounces_back(pair: Pair) -> None:
    current, prior, seen_current, seen_prior = pair
    ViewerLink(current, prior, registration())
    current.set_cursor_index((18, 32, 30))
    seen_current.clear()
    seen_prior.clear()
    before = prior.current_index()
    prior.step_slice("axial", 3)  # the reader scrolls three images in the prior
    assert prior.current_index()[0] != before[0]
    want = expected_current_index(prior.current_index())
    assert np.all(np.abs(np.array(current.current_index()) - want) <= 0.5 + 1e-9)
    # one move each: the current's mapped move was not mirrored back onto the prior (no loop)
    assert sum(isinstance(e, CursorMoved) for e in seen_prior) == 1
    assert sum(isinstance(e, CursorMoved) for e in seen_current) == 1
    # and scrolling the current one image moves the prior to the same anatomy again
    current.step_slice("axial", 1)
    want = expected_prior_index(current.current_index())
    assert np.all(np.abs(np.array(prior.current_index()) - want) <= 0.5 + 1e-9)

def test_window_level_and_slab_follow_in_both_directions(pair: Pair) -> None:
    current, prior, _seen_current, seen_prior = pair
    ViewerLink(current, prior, registration())
    current.wl.set(1500.0, -600.0, "Lung")
    assert prior.wl.get() == (1500.0, -600.0)
    assert prior.state.wl_name == "Lung"
    assert sum(isinstance(e, WindowLevelChanged) for e in seen_prior) == 1
    prior.wl.set(400.0, 40.0)
    assert current.wl.get() == (400.0, 40.0)
    current.slab.set(10.0, "mip")
    assert (prior.slab.current().thickness_mm, prior.slab.current().mode) == (10.0, "mip")
    prior.slab.thinner()
    assert current.slab.current().thickness_mm == prior.slab.current().thickness_mm == 5.0
    current.set_tool("ruler")
    assert prior.state.tool == "ruler"


def labels(grid: tuple[tuple[int, int, int], tuple[float, float, float], tuple[float, float, float]]
           ) -> npt.NDArray[np.uint8]:
    """A label map on ``grid``: a body (1) holding a nodule (2)."""
    shape = grid[0]
    out = np.zeros(shape, dtype=np.uint8)
    out[2:-2, 4:-4, 4:-4] = 1
    out[10:14, 20:26, 20:26] = 2
    return out


TABLE = LabelTable((Label(1, "body", (120, 120, 120)), Label(2, "lung_nodule", (255, 40, 200), lesion=True)))


def test_the_prior_overlay_takes_the_current_settings_and_both_follow_each_other(pair: Pair) -> None:
    current, prior, _seen_current, _seen_prior = pair
    link = ViewerLink(current, prior, registration())
    current.overlay.set(labels(CURRENT_GRID), TABLE)
    current.overlay.set_opacity(0.35)
    current.overlay.set_label_visible(1, False)  # the window hides the body by default
    link.set_prior_overlay(labels(PRIOR_GRID), TABLE)
    shown = prior.overlay.current()
    assert shown is not None and shown.labelmap.shape == PRIOR_GRID[0]  # the prior's own map, on its grid
    assert prior.overlay.opacity() == 0.35 and not prior.overlay.label_visible(1) and prior.overlay.label_visible(2)
    assert current.overlay.opacity() == 0.35 and not current.overlay.label_visible(1)  # the current kept its own
    current.overlay.set_mode("outline")
    current.overlay.set_opacity(0.8)
    assert (prior.overlay.mode(), prior.overlay.opacity()) == ("outline", 0.8)
    prior.overlay.set_visible(False)  # "O" in the prior viewer hides both
    assert not current.overlay.visible()
    prior.overlay.set_label_visible(2, False)
    assert not current.overlay.label_visible(2)
    with pytest.raises(ValueError, match="shape"):
        link.set_prior_overlay(labels(CURRENT_GRID), TABLE)  # a map off the prior's grid is refused


def test_a_failed_registration_links_the_display_but_never_the_position(pair: Pair) -> None:
    current, prior, _seen_current, _seen_prior = pair
    link = ViewerLink(current, prior, registration(passed=False))
    assert not link.position_linked
    before = prior.current_index()
    current.set_cursor_index((3, 3, 3))
    assert prior.current_index() == before
    current.wl.set(350.0, 50.0)
    assert prior.wl.get() == (350.0, 50.0)
    link.set_registration(registration(passed=True))  # a good one later: the prior jumps to the current cursor
    want = expected_prior_index((3, 3, 3))
    clipped = np.clip(np.rint(want), 0, np.array(PRIOR_GRID[0]) - 1)
    assert np.array_equal(np.array(prior.current_index()), clipped)


def test_closing_the_link_stops_following(pair: Pair) -> None:
    current, prior, _seen_current, _seen_prior = pair
    link = ViewerLink(current, prior, registration())
    link.close()
    before = prior.current_index()
    current.set_cursor_index((10, 10, 10))
    current.wl.set(2000.0, 300.0)
    assert prior.current_index() == before
    assert prior.wl.get() != (2000.0, 300.0)
