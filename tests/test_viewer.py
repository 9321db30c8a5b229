"""The MPR viewer: orientation in patient space, aspect, navigation, W/L, measurements, overlay, streaming.

Checks read the pixels the widget actually drew (``grab()``), so a wrong flip,
a lost aspect ratio or an overlay in the wrong colour fails here, not in review.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from inference.labels import Label, LabelTable
from inference.volume import Volume
from workstation.qt.viewer import (
    MprViewer,
    OverlayPanel,
    RoiMeasurement,
    RulerMeasurement,
    SliceView,
    ViewerInfo,
    auto_window,
    load_presets,
    plane_geometries,
)
from workstation.qt.viewer.render import outline, overlay_image, window_grey
from workstation.settings import resources_dir
from workstation.viewing.label_colours import colour_table
from workstation.viewing.orientation import patient_axes

X, Y, Z = np.eye(3)
Vec = npt.NDArray[np.float64]


# ----------------------------------------------------------------------------- helpers

def make_volume(axes: tuple[Vec, Vec, Vec], spacing: tuple[float, float, float], shape: tuple[int, int, int],
                values: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.int16]] | None = None,
                modality: str = "CT") -> Volume:
    """A volume whose array axes point along ``axes`` (LPS unit vectors); ``values`` maps voxel LPS to values."""
    affine = np.eye(4)
    for a in range(3):
        affine[:3, a] = np.asarray(axes[a]) * spacing[a]
    affine[:3, 3] = (-5.0, 7.0, 11.0)
    if values is None:
        arr = np.zeros(shape, dtype=np.int16)
    else:
        idx = np.indices(shape).reshape(3, -1).T.astype(np.float64)
        lps = idx @ affine[:3, :3].T + affine[:3, 3]
        arr = values(lps).reshape(shape).astype(np.int16)
    return Volume(arr, affine, modality=modality, units="HU" if modality == "CT" else "")


def rotation(axis: Vec, degrees: float) -> Vec:
    """Rodrigues rotation matrix."""
    k = np.asarray(axis) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.asarray(np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx, dtype=np.float64)


def rgb(widget: QWidget) -> npt.NDArray[np.uint8]:
    """What the widget draws, as an ``[row, column, (r, g, b)]`` array."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    raw = np.frombuffer(img.constBits(), dtype=np.uint8).reshape(h, img.bytesPerLine())[:, : w * 4]
    bgra = raw.reshape(h, w, 4)
    return np.ascontiguousarray(bgra[..., [2, 1, 0]])


def image_box(view: SliceView, margin: int = 3) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the drawn slice inside the widget, shrunk by a margin."""
    r = view.image_rect()
    x0, y0 = max(math.ceil(r.left()) + margin, 2), max(math.ceil(r.top()) + margin, 2)
    x1 = min(int(r.right()) - margin, view.width() - 2)
    y1 = min(int(r.bottom()) - margin, view.height() - 2)
    return x0, y0, x1, y1


def send_mouse(widget: QWidget, kind: QEvent.Type, pos: QPointF, button: Qt.MouseButton,
               buttons: Qt.MouseButton, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    event = QMouseEvent(kind, pos, QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def drag(widget: QWidget, start: QPointF, end: QPointF, button: Qt.MouseButton = Qt.MouseButton.LeftButton,
         modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier, steps: int = 4) -> None:
    """Press at ``start``, move in steps, release at ``end``."""
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, button, button, modifiers)
    for n in range(1, steps + 1):
        p = start + (end - start) * (n / steps)
        send_mouse(widget, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button, modifiers)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, button, Qt.MouseButton.NoButton, modifiers)


def wheel(widget: QWidget, clicks: int, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    """Turn the wheel ``clicks`` notches away from the user (negative: towards)."""
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * clicks),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def key(widget: QWidget, k: Qt.Key, text: str = "") -> None:
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyPress, k, Qt.KeyboardModifier.NoModifier, text))


def widget_point(view: SliceView, index: tuple[float, float, float]) -> QPointF:
    """Where the centre of voxel ``index`` is drawn in ``view``."""
    g = view.geom
    assert g is not None
    return view.image_to_widget(*g.index_to_image(index))


@pytest.fixture
def viewer(make_viewer: Callable[..., MprViewer]) -> MprViewer:
    """The shared viewer factory (tests/conftest.py), sized for this file's pixel checks."""
    return make_viewer(size=(900, 700))


