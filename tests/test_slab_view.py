"""Thick-slab viewing (MIP / MinIP / Avg) in the MPR viewer, checked on the pixels the views draw.

A radiologist reading lung nodules presses ``]`` for a 5 mm, then 10 mm MIP slab:
a bright dot one or two slices away from the shown one must appear, one beyond
the slab's half-thickness (in mm, not slices) must not, the corner must say
``MIP 10 mm``, the label overlay stays that of the centre slice, and ``[`` back
to off must give exactly the single slice again.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from inference.labels import Label, LabelTable
from inference.volume import Volume
from workstation.qt.viewer import MprViewer, SlabSettings, SlabToolbar, SliceView
from workstation.viewing.slab import project, slab_bounds

BG, BRIGHT, DARK = 0, 1000, -1000
SHAPE = (21, 48, 40)  # slices 2 mm apart (axial), rows 1 mm, columns 1 mm
CENTRE = (10, 24, 20)


def _volume(spacing: tuple[float, float, float] = (2.0, 1.0, 1.0), shape: tuple[int, int, int] = SHAPE) -> Volume:
    """An axial CT volume of 0 HU: slices along +z, rows along +y, columns along +x."""
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, spacing[0])
    affine[:3, 1] = (0.0, spacing[1], 0.0)
    affine[:3, 2] = (spacing[2], 0.0, 0.0)
    return Volume(np.full(shape, BG, dtype=np.int16), affine, modality="CT", units="HU")


def _rgb(widget: QWidget) -> npt.NDArray[np.uint8]:
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    w, h = img.width(), img.height()
    raw = np.frombuffer(img.constBits(), dtype=np.uint8).reshape(h, img.bytesPerLine())[:, : w * 4]
    return np.ascontiguousarray(raw.reshape(h, w, 4)[..., [2, 1, 0]])


def _key(widget: QWidget, k: Qt.Key, text: str = "") -> None:
    QApplication.sendEvent(widget, QKeyEvent(QEvent.Type.KeyPress, k, Qt.KeyboardModifier.NoModifier, text))


def _grey_at(view: SliceView, index: tuple[int, int, int]) -> int:
    """The red channel drawn at the centre of voxel ``index`` (projected onto the view's slice)."""
    g = view.geom
    assert g is not None
    p: QPointF = view.image_to_widget(*g.index_to_image(index))
    return int(_rgb(view)[round(p.y()), round(p.x()), 0])


def _corner(view: SliceView) -> list[str]:
    """The bottom-left corner text as the view last drew it (drawn now)."""
    view.grab()
    return view.corner_text["bl"]


def _dot(arr: npt.NDArray[np.int16], index: tuple[int, int, int], value: int, radius: int = 2) -> None:
    k, r, c = index
    arr[k, r - radius:r + radius + 1, c - radius:c + radius + 1] = value


@pytest.fixture
def viewer(make_viewer: Callable[..., MprViewer]) -> MprViewer:
    """The shared viewer factory (tests/conftest.py), sized for this file's pixel checks."""
    return make_viewer(size=(900, 700))


def _show(viewer: MprViewer, volume: Volume, loaded: npt.NDArray[np.bool_] | None = None) -> SliceView:
    viewer.set_volume(volume, loaded=loaded)
    viewer.set_cursor_index(CENTRE)
    viewer.set_crosshair_visible(False)
    viewer.set_window_level(2000, 0)  # -1000 HU black, 0 HU mid grey, 1000 HU white
    axial = viewer.view("axial")
    axial.setFocus()
    return axial


def test_mip_key_shows_a_dot_from_a_neighbouring_slice_and_off_restores(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = _volume()
    near, far = (14, 14, 12), (14, 34, 28)
    _dot(vol.array, (CENTRE[0] + 2, *near[1:]), BRIGHT)  # 4 mm from the shown slice
    _dot(vol.array, (CENTRE[0] + 4, *far[1:]), BRIGHT)  # 8 mm: outside a 10 mm slab
    axial = _show(viewer, vol)
    single = _rgb(axial)
    assert _grey_at(axial, near) == pytest.approx(128, abs=2) and _grey_at(axial, far) == pytest.approx(128, abs=2)
    assert "MIP" not in " ".join(_corner(axial))

    _key(axial, Qt.Key.Key_BracketRight, "]")  # 5 mm: slices 9..11, the dot 2 slices away is not in it
    assert viewer.slab() == SlabSettings(5.0, "mip") and "MIP 5 mm" in _corner(axial)
    assert _grey_at(axial, near) == pytest.approx(128, abs=2)
    _key(axial, Qt.Key.Key_BracketRight, "]")  # 10 mm = 5 slices of 2 mm: 8..12
    assert _grey_at(axial, near) > 250, "the bright dot 4 mm away shows in the 10 mm MIP"
    assert _grey_at(axial, far) == pytest.approx(128, abs=2), "a dot 8 mm away lies outside a 10 mm slab"
    assert "MIP 10 mm" in _corner(axial)
    assert "Slab MIP 10 mm (each view along its normal)" in [t for t, _, _ in viewer.info_pane.lines()]

    _key(axial, Qt.Key.Key_BracketLeft, "[")
    _key(axial, Qt.Key.Key_BracketLeft, "[")  # 10 -> 5 -> off
    assert not viewer.slab().active
    assert np.array_equal(_rgb(axial), single), "off draws exactly the single slice again"
    assert all("MIP" not in t for t in _corner(axial))


def test_m_cycles_minip_and_average(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = _volume()
    bright, dark = (14, 14, 12), (14, 34, 28)
    _dot(vol.array, (CENTRE[0] - 1, *bright[1:]), BRIGHT)
    _dot(vol.array, (CENTRE[0] + 1, *dark[1:]), DARK)
    axial = _show(viewer, vol)
    _key(axial, Qt.Key.Key_M, "m")  # off -> MIP 10 mm
    assert viewer.slab() == SlabSettings(10.0, "mip") and "MIP 10 mm" in _corner(axial)
    assert _grey_at(axial, bright) > 250 and _grey_at(axial, dark) == pytest.approx(128, abs=2)
    _key(axial, Qt.Key.Key_M, "m")
    assert "MinIP 10 mm" in _corner(axial)
    assert _grey_at(axial, dark) < 5 and _grey_at(axial, bright) == pytest.approx(128, abs=2)
    _key(axial, Qt.Key.Key_M, "m")
    assert "Avg 10 mm" in _corner(axial)
    # the mean of 5 slices: 1000/5 = 200 HU and -200 HU, drawn at 128 +- 200/2000*255
    assert _grey_at(axial, bright) == pytest.approx(128 + 25.5, abs=2)
    assert _grey_at(axial, dark) == pytest.approx(128 - 25.5, abs=2)
    _key(axial, Qt.Key.Key_M, "m")
    assert viewer.slab().mode == "mip"


def test_each_view_projects_along_its_own_normal_in_mm(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = _volume()  # coronal normal = rows, 1 mm apart: 10 mm = 10 rows (centre-4 .. centre+5)
    inside, outside = (10, CENTRE[1] + 5, 12), (6, CENTRE[1] - 6, 28)
    _dot(vol.array, inside, BRIGHT, radius=1)
    _dot(vol.array, outside, BRIGHT, radius=1)
    _show(viewer, vol)
    coronal = viewer.view("coronal")
    viewer.set_slab(10.0, "mip")
    assert _grey_at(coronal, inside) > 250
    assert _grey_at(coronal, outside) == pytest.approx(128, abs=2), "6 mm before the centre: outside"
    assert "MIP 10 mm" in _corner(coronal)


def test_the_overlay_stays_that_of_the_centre_slice(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = _volume()
    axial = _show(viewer, vol)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[CENTRE[0] + 1, 5:15, 5:15] = 1  # a label one slice away: inside the slab, not on the shown slice
    viewer.set_overlay(labels, LabelTable((Label(1, "nodule", (255, 0, 0)),)))
    viewer.set_overlay_opacity(1.0)
    viewer.set_slab(20.0, "mip")
    px = _rgb(axial)
    assert int(((px[..., 0] > 200) & (px[..., 1] < 60)).sum()) == 0, "no label of a neighbouring slice is drawn"
    viewer.go_to_index((CENTRE[0] + 1, CENTRE[1], CENTRE[2]))
    px = _rgb(axial)
    assert int(((px[..., 0] > 200) & (px[..., 1] < 60)).sum()) > 100


def test_a_streaming_slab_uses_only_slices_that_arrived(qtbot: QtBot, viewer: MprViewer) -> None:
    vol = _volume()
    spot = (14, 14, 12)
    _dot(vol.array, (CENTRE[0] + 1, *spot[1:]), BRIGHT)
    loaded = np.zeros(SHAPE[0], dtype=bool)
    loaded[: CENTRE[0] + 1] = True  # the slice with the dot has not arrived
    axial = _show(viewer, vol, loaded)
    viewer.set_slab(10.0, "mip")
    assert _grey_at(axial, spot) == pytest.approx(128, abs=2)
    viewer.mark_loaded(CENTRE[0] + 1, SHAPE[0])
    assert _grey_at(axial, spot) > 250


def test_toolbar_sets_the_slab_and_follows_the_keys(qtbot: QtBot, viewer: MprViewer) -> None:
    bar = SlabToolbar(viewer)
    qtbot.addWidget(bar)
    axial = _show(viewer, _volume())
    assert bar.thickness.text() == "Off" and bar.mode.currentText() == "MIP"
    bar.thickness.setValue(15)
    assert viewer.slab() == SlabSettings(15.0, "mip") and "MIP 15 mm" in _corner(axial)
    bar.mode.setCurrentIndex(bar.mode.findData("minip"))
    assert viewer.slab().mode == "minip"
    _key(axial, Qt.Key.Key_M, "m")
    assert bar.mode.currentText() == "Avg"
    _key(axial, Qt.Key.Key_BracketRight, "]")
    assert bar.thickness.value() == 20 and viewer.slab().thickness_mm == 20.0


# ----------------------------------------------------------------------------- the Qt-free part


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32])
def test_project_equals_numpy_on_every_axis(axis: int, dtype: type[np.generic]) -> None:
    rng = np.random.default_rng(axis)
    block = rng.integers(-900, 900, size=(37, 11, 9)).astype(dtype) if dtype != np.uint16 else \
        rng.integers(0, 4000, size=(37, 11, 9)).astype(dtype)
    np.testing.assert_array_equal(project(block, axis, "mip"), block.max(axis=axis))
    np.testing.assert_array_equal(project(block, axis, "minip"), block.min(axis=axis))
    mean = block.astype(np.float64).mean(axis=axis)
    avg = project(block, axis, "avg")
    assert avg.dtype == block.dtype
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(avg, mean, rtol=1e-5)
    else:
        np.testing.assert_array_equal(avg, np.floor(mean + 0.5).astype(dtype))


def test_slab_bounds_are_real_mm_centred_and_clipped() -> None:
    assert slab_bounds(50, 100, 1.0, 10.0) == (46, 56)  # 10 slices, one more after the centre
    assert slab_bounds(50, 100, 2.0, 10.0) == (48, 53)  # 5 slices of 2 mm
    assert slab_bounds(50, 100, 5.0, 5.0) == (50, 51)  # one slice: as thick as the slices
    assert slab_bounds(50, 100, 10.0, 5.0) == (50, 51)  # thinner than a slice: the slice itself
    assert slab_bounds(1, 100, 1.0, 10.0) == (0, 7)  # clipped at the first slice
    assert slab_bounds(98, 100, 1.0, 10.0) == (94, 100)
    s = SlabSettings()
    seen = []
    for _ in range(8):
        s.thicker()
        seen.append(s.thickness_mm)
    assert seen[:4] == [5.0, 10.0, 15.0, 20.0] and seen[-1] == seen[-2]
    with pytest.raises(ValueError, match="slab mode"):
        s.set(mode="max")


def test_axial_20_slice_slab_of_512x512_renders_within_10_ms(qtbot: QtBot, viewer: MprViewer) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(60, 512, 512)).astype(np.int16)
    affine = np.diag([1.0, 0.7, 0.7, 1.0])[[2, 1, 0, 3]]
    affine[:3, :3] = [[0.0, 0.0, 0.7], [0.0, 0.7, 0.0], [1.0, 0.0, 0.0]]
    viewer.set_volume(Volume(arr, affine, modality="CT", units="HU"))
    axial = viewer.view("axial")
    viewer.set_slab(20.0, "mip")
    g = axial.geom
    assert g is not None and axial.model.state.slab_bounds(g, axial.slice_index) == (21, 41)  # 20 slices
    times: dict[str, float] = {}
    for mode in ("mip", "minip", "avg"):
        viewer.set_slab(mode=mode)
        block = arr[21:41]
        runs = []
        for _ in range(15):
            t0 = time.perf_counter()
            project(block, 0, mode)
            runs.append((time.perf_counter() - t0) * 1000.0)
        renders = []
        for _ in range(5):
            axial.invalidate()
            axial.grab()
            renders.append(axial.last_render_ms)
        times[mode] = statistics.median(runs)
        print(f"axial 20-slice 512x512 {mode}: projection {times[mode]:.2f} ms, "
              f"slab + window render {statistics.median(renders):.2f} ms (median)")
    assert max(times.values()) < 10.0, times
