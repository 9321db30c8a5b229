"""Follow-up reading in the window, on the demo pair: priors offered, compared on the device runner, read linked.

The demo brings its prior (the same chest a year earlier, re-posed by a known
rotation and shift, one nodule smaller then, one absent). Expected positions,
statuses and the prior's date come from the pair's truth
(``followup_truth.json``), not from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from inference.followup.model import RegistrationResult
from workstation.demo import ensure_demo_study
from workstation.demo.phantom import PRIOR_FOLDER_NAME
from workstation.demo.prior import FollowupTruth, load_followup_truth
from workstation.imaging import label_rgb_table
from workstation.qt.main_window import MainWindow
from workstation.qt.viewer import MprViewer
from workstation.qt.viewer.slice_view import SliceView
from workstation.services.followup_jobs import FollowupFinished
from workstation.settings import get_settings

PRIOR_DATE = "2023-03-15"


def _open_demo(qtbot: QtBot, make_window: Callable[..., MainWindow]) -> tuple[MainWindow, FollowupTruth]:
    win = make_window(size=(1700, 1000))
    with qtbot.waitSignal(win.compare.priorsFound, timeout=120_000):  # looked up once the series has opened
        win.open_demo()
    truth = load_followup_truth(ensure_demo_study(get_settings().demo_dir) / PRIOR_FOLDER_NAME)
    return win, truth


def _wheel(view: SliceView, steps: int, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    centre = QPointF(view.width() / 2, view.height() / 2)
    QApplication.sendEvent(view, QWheelEvent(centre, view.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120 * steps),
                                             Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False))


def _px_per_mm(view: SliceView) -> float:
    assert view.geom is not None
    return view.frame()[0] / view.geom.pixel_mm[0]


def _tolerance(a: MprViewer, b: MprViewer, registration_mm: float = 1.5) -> float:
    """Half a voxel's diagonal in each study (both cursors sit on voxels) plus the registration's error."""
    va, vb = a.volume(), b.volume()
    assert va is not None and vb is not None
    return 0.5 * float(np.linalg.norm(va.spacing)) + 0.5 * float(np.linalg.norm(vb.spacing)) + registration_mm


def _drawn_at(view: SliceView, index: tuple[float, float, float]) -> tuple[int, int, int]:
    """The colour the view drew (its rendered image, ``grab``) over the centre of voxel ``index``."""
    assert view.geom is not None
    p = view.image_to_widget(*view.geom.index_to_image(index))
    colour = view.grab().toImage().pixelColor(int(p.x()), int(p.y()))
    return colour.red(), colour.green(), colour.blue()


def _hu_at_cursor(viewer: MprViewer) -> float:
    vol = viewer.volume()
    assert vol is not None
    return float(vol.array[viewer.current_index()])


def test_the_prior_is_offered_compared_and_read_side_by_side(qtbot: QtBot, make_window: Callable[..., MainWindow]
                                                             ) -> None:
    win, truth = _open_demo(qtbot, make_window)
    compare, current = win.compare, win.session.current
    assert current is not None and current.study_date == truth.current_study_date  # the newer study is opened
    # the prior is offered: marked in the browser, in the chooser, the action enabled
    assert len(compare.priors) == 1
    prior_study = compare.priors[0].study.id
    assert win.browser.prior_marked(prior_study) and not win.browser.prior_marked(current.study_id)
    assert compare.chooser.count() == 1 and compare.chooser.itemText(0).startswith(PRIOR_DATE)
    assert compare.compare_action.isEnabled()
    with qtbot.waitSignal(win.session.resultShown, timeout=180_000):
        win.session.run_ai("builtin.ct")
    with qtbot.waitSignal(compare.comparisonShown, timeout=300_000) as shown:
        compare.compare_action.trigger()
    finished: FollowupFinished = shown.args[0]
    assert finished.registration.passed and finished.comparison is not None
    assert compare.prior_pane.isVisible() and not compare.cancel_action.isEnabled()
    assert "PRIOR" in compare.prior_header.text() and PRIOR_DATE in compare.prior_header.text()
    assert "aligned" in compare.prior_header.text()
    # the findings panel shows every demo nodule's change, as the truth has it
    panel = win.findings.comparison
    assert panel.isVisible()
    rows = panel.changes()
    for nodule in truth.nodules:
        row = next(r for r, ch in enumerate(rows)
                   if ch.current is not None
                   and np.linalg.norm(np.subtract(ch.current.centroid_lps, nodule.center_current_lps_mm)) < 5.0)
        assert panel.cell_text(row, 1) == nodule.status
        if nodule.status == "grown":
            assert panel.cell_text(row, 3) != "\u2014", "the grown nodule's doubling time is shown"
    # the report's next draft writes the Comparison section from its context (built off the GUI thread)
    qtbot.waitUntil(lambda: win.report.context is not None and win.report.context.inputs.comparison is not None,
                    timeout=30_000)
    assert win.report.context is not None
    in_report = win.report.context.inputs.comparison
    assert in_report is not None and in_report.changes == finished.comparison.changes
    # the cursor on the grown nodule now lands on the same nodule in the prior
    grown = next(n for n in truth.nodules if n.status == "grown")
    assert grown.center_prior_lps_mm is not None
    win.viewer.go_to_lps(grown.center_current_lps_mm)
    prior = compare.prior_viewer
    tol = _tolerance(win.viewer, prior)
    assert np.linalg.norm(prior.model.current_lps() - np.array(grown.center_prior_lps_mm)) <= tol
    assert _hu_at_cursor(win.viewer) > -400 and _hu_at_cursor(prior) > -400, "both cursors sit on the nodule"
    # scrolling the current moves the prior to the same anatomy
    before = prior.slice_index("axial")
    _wheel(win.viewer.view("axial"), -3)
    assert prior.slice_index("axial") != before
    mapped = finished.registration.to_prior(win.viewer.model.current_lps())
    prior_volume = prior.volume()
    assert prior_volume is not None
    assert np.linalg.norm(prior.model.current_lps() - mapped) <= 0.5 * float(np.linalg.norm(prior_volume.spacing))
    # window/level, slab and zoom follow
    axial = win.viewer.view("axial")
    axial.setFocus()
    QTest.keyClick(axial, Qt.Key.Key_4)  # the bone preset
    assert prior.window_level() == win.viewer.window_level() == pytest.approx((2000, 300), abs=1000)
    win.viewer.set_slab(10.0, "mip")
    assert (prior.slab().thickness_mm, prior.slab().mode) == (10.0, "mip")
    _wheel(axial, 3, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: abs(_px_per_mm(prior.view("axial")) / _px_per_mm(axial) - 1.0) < 0.01, timeout=2000)
    assert axial.zoom > 1.3
    # closing the prior gives the current study the whole area and its layout back
    compare.close_action.trigger()
    assert not compare.prior_pane.isVisible() and win.viewer.layout_name() == "2x2"


def test_a_prior_without_an_analysis_is_aligned_and_a_failed_check_is_shown(
        qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    win, truth = _open_demo(qtbot, make_window)
    compare = win.compare
    with qtbot.waitSignal(compare.comparisonShown, timeout=120_000) as shown:
        assert compare.compare() is not None  # no AI result yet: alignment only
    finished: FollowupFinished = shown.args[0]
    assert finished.comparison is None and finished.registration.passed
    assert "Run AI" in win.findings.comparison.recommendation.text()
    want = np.array(truth.current_to_prior)
    win.viewer.set_cursor_index((60, 128, 128))
    expected = want[:3, :3] @ win.viewer.model.current_lps() + want[:3, 3]
    assert np.linalg.norm(compare.prior_viewer.model.current_lps() - expected) <= _tolerance(win.viewer,
                                                                                            compare.prior_viewer)
    # a registration that fails its check is shown as failed and unlinks the positions
    failed = RegistrationResult.from_array(
        want, kind="rigid", metric_name="Mattes mutual information", metric_value=-0.1,
        quality_name="normalised cross-correlation", quality_value=0.12, quality_threshold=0.5, passed=False,
        reason="normalised cross-correlation 0.12 is below the threshold 0.5")
    # the outcome as the follow-up service delivers it to the window
    compare._on_event(FollowupFinished(finished.generation, finished.candidate, failed, None))
    assert "FAILED" in compare.prior_header.text() and "NOT linked" in compare.prior_header.text()
    assert "FAILED" in win.findings.comparison.alignment.text()
    where = compare.prior_viewer.current_index()
    win.viewer.set_cursor_index((20, 40, 40))
    assert compare.prior_viewer.current_index() == where
    assert Path(win.settings.db_path).exists()


def test_the_prior_viewer_outlines_the_priors_own_lesions_as_the_current_does(
        qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    win, truth = _open_demo(qtbot, make_window)
    compare, prior = win.compare, win.compare.prior_viewer
    with qtbot.waitSignal(win.session.resultShown, timeout=180_000):
        win.session.run_ai("builtin.ct")
    with qtbot.waitSignal(compare.comparisonShown, timeout=300_000):
        compare.compare_action.trigger()
    shown = win.viewer.overlay()
    assert shown is not None
    # the same overlay rules as the current's: opacity, fill/outline and the labels hidden by default
    assert prior.overlay() is not None, "the prior's own segmentation is not drawn"
    assert prior.overlay_opacity() == win.viewer.overlay_opacity() and prior.overlay_mode() == shown.mode
    assert all(prior.label_visible(lab.value) == win.viewer.label_visible(lab.value) for lab in shown.table)
    # one colour table: the lesion label's colour from it is what the reader must see on the prior's nodules
    colours = label_rgb_table(shown.table)
    lesion_colours = {tuple(int(c) for c in colours[lab.value]) for lab in shown.table if lab.lesion}
    assert len(lesion_colours) == 1
    (lesion_colour,) = lesion_colours
    win.overlay.opacity.setValue(100)  # the Overlay panel drives both viewers: opaque, so colours read exactly
    win.viewer.set_crosshair_visible(False)  # linked too: no crosshair line over the nodule
    assert prior.overlay_opacity() == 1.0 and not prior.model.state.show_crosshair
    axial, prior_volume = prior.view("axial"), prior.volume()
    assert prior_volume is not None
    seen = [n for n in truth.nodules if n.center_prior_lps_mm is not None]
    assert seen, "the demo prior has nodules"
    for nodule in seen:
        assert nodule.center_prior_lps_mm is not None
        prior.go_to_lps(nodule.center_prior_lps_mm)
        k, j, i = prior.current_index()
        assert _drawn_at(axial, (k, j, i)) == lesion_colour, f"prior nodule {nodule.index} is not outlined"
        away = next(v for v in ((k, j, i + 30), (k, j, i - 30), (k, j + 30, i), (k, j - 30, i))
                    if all(np.linalg.norm(prior_volume.index_to_lps(v) - np.array(n.center_prior_lps_mm)) > 20.0
                           for n in seen if n.center_prior_lps_mm is not None))  # 20 mm from every nodule
        assert _drawn_at(axial, away) != lesion_colour, "the lesion colour is drawn away from any lesion"
    # hiding the overlay in the panel hides the prior's as well
    win.overlay.show_check.setChecked(False)
    assert _drawn_at(axial, prior.current_index()) != lesion_colour