def plain(viewer: MprViewer) -> None:
    """No crosshair or text: only the image is drawn (pixel checks)."""
    viewer.set_crosshair_visible(False)
    viewer.set_annotations_visible(False)


AXIAL = (Z, Y, X)  # slices along +z (feet to head), rows along +y (posterior), columns along +x (left)


# ----------------------------------------------------------------------------- orientation

ACQUISITIONS = {
    "axial": (Z, Y, X),
    "axial-reversed": (-Z, -Y, -X),
    "axial-rotated-90": (Z, X, -Y),
    "sagittal": (X, -Z, Y),
    "coronal": (Y, -Z, X),
    "oblique-15": tuple(rotation(np.array([1.0, 0.3, 0.2]), 15.0) @ v for v in (Z, Y, X)),
}


@pytest.mark.parametrize("acquisition", list(ACQUISITIONS))
def test_views_follow_radiological_convention(qtbot: QtBot, viewer: MprViewer, acquisition: str) -> None:
    axes = ACQUISITIONS[acquisition]
    spacing, shape = (2.0, 1.5, 1.0), (30, 32, 36)
    centre = make_volume(axes, spacing, shape).index_to_lps((np.array(shape) - 1) / 2.0)  # type: ignore[arg-type]

    def left_anterior_superior(lps: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
        d = lps - centre
        return np.where((d[:, 0] > 0) & (d[:, 1] < 0) & (d[:, 2] > 0), 1000, 0).astype(np.int16)

    vol = make_volume(axes, spacing, shape, left_anterior_superior)
    viewer.set_volume(vol)
    plain(viewer)
    viewer.set_window_level(100, 50)
    viewer.go_to_lps(centre + np.array([8.0, -8.0, 8.0]))
    # (bright quadrant expected: right half?, top half?) - patient left/anterior/superior
    expected = {"axial": (True, True), "coronal": (True, True), "sagittal": (False, True)}
    for plane, (right, top) in expected.items():
        view = viewer.view(plane)
        x0, y0, x1, y1 = image_box(view)
        bright = rgb(view)[y0:y1, x0:x1].min(axis=2) > 128
        ys, xs = np.nonzero(bright)
        assert xs.size > 50, f"{plane}: the bright octant is not drawn"
        mid_x, mid_y = (x1 - x0) / 2.0, (y1 - y0) / 2.0
        in_quadrant = ((xs > mid_x) == right) & ((ys < mid_y) == top)
        # Oblique: the octant's faces are tilted against the view, so some of it spills over the midlines.
        share = 0.75 if acquisition.startswith("oblique") else 0.97
        assert in_quadrant.mean() > share, f"{acquisition}/{plane}: bright voxels not in the expected quadrant"
        g = view.geom
        assert g is not None
        assert (g.left, g.right, g.top) == {"axial": ("R", "L", "A"), "coronal": ("R", "L", "S"),
                                           "sagittal": ("A", "P", "S")}[plane]


def test_closest_axes_are_a_permutation_even_when_oblique() -> None:
    direction = np.column_stack([rotation(Z, 40.0) @ v for v in (X, Y, Z)])
    axes, signs = patient_axes(direction)
    assert sorted(axes) == [0, 1, 2]
    assert (axes, signs) == ((0, 1, 2), (1, 1, 1))
    sag = np.column_stack([X, -Z, Y])
    assert patient_axes(sag) == ((0, 2, 1), (1, 1, -1))


@pytest.mark.parametrize(("plane", "mm_w", "mm_h"), [("axial", 30.0, 30.0), ("coronal", 30.0, 50.0),
                                                     ("sagittal", 30.0, 50.0)])
def test_anisotropic_voxels_keep_their_true_aspect(qtbot: QtBot, viewer: MprViewer, plane: str,
                                                   mm_w: float, mm_h: float) -> None:
    vol = make_volume(AXIAL, (5.0, 1.0, 0.5), (10, 30, 60), lambda lps: np.full(len(lps), 1000))
    viewer.set_volume(vol)
    plain(viewer)
    viewer.set_window_level(100, 50)
    viewer.set_layout("1x1", plane)  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: viewer.view(plane).width() > 500)  # type: ignore[arg-type]
    bright = rgb(viewer.view(plane))[2:-2, 2:-2].min(axis=2) > 128  # type: ignore[arg-type]
    ys, xs = np.nonzero(bright)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width / height == pytest.approx(mm_w / mm_h, abs=0.02)


