"""The viewer model without Qt: what a radiologist changes in the MPR viewer, checked on the model alone.

No ``QApplication`` and no widget: the model (``workstation.viewing``) is driven
the way the views drive it, its events are recorded, and every expected value
is worked out here from the volume's geometry (an anisotropic grid: 2.5 mm
slices, 0.7 mm rows, 0.5 mm columns), not read back from the code under test.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest

from inference.labels import Label, LabelTable
from inference.volume import Volume
from tests.conftest import REPO
from workstation.imaging import load_presets
from workstation.viewing import (
    CineChanged,
    CursorMoved,
    MeasurementsChanged,
    OverlayChanged,
    RoiMeasurement,
    RulerMeasurement,
    SlabChanged,
    SlicesArrived,
    ViewerModel,
    VolumeShown,
    WindowLevelChanged,
)
from workstation.viewing.annotations import corner_lines
from workstation.viewing.slab import SlabSettings
from workstation.viewing.slab_control import view_pixels

SLICE_MM, ROW_MM, COL_MM = 2.5, 0.7, 0.5
SHAPE = (12, 30, 40)  # slices (towards the head), rows (towards the back), columns (towards the patient's left)
ORIGIN = np.array([-5.0, 7.0, 11.0])


def lps_of(k: float, j: float, i: float) -> tuple[float, float, float]:
    """Where voxel (k, j, i) lies in patient space, from the grid as built below."""
    return (ORIGIN[0] + COL_MM * i, ORIGIN[1] + ROW_MM * j, ORIGIN[2] + SLICE_MM * k)


def make_volume(modality: str = "CT") -> Volume:
    """An axial CT-like grid whose value differs per voxel: k*1000 + j*40 + i."""
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, SLICE_MM)
    affine[:3, 1] = (0.0, ROW_MM, 0.0)
    affine[:3, 2] = (COL_MM, 0.0, 0.0)
    affine[:3, 3] = ORIGIN
    k, j, i = np.indices(SHAPE)
    arr = (k * 1000 + j * 40 + i).astype(np.int16)
    return Volume(arr, affine, modality=modality, units="HU")


@pytest.fixture
def model() -> tuple[ViewerModel, list[object]]:
    """A model showing the volume, and the events it sent since (cleared after ``set_volume``)."""
    m = ViewerModel(load_presets())
    events: list[object] = []
    m.subscribe(events.append)
    m.set_volume(make_volume())
    assert any(isinstance(e, VolumeShown) for e in events)
    events.clear()
    return m, events


def of(events: list[object], kind: type) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def test_the_model_imports_no_qt() -> None:
    code = (
        "import sys, workstation.viewing, workstation.viewing.model; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_cursor_moves_link_the_planes_and_report_lps(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    assert m.current_index() == (SHAPE[0] // 2, SHAPE[1] // 2, SHAPE[2] // 2)  # a new volume opens at its centre
    m.set_cursor_index((3, 5, 7))
    (moved,) = of(events, CursorMoved)
    assert isinstance(moved, CursorMoved)
    assert moved.index == (3, 5, 7)
    assert moved.lps == pytest.approx(lps_of(3, 5, 7))
    assert dict(moved.slices) == {"axial": 3, "coronal": 5, "sagittal": 7}
    assert m.current_lps() == pytest.approx(lps_of(3, 5, 7))

    events.clear()
    m.step_slice("axial", 1)  # next image: one slice towards the feet
    assert m.current_lps()[2] == pytest.approx(lps_of(3, 5, 7)[2] - SLICE_MM)
    assert [e.slices for e in of(events, CursorMoved)] == [(("axial", 2),)]  # type: ignore[attr-defined]

    m.set_cursor_index((-4, 99, 7))  # clipped to the volume
    assert m.current_index() == (0, SHAPE[1] - 1, 7)
    target = lps_of(9, 2, 31)
    assert m.lps_to_voxel(np.array(target) + 0.2) == (9, 2, 31)  # nearest voxel of a point 0.2 mm off


def test_window_level_by_hand_by_preset_and_by_drag(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    lung = next(p for p in load_presets().for_modality("CT") if p.id == "lung")
    assert m.wl.apply_preset(lung.key)
    assert m.wl.get() == (lung.window, lung.level)
    assert of(events, WindowLevelChanged) == [WindowLevelChanged(lung.window, lung.level, lung.name)]

    m.wl.set(400.0, 40.0)
    events.clear()
    # documented drag: 200 px right widens by the starting window, 100 px up lowers the level by half of it
    m.wl.drag(400.0, 40.0, dx=200.0, dy=-100.0)
    assert m.wl.get() == pytest.approx((800.0, -160.0))
    assert of(events, WindowLevelChanged) == [WindowLevelChanged(800.0, -160.0, "")]
    m.wl.set(800.0, -160.0)
    assert len(of(events, WindowLevelChanged)) == 1  # no change, no event


def test_slab_thickness_in_mm_and_the_pixels_it_shows(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    m.set_cursor_index((6, 10, 10))
    events.clear()
    m.slab.set(thickness_mm=10.0, mode="mip")
    assert of(events, SlabChanged) == [SlabChanged(10.0, "mip")]
    g = m.state.geoms["axial"]
    bounds = m.state.slab_bounds(g, m.slice_index("axial"))
    assert bounds == (5, 9)  # 10 mm of 2.5 mm slices = 4 slices; the extra one after the centre
    shown = view_pixels(m.state, g, 6, bounds)
    arr = m.state.volume.array  # type: ignore[union-attr]
    assert np.array_equal(shown, arr[5:9].max(axis=0))  # axial: rows down = back, columns right = left
    m.slab.thicker()
    m.slab.next_mode()
    assert (m.slab.current().thickness_mm, m.slab.current().mode) == (15.0, "minip")
    m.slab.set(thickness_mm=0.0)
    assert not m.slab.current().active and of(events, SlabChanged)[-1] == SlabChanged(0.0, "minip")


def test_overlay_visibility_per_label_and_whole(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    labels: npt.NDArray[np.uint8] = np.zeros(SHAPE, dtype=np.uint8)
    labels[2:5, 3:9, 4:12] = 1
    labels[6:8, 10:20, 20:30] = 2
    table = LabelTable((Label(1, "liver", (200, 100, 50)), Label(2, "lesion", (0, 255, 0), lesion=True)))
    m.overlay.set(labels, table)
    m.overlay.set_label_visible(2, False)
    ov = m.overlay.current()
    assert ov is not None
    assert m.overlay.label_visible(1) and not m.overlay.label_visible(2)
    assert int(ov.lut[1]) == 0xFF000000 | (200 << 16) | (100 << 8) | 50 and int(ov.lut[2]) == 0
    m.overlay.set_visible(False)
    assert not m.overlay.visible() and m.overlay.label_visible(1)
    assert len(of(events, OverlayChanged)) == 3
    m.overlay.set_label_visible(2, False)  # already hidden: nothing happens
    assert len(of(events, OverlayChanged)) == 3
    with pytest.raises(ValueError, match="shape"):
        m.overlay.set(labels[:-1], table)


def test_ruler_and_roi_in_mm_on_an_anisotropic_grid(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    # axial image: x runs along columns (0.5 mm), y along rows (0.7 mm)
    ruler = m.measure("ruler", "axial", (4.5, 3.5), (14.5, 13.5))
    assert isinstance(ruler, RulerMeasurement)
    assert ruler.length_mm == pytest.approx(math.hypot(10 * COL_MM, 10 * ROW_MM))
    assert ruler.text() == f"{math.hypot(5.0, 7.0):.1f} mm"
    # coronal image: y runs down the slices (2.5 mm)
    tall = m.measure("ruler", "coronal", (3.5, 2.5), (3.5, 6.5))
    assert isinstance(tall, RulerMeasurement) and tall.length_mm == pytest.approx(4 * SLICE_MM)
    assert m.measure("ruler", "axial", (4.5, 3.5), (4.5, 3.5)) is None  # a click is no ruler

    m.add_measurement(ruler)
    m.add_measurement(tall)
    assert m.measurements() == [ruler, tall]
    m.remove_last_measurement()
    assert m.measurements() == [ruler]
    assert of(events, MeasurementsChanged) == [MeasurementsChanged(1), MeasurementsChanged(2), MeasurementsChanged(1)]

    # an ROI circle of radius 3 pixels centred on pixel (10, 10) of the centre axial slice
    roi = m.measure("roi", "axial", (7.5, 7.5), (13.5, 13.5))
    assert isinstance(roi, RoiMeasurement)
    k = m.slice_index("axial")
    inside = [(j, i) for j in range(SHAPE[1]) for i in range(SHAPE[2]) if (j - 10) ** 2 + (i - 10) ** 2 <= 9]
    values = [k * 1000 + j * 40 + i for j, i in inside]
    assert roi.pixels == len(inside)
    assert roi.mean == pytest.approx(np.mean(values)) and roi.std == pytest.approx(np.std(values))
    assert roi.area_mm2 == pytest.approx(len(inside) * ROW_MM * COL_MM)


def test_cine_wraps_from_the_last_image_to_the_first(model: tuple[ViewerModel, list[object]]) -> None:
    m, events = model
    m.set_slice("axial", 1)
    m.cine.set_fps(25)
    m.cine.start("axial")
    assert of(events, CineChanged)[-1] == CineChanged("axial", 25.0) and m.cine.interval_ms() == 40
    m.cine.tick()  # next image is towards the feet: index 0, the last in reading order
    assert m.slice_index("axial") == 0
    m.cine.tick()  # wraps to the first image (the head end)
    assert m.slice_index("axial") == SHAPE[0] - 1
    m.set_volume(make_volume())  # a new series stops cine
    assert m.cine.plane() is None and of(events, CineChanged)[-1] == CineChanged(None, 25.0)


def test_streaming_volume_reports_arrivals_and_completion() -> None:
    m = ViewerModel(load_presets())
    events: list[object] = []
    m.subscribe(events.append)
    loaded = np.zeros(SHAPE[0], dtype=bool)
    loaded[SHAPE[0] // 2] = True
    m.set_volume(make_volume(), loaded=loaded)
    assert not m.is_loaded() and m.state.loaded_count() == (1, SHAPE[0])
    assert m.state.value_at((0, 0, 0)) is None  # a slice that has not arrived has no value yet
    m.mark_loaded(0, 6)
    m.mark_loaded(6, SHAPE[0])
    assert of(events, SlicesArrived) == [SlicesArrived(0, 6, False), SlicesArrived(6, SHAPE[0], True)]
    assert m.is_loaded() and m.state.value_at((2, 3, 4)) == 2 * 1000 + 3 * 40 + 4


def test_corner_text_names_image_position_window_slab_and_value(model: tuple[ViewerModel, list[object]]) -> None:
    m, _ = model
    m.set_cursor_index((3, 5, 7))
    m.wl.set(1500.0, -600.0, "Lung")
    lines = corner_lines(m, "axial", SlabSettings(10.0, "mip"), magnification=1.5, hover=(3, 5, 7))
    text = {corner: [t for t, _ in rows] for corner, rows in lines.items()}
    # slice 3 of 12 counted head to feet (index 11 is the head end) is image 9; it lies at z = 11 + 3 * 2.5 mm
    assert text["tr"] == ["AXIAL", "Slice 9 / 12", f"S {lps_of(3, 5, 7)[2]:.1f} mm"]
    assert text["bl"] == ["W 1500  L -600  Lung", "MIP 10 mm", "Zoom 150%"]
    assert text["br"] == [f"{3 * 1000 + 5 * 40 + 7} HU", "Tool: W/L"]
    assert corner_lines(ViewerModel(load_presets()), "axial", SlabSettings(), 1.0) == {}  # nothing open
