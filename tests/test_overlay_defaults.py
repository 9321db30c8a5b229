"""The overlay a reader sees first: organs outlined (the parenchyma stays readable), lesions filled,
labels named as in the Findings tab."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from inference import Volume
from inference.labels import Label, LabelTable
from workstation.qt.panels import display_name
from workstation.qt.viewer import MprViewer, OverlayPanel

TABLE = LabelTable((Label(1, "lung_right", (200, 40, 30)), Label(2, "lung_nodule", (250, 220, 20), lesion=True)))


@pytest.fixture
def viewer(make_viewer: Callable[..., MprViewer]) -> MprViewer:
    """The shared viewer factory (tests/conftest.py), sized for this file's pixel checks."""
    return make_viewer(size=(600, 600), layout="1x1")


def colours_inside(viewer: MprViewer, mask: np.ndarray) -> set[tuple[int, int, int]]:
    """Colours drawn on the axial view at the widget points over ``mask`` (a slice-5 [row, col] mask)."""
    view = viewer.view("axial")
    image = view.grab().toImage()
    out = set()
    for r, c in zip(*np.nonzero(mask), strict=True):
        g = view.geom
        assert g is not None
        p = view.image_to_widget(*g.index_to_image((5.0, float(r), float(c))))
        colour = image.pixelColor(int(p.x()), int(p.y()))
        out.add((colour.red(), colour.green(), colour.blue()))
    return out


def test_default_overlay_outlines_organs_and_fills_lesions(qtbot: QtBot, viewer: MprViewer) -> None:
    arr = np.full((10, 60, 60), -800, dtype=np.int16)
    axial = np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])  # [slice,row,col] -> z, y, x
    viewer.set_volume(Volume(arr, axial, modality="CT", units="HU"))
    labels = np.zeros(arr.shape, dtype=np.uint8)
    labels[:, 5:55, 5:55] = 1
    labels[4:7, 28:34, 28:34] = 2
    viewer.go_to_index((5, 45, 45))  # crosshair clear of the regions looked at
    viewer.set_overlay(labels, TABLE)
    viewer.set_overlay_opacity(1.0)
    assert viewer.overlay_mode() == "auto"
    lung_inside = np.zeros((60, 60), dtype=bool)
    lung_inside[12:22, 12:22] = True  # deep inside the lung, far from its edge and the nodule
    nodule_inside = np.zeros((60, 60), dtype=bool)
    nodule_inside[29:33, 29:33] = True
    assert (200, 40, 30) not in colours_inside(viewer, lung_inside), "the lung is painted over"
    assert colours_inside(viewer, nodule_inside) == {(250, 220, 20)}, "the nodule is not filled"
    edge = np.zeros((60, 60), dtype=bool)
    edge[5, 20:40] = True
    assert (200, 40, 30) in colours_inside(viewer, edge), "the lung's outline is not drawn"
    panel = OverlayPanel(viewer)
    qtbot.addWidget(panel)
    assert panel.auto_button.isChecked()
    names = [panel.labels.item(i).text() for i in range(panel.labels.count())]
    assert names == [display_name("lung_right"), display_name("lung_nodule")] == ["Right lung", "Lung nodule"]
    panel.fill_button.setChecked(True)
    assert viewer.overlay_mode() == "fill" and colours_inside(viewer, lung_inside) == {(200, 40, 30)}