# ----------------------------------------------------------------------------- navigation

def test_wheel_and_keys_scroll_slices(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (40, 20, 20))
    viewer.set_volume(vol)
    axial = viewer.view("axial")
    start = viewer.slice_index("axial")
    with qtbot.waitSignal(viewer.sliceChanged) as blocker:
        wheel(axial, -3)  # towards the user: next images, head to feet
    assert blocker.args == ["axial", start - 3]
    wheel(axial, 1)
    assert viewer.slice_index("axial") == start - 2
    key(axial, Qt.Key.Key_Down)
    assert viewer.slice_index("axial") == start - 3
    key(axial, Qt.Key.Key_PageUp)
    assert viewer.slice_index("axial") == start + 7
    key(axial, Qt.Key.Key_Home)
    assert viewer.slice_index("axial") == 39, "image 1 is the most superior slice"
    key(axial, Qt.Key.Key_End)
    assert viewer.slice_index("axial") == 0
    wheel(axial, -5)
    assert viewer.slice_index("axial") == 0, "scrolling stops at the last image"
    assert viewer.slice_index("coronal") == 10 and viewer.slice_index("sagittal") == 10


def test_go_to_index_moves_every_view_and_reports_lps(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(ACQUISITIONS["sagittal"], (1.2, 1.0, 0.8), (24, 30, 28))
    viewer.set_volume(vol)
    with qtbot.waitSignal(viewer.cursorMoved) as blocker:
        viewer.go_to_index((5, 17, 9))
    assert viewer.current_index() == (5, 17, 9)
    np.testing.assert_allclose(blocker.args[0], vol.index_to_lps((5, 17, 9)))
    geoms = plane_geometries(vol.affine, vol.shape)
    for plane, g in geoms.items():
        assert viewer.slice_index(plane) == (5, 17, 9)[g.normal]
    assert viewer.slice_index("sagittal") == 5, "a sagittal acquisition's slices are the sagittal view"
    viewer.go_to_lps(vol.index_to_lps((20, 3, 4)) + 0.3)
    assert viewer.current_index() == (20, 3, 4)


def test_crosshair_drag_moves_the_other_views(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (20, 40, 40))
    viewer.set_volume(vol)
    axial = viewer.view("axial")
    viewer.set_tool("crosshair")
    drag(axial, widget_point(axial, (10, 20, 20)), widget_point(axial, (10, 8, 30)))
    assert viewer.current_index() == (10, 8, 30)
    assert viewer.slice_index("coronal") == 8 and viewer.slice_index("sagittal") == 30
    viewer.set_tool("wl")
    drag(axial, widget_point(axial, (10, 8, 30)), widget_point(axial, (10, 30, 5)),
         modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert viewer.current_index() == (10, 30, 5), "Shift+left moves the crosshair in any tool"


def test_highlight_box_is_drawn_where_the_slice_cuts_it(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (20, 40, 40))
    viewer.set_volume(vol)
    plain(viewer)

    def yellow(plane: str) -> int:
        px = rgb(viewer.view(plane))  # type: ignore[arg-type]
        return int(((px[..., 0] > 200) & (px[..., 1] > 200) & (px[..., 2] < 60)).sum())

    assert yellow("axial") == 0
    viewer.highlight_box((8, 10, 12), (12, 20, 18))
    viewer.go_to_index((10, 15, 15))
    assert all(yellow(p) > 40 for p in ("axial", "coronal", "sagittal"))
    viewer.set_slice("axial", 2)
    assert yellow("axial") == 0, "no box on a slice outside it"
    viewer.clear_highlight()
    assert yellow("coronal") == 0


# ----------------------------------------------------------------------------- window / level

def test_ct_opens_in_the_default_preset_and_digit_keys_pick_presets(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 20, 20))
    viewer.set_volume(vol)
    assert viewer.window_level() == (400.0, 40.0)
    axial = viewer.view("axial")
    with qtbot.waitSignal(viewer.windowLevelChanged) as blocker:
        key(axial, Qt.Key.Key_1, "1")
    assert blocker.args == [1500.0, -600.0]
    expected = {Qt.Key.Key_2: (350.0, 50.0), Qt.Key.Key_3: (400.0, 40.0), Qt.Key.Key_4: (2000.0, 500.0),
                Qt.Key.Key_5: (80.0, 40.0)}
    for k, wl in expected.items():
        key(axial, k)
        assert viewer.window_level() == wl
    assert viewer.apply_preset("lung") and viewer.window_level() == (1500.0, -600.0)
    key(axial, Qt.Key.Key_R)
    assert viewer.window_level() == (400.0, 40.0)


def test_presets_file_holds_the_standard_ct_windows() -> None:
    data = json.loads((resources_dir() / "presets" / "window_level.json").read_text(encoding="utf-8"))
    ct = {p["id"]: (p["window"], p["level"]) for p in data["modalities"]["CT"]["presets"]}
    assert ct["lung"] == (1500, -600) and ct["mediastinum"] == (350, 50) and ct["abdomen"] == (400, 40)
    assert ct["brain"] == (80, 40) and ct["bone"] in ((2000, 500), (1800, 400))
    assert load_presets().by_key("ct", "1") is not None


def test_broken_presets_file_falls_back_to_builtin(tmp_path: Path) -> None:
    bad = tmp_path / "wl.json"
    bad.write_text('{"modalities": {"CT": {"presets": [{"key": "1", "id": "x", "name": "X", "window": -5}]}}}')
    book = load_presets(bad)
    assert book.default_for("CT") is not None and book.default_for("CT").id == "abdomen"  # type: ignore[union-attr]


def test_mr_gets_an_automatic_window_from_percentiles(qtbot: QtBot, viewer: MprViewer) -> None:
    rng = np.random.default_rng(3)
    vol = make_volume(AXIAL, (3.0, 1.0, 1.0), (12, 64, 64), modality="MR")
    arr = vol.array
    arr[:] = rng.integers(0, 2000, arr.shape, dtype=np.int16)
    viewer.set_volume(vol)
    window, level = viewer.window_level()
    lo, hi = np.percentile(arr, [1, 99])
    assert level == pytest.approx((lo + hi) / 2, rel=0.05) and window == pytest.approx(hi - lo, rel=0.05)
    assert viewer.presets() == ()
    viewer.set_window_level(10, 10)
    key(viewer.view("axial"), Qt.Key.Key_1)
    assert viewer.window_level() == (window, level), "1 = automatic window for MR"


def test_left_drag_changes_window_and_level(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 40, 40), lambda lps: np.full(len(lps), 100))
    viewer.set_volume(vol)
    plain(viewer)
    axial = viewer.view("axial")
    before = rgb(axial)[axial.height() // 2, axial.width() // 2, 0]
    centre = QPointF(axial.width() / 2, axial.height() / 2)
    with qtbot.waitSignal(viewer.windowLevelChanged):
        drag(axial, centre, centre + QPointF(100, 0))
    window, level = viewer.window_level()
    assert window > 400 and level == 40.0, "right widens the window"
    drag(axial, centre, centre + QPointF(0, 60))
    assert viewer.window_level()[0] == window and viewer.window_level()[1] > 40.0, "down raises the level"
    after = rgb(axial)[axial.height() // 2, axial.width() // 2, 0]
    assert after < before, "a higher level draws 100 HU darker"


def test_window_lut_matches_the_linear_formula() -> None:
    rng = np.random.default_rng(0)
    sl = rng.integers(-32768, 32767, (64, 64), dtype=np.int16)
    sl[0, :4] = (-32768, 32767, -160, 240)
    got = window_grey(sl[:, ::-1], 400, 40)
    expected = np.clip((sl[:, ::-1].astype(np.float64) - (40 - 200)) / 400 * 255, 0, 255)
    assert np.abs(got.astype(np.float64) - expected).max() <= 0.5 + 1e-3
    assert window_grey(sl, 400, 40, invert=True)[0, 0] == 255
    floats = sl.astype(np.float32) / 7
    assert np.abs(window_grey(floats, 100, 0).astype(float)
                  - np.clip((floats.astype(float) + 50) / 100 * 255, 0, 255)).max() <= 0.5 + 1e-3


# ----------------------------------------------------------------------------- zoom, pan, cine, layout

def test_right_drag_zooms_about_the_press_point_and_middle_drag_pans(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 40, 40))
    viewer.set_volume(vol)
    axial = viewer.view("axial")
    anchor = widget_point(axial, (5, 10, 30))
    before = axial.widget_to_image(anchor)
    drag(axial, anchor, anchor + QPointF(0, -80), button=Qt.MouseButton.RightButton)
    assert axial.zoom > 1.3
    after = axial.widget_to_image(anchor)
    assert after == pytest.approx(before, abs=1e-6), "the point under the press stays put"
    rect = axial.image_rect()
    drag(axial, QPointF(100, 100), QPointF(130, 90), button=Qt.MouseButton.MiddleButton)
    moved = axial.image_rect()
    assert (moved.left() - rect.left(), moved.top() - rect.top()) == pytest.approx((30.0, -10.0))
    key(axial, Qt.Key.Key_R)
    assert axial.zoom == 1.0 and axial.pan == QPointF(0, 0)


def test_cine_loops_through_slices(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (6, 10, 10))
    viewer.set_volume(vol)
    viewer.set_cine_fps(60)
    seen: set[int] = set()
    viewer.sliceChanged.connect(lambda plane, index: seen.add(index))
    key(viewer.view("axial"), Qt.Key.Key_C)
    assert viewer.cine_plane() == "axial"
    qtbot.waitUntil(lambda: seen == set(range(6)), timeout=5000)
    key(viewer.view("axial"), Qt.Key.Key_C)
    assert viewer.cine_plane() is None


def test_layout_switch(qtbot: QtBot, viewer: MprViewer) -> None:
    viewer.set_volume(make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 20, 20)))
    panes = [viewer.view("axial"), viewer.view("coronal"), viewer.view("sagittal"), viewer.mip_view]
    shown = {
        "1x3": [True, True, True, False],
        "2x2": [True, True, True, True],
    }
    for layout, visible in shown.items():
        viewer.set_layout(layout)
        assert [p.isVisible() for p in panes] == visible, layout
    viewer.set_layout("1x1", "coronal")
    assert [p.isVisible() for p in panes] == [False, True, False, False]
    assert viewer.view("coronal").width() > 800
    viewer.set_layout("1x3")
    pos = QPointF(50, 50)
    send_mouse(viewer.view("sagittal"), QEvent.Type.MouseButtonDblClick, pos, Qt.MouseButton.LeftButton,
               Qt.MouseButton.LeftButton)
    assert viewer.layout_name() == "1x1" and viewer.view("sagittal").isVisible()
    send_mouse(viewer.view("sagittal"), QEvent.Type.MouseButtonDblClick, pos, Qt.MouseButton.LeftButton,
               Qt.MouseButton.LeftButton)
    assert viewer.layout_name() == "1x3"
    with pytest.raises(ValueError, match="layout"):
        viewer.set_layout("3x3")
    viewer.set_layout("2x2")


def test_fourth_pane_is_an_axial_mip_of_its_own(qtbot: QtBot, viewer: MprViewer) -> None:
    """The 2x2 layout's fourth pane shows the axial plane as a 15 mm MIP: a nodule two slices away is seen
    there while the plain axial view and the viewer's own slab setting stay as they were."""
    def values(lps: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
        out = np.full(len(lps), -800, dtype=np.int16)
        near = np.linalg.norm(lps - np.array([-5.0 + 10.0, 7.0 + 10.0, 11.0 + 2 * 2.5]), axis=1) < 3.0
        out[near] = 300
        return out

    viewer.set_volume(make_volume(AXIAL, (2.5, 1.0, 1.0), (12, 20, 20), values))
    viewer.set_window_level(1500, -600)
    viewer.go_to_index((0, 10, 10))
    viewer.set_layout("2x2")
    assert viewer.mip_view.isVisible() and not viewer.slab().active
    plain, mip = viewer.view("axial"), viewer.mip_view
    spot = widget_point(mip, (0, 10, 10))

    def brightness(view: SliceView) -> int:
        return int(rgb(view)[int(spot.y()) - 3:int(spot.y()) + 4, int(spot.x()) - 3:int(spot.x()) + 4].max())

    assert brightness(mip) > brightness(plain) + 100, "the MIP pane shows the nodule two slices away"
    assert "MIP 15 mm" in mip.corner_text["bl"] and "MIP 15 mm" not in plain.corner_text["bl"]




# ----------------------------------------------------------------------------- measurements

def test_ruler_measures_true_mm_on_anisotropic_pixels(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.5, 0.7, 1.3), (20, 40, 40))
    viewer.set_volume(vol)
    viewer.set_tool("ruler")
    axial = viewer.view("axial")
    drag(axial, widget_point(axial, (10, 5, 6)), widget_point(axial, (10, 29, 33)))
    (m,) = viewer.measurements()
    assert isinstance(m, RulerMeasurement) and m.plane == "axial" and m.slice_index == 10
    assert m.length_mm == pytest.approx(math.hypot(24 * 0.7, 27 * 1.3), abs=1e-6)
    sagittal = viewer.view("sagittal")
    drag(sagittal, widget_point(sagittal, (2, 5, 20)), widget_point(sagittal, (17, 30, 20)))
    assert viewer.measurements()[-1].length_mm == pytest.approx(math.hypot(15 * 2.5, 25 * 0.7), abs=1e-6)
    key(sagittal, Qt.Key.Key_Delete)
    assert len(viewer.measurements()) == 1


def test_roi_statistics_equal_numpy_on_the_same_pixels(qtbot: QtBot, viewer: MprViewer) -> None:
    rng = np.random.default_rng(7)
    vol = make_volume(AXIAL, (2.5, 0.7, 1.3), (12, 60, 50))
    vol.array[:] = rng.integers(-200, 300, vol.shape, dtype=np.int16)
    viewer.set_volume(vol)
    viewer.set_tool("roi")
    axial = viewer.view("axial")
    k = viewer.slice_index("axial")
    # Corners on pixel edges: from the top-left corner of voxel (row 10, col 8) to the bottom-right of (40, 30).
    c0 = axial.image_to_widget(8.0, 10.0)
    c1 = axial.image_to_widget(31.0, 41.0)
    drag(axial, c0, c1)
    (m,) = viewer.measurements()
    assert isinstance(m, RoiMeasurement)
    rows, cols = np.mgrid[0:60, 0:50] + 0.5  # pixel centres; the standard axial grid is drawn as array[k]
    inside = ((cols - 19.5) / 11.5) ** 2 + ((rows - 25.5) / 15.5) ** 2 <= 1.0
    values = vol.array[k][inside].astype(np.float64)
    assert m.pixels == inside.sum()
    assert m.mean == pytest.approx(values.mean()) and m.std == pytest.approx(values.std())
    assert (m.minimum, m.maximum) == (values.min(), values.max())
    assert m.area_mm2 == pytest.approx(inside.sum() * 0.7 * 1.3)
    assert m.area_cm2 == pytest.approx(m.area_mm2 / 100)
    assert "HU" in m.text() and "cm²" in m.text()


# ----------------------------------------------------------------------------- overlay

TABLE = LabelTable((Label(1, "liver", (200, 40, 30)), Label(2, "kidney", (10, 200, 30))))


def overlay_volume() -> tuple[Volume, npt.NDArray[np.uint8]]:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 60, 60), lambda lps: np.full(len(lps), 40))
    labels = np.zeros(vol.shape, dtype=np.uint8)
    labels[3:7, 10:30, 10:30] = 1
    labels[3:7, 35:55, 30:55] = 2
    return vol, labels


def test_overlay_is_drawn_in_the_label_colours_and_toggles(qtbot: QtBot, viewer: MprViewer) -> None:
    vol, labels = overlay_volume()
    viewer.set_volume(vol)
    plain(viewer)
    viewer.go_to_index((5, 30, 30))
    viewer.set_overlay(labels, TABLE)
    viewer.set_overlay_opacity(1.0)
    viewer.set_overlay_mode("fill")
    axial = viewer.view("axial")
    liver, kidney = widget_point(axial, (5, 20, 20)), widget_point(axial, (5, 45, 42))

    def colour_at(p: QPointF) -> tuple[int, ...]:
        return tuple(int(c) for c in rgb(axial)[int(p.y()), int(p.x())])

    assert colour_at(liver) == (200, 40, 30) and colour_at(kidney) == (10, 200, 30)
    viewer.set_label_visible(2, False)
    grey = colour_at(kidney)
    assert grey[0] == grey[1] == grey[2], "a hidden label is not drawn"
    assert colour_at(liver) == (200, 40, 30)
    panel = OverlayPanel(viewer)
    qtbot.addWidget(panel)
    item = panel.label_item(2)
    assert item is not None and item.checkState() == Qt.CheckState.Unchecked
    item.setCheckState(Qt.CheckState.Checked)
    assert viewer.label_visible(2) and colour_at(kidney) == (10, 200, 30)
    panel.opacity.setValue(50)
    assert viewer.overlay_opacity() == 0.5
    half = colour_at(liver)
    assert abs(half[0] - (200 + grey[0]) / 2) <= 3 and abs(half[1] - (40 + grey[1]) / 2) <= 3
    panel.show_check.setChecked(False)
    assert colour_at(liver) == grey
    key(axial, Qt.Key.Key_O)
    assert panel.show_check.isChecked(), "the panel follows the viewer's O key"
    viewer.clear_overlay()
    assert colour_at(liver) == grey and not panel.isEnabled()


def test_outline_mode_draws_only_edges(qtbot: QtBot, viewer: MprViewer) -> None:
    vol, labels = overlay_volume()
    viewer.set_volume(vol)
    plain(viewer)
    viewer.go_to_index((5, 30, 30))
    viewer.set_overlay(labels, TABLE)
    viewer.set_overlay_opacity(1.0)
    panel = OverlayPanel(viewer)
    qtbot.addWidget(panel)
    panel.outline_button.setChecked(True)
    assert viewer.overlay_mode() == "outline"
    axial = viewer.view("axial")
    px = rgb(axial)
    inner, edge = widget_point(axial, (5, 20, 20)), widget_point(axial, (5, 10, 20))
    assert tuple(px[int(inner.y()), int(inner.x())]) != (200, 40, 30)
    assert tuple(int(c) for c in px[int(edge.y()), int(edge.x())]) == (200, 40, 30)


def test_outline_and_colour_table_units(qtbot: QtBot) -> None:
    labels = np.zeros((6, 6), dtype=np.int16)
    labels[1:5, 1:5] = 2
    edge = outline(labels)
    assert edge[2, 2] == 0 and edge[1, 1] == 2 and edge[1, 3] == 2 and edge[0, 0] == 0
    lut = colour_table(TABLE, 3, hidden={1})
    assert lut[1] == 0 and lut[2] == 0xFF0AC81E and lut[3] == 0
    assert overlay_image(np.zeros((4, 4), np.uint8), lut) is None
    viewer = MprViewer()
    qtbot.addWidget(viewer)
    viewer.set_volume(make_volume(AXIAL, (1.0, 1.0, 1.0), (4, 4, 4)))
    with pytest.raises(ValueError, match="shape"):
        viewer.set_overlay(np.zeros((4, 4, 5), np.uint8), TABLE)
    with pytest.raises(ValueError, match="integers"):
        viewer.set_overlay(np.zeros((4, 4, 4), np.float32), TABLE)


# ----------------------------------------------------------------------------- streaming

def test_streamed_slices_render_as_they_arrive(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (9, 30, 30), lambda lps: np.full(len(lps), 1000))
    loaded = np.zeros(9, dtype=bool)
    loaded[4] = True
    viewer.set_volume(vol, ViewerInfo("Doe^Jane", "20240102", "Thorax", "CT"), loaded=loaded)
    plain(viewer)
    viewer.set_window_level(100, 50)
    assert viewer.slice_index("axial") == 4 and not viewer.is_loaded()
    axial, coronal = viewer.view("axial"), viewer.view("coronal")

    def white_fraction(view: SliceView) -> float:
        x0, y0, x1, y1 = image_box(view)
        return float((rgb(view)[y0:y1, x0:x1].min(axis=2) > 128).mean())

    assert white_fraction(axial) > 0.95
    rows = rgb(coronal)[:, coronal.width() // 2].min(axis=1) > 128
    assert 0.05 < rows.mean() < 0.2, "only the loaded slice's row is drawn in the coronal view"
    viewer.set_slice("axial", 2)
    assert white_fraction(axial) < 0.05, "an unloaded slice is dark"
    viewer.mark_loaded(0, 3)
    assert white_fraction(axial) > 0.95
    viewer.mark_loaded(3, 9)
    assert viewer.is_loaded() and white_fraction(coronal) > 0.95
    with pytest.raises(ValueError, match="loaded mask"):
        viewer.set_volume(vol, loaded=np.ones(3, dtype=bool))


# ----------------------------------------------------------------------------- real data and looks

def test_real_ct_opens_and_renders_in_radiological_orientation(qtbot: QtBot, viewer: MprViewer,
                                                               shared_data: Path) -> None:
    from workstation.dicomio.headers import read_header_path
    from workstation.dicomio.volume_builder import load_series

    folder = shared_data / "ct_abdomen_totalseg" / "example_ct_dicom"
    (vol,) = load_series([read_header_path(p) for p in sorted(folder.rglob("*")) if p.is_file()]).volumes
    viewer.set_volume(vol, ViewerInfo("Anon", "20200101", str(vol.metadata["series_description"]), "CT"))
    plain(viewer)
    axial = viewer.view("axial")
    x0, y0, x1, y1 = image_box(axial)
    px = rgb(axial)[y0:y1, x0:x1, 0].astype(np.float64)
    assert px.std() > 30, "the abdomen is drawn with contrast"
    viewer.apply_preset("bone")
    bone = rgb(axial)[y0:y1, x0:x1, 0] > 200
    ys, _ = np.nonzero(bone)
    assert ys.mean() > (y1 - y0) * 0.5, "spine and table (posterior) lie in the lower half of the axial view"
    axial.repaint()
    assert axial.last_paint_ms > 0.0


def test_corner_text_and_border_are_drawn(qtbot: QtBot, viewer: MprViewer) -> None:
    viewer.set_volume(make_volume(AXIAL, (2.0, 1.0, 1.0), (10, 20, 20)),
                      ViewerInfo("Doe^Jane", "20240102", "Thorax", "CT"))
    assert ViewerInfo("Doe^Jane", "20240102").patient_text() == "DOE, Jane"
    assert ViewerInfo(study_date="20240102").date_text() == "2024-01-02"
    axial = viewer.view("axial")
    px = rgb(axial)
    yellow_text = (px[..., 0] > 200) & (px[..., 1] > 170) & (px[..., 2] < 80)
    assert yellow_text[:60, :200].sum() > 30, "patient identity in yellow, top left"
    viewer.set_annotations_visible(False)
    px = rgb(axial)
    assert ((px[..., 0] > 200) & (px[..., 1] > 170) & (px[..., 2] < 80))[:60, :200].sum() == 0


def test_monochrome1_is_inverted(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = make_volume(AXIAL, (2.0, 1.0, 1.0), (4, 20, 20), lambda lps: np.full(len(lps), 0), modality="DX")
    vol.metadata["photometric"] = "MONOCHROME1"
    viewer.set_volume(vol)
    plain(viewer)
    viewer.set_window_level(100, 50)
    axial = viewer.view("axial")
    x0, y0, x1, y1 = image_box(axial)
    assert rgb(axial)[y0:y1, x0:x1].min() > 200, "MONOCHROME1: low values are white"


def test_auto_window_uses_only_loaded_slices() -> None:
    arr = np.zeros((5, 8, 8), dtype=np.int16)
    arr[2] = np.arange(64).reshape(8, 8)
    loaded = np.array([False, False, True, False, False])
    window, level = auto_window(arr, loaded, (0.0, 100.0))
    assert (window, level) == (63.0, 31.5)


def test_qt_calls_cannot_exhaust_the_none_and_true_references(tmp_path: Path) -> None:
    """PySide6 6.12 on CPython 3.11 drops a ``None`` ref per void call and a ``True`` ref per emit."""
    import subprocess
    import sys

    code = (
        "import os; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "import workstation.qt.viewer\n"
        "from PySide6.QtCore import QObject, QPointF, Signal\n"
        "class P(QObject):\n    ping = Signal()\n"
        "p, q = QPointF(), P()\n"
        "for _ in range(200_000):\n    p.setX(1.0); q.ping.emit()\n"
        "print('alive')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and "alive" in proc.stdout, proc.stderr[-2000:]
