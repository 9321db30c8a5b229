"""Thick-slab viewing in ``MprViewer`` (a mixin) and its toolbar control.

The slab (``workstation.qt.viewer.slab.SlabSettings`` in the viewer's state) is
the same for every view, each projecting along its own normal in real mm. Keys:
``M`` cycles MIP / MinIP / Avg (a slab that is off comes on at 10 mm), ``[`` and
``]`` make it thinner / thicker (5 mm -> off). ``SlabToolbar`` offers the same
in the window's toolbar and follows changes made by the keys.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from workstation.qt.viewer.orientation import PlaneGeometry
from workstation.qt.viewer.slab import MAX_THICKNESS_MM, MODE_NAMES, SLAB_MODES, SlabMode, SlabSettings
from workstation.qt.viewer.state import ViewerState

if TYPE_CHECKING:
    from workstation.qt.viewer.mpr import MprViewer

logger = logging.getLogger(__name__)

SPIN_STEP_MM = 5


def view_pixels(state: ViewerState, g: PlaneGeometry, s: int, slab: tuple[int, int] | None,
                mode: SlabMode | None = None) -> npt.NDArray[Any]:
    """The 2-D image a view of ``g`` shows at slice ``s``: the slice, or the slab ``slab`` around it
    reduced by ``mode`` (default: the viewer's slab mode).

    While a series streams in, an axial slab uses only the slices that have
    arrived (the centre slice always has: the view waits for it).
    """
    assert state.volume is not None
    array = state.volume.array
    if slab is None:
        return g.extract(array, s)
    start, stop = slab
    reduce = mode if mode is not None else state.slab.mode
    if state.loaded is not None and g.normal == 0 and not state.loaded[start:stop].all():
        have = start + np.flatnonzero(state.loaded[start:stop])
        return g.extract_slab(array, start, stop, reduce, slices=have)
    return g.extract_slab(array, start, stop, reduce)


class SlabControl:
    """Slab methods of the viewer; the viewer provides ``state``, ``slabChanged`` and ``_update_views``."""

    state: ViewerState
    slabChanged: SignalInstance  # noqa: N815 - Qt signal naming

    def _update_views(self) -> None:
        raise NotImplementedError

    def slab(self) -> SlabSettings:
        """A copy of the current slab (thickness 0: off)."""
        return SlabSettings(self.state.slab.thickness_mm, self.state.slab.mode)

    def set_slab(self, thickness_mm: float | None = None, mode: str | None = None) -> None:
        """Show a ``thickness_mm`` slab (0: single slices) reduced by ``mode`` (``mip``, ``minip``, ``avg``)."""
        before = self.slab()
        self.state.slab.set(thickness_mm, mode)
        self._slab_changed(before)

    def slab_thicker(self) -> None:
        """One thickness step up (off -> 5 -> 10 -> 15 -> 20 -> 30 -> 40 mm)."""
        before = self.slab()
        self.state.slab.thicker()
        self._slab_changed(before)

    def slab_thinner(self) -> None:
        """One thickness step down (... 10 -> 5 mm -> off)."""
        before = self.slab()
        self.state.slab.thinner()
        self._slab_changed(before)

    def next_slab_mode(self) -> None:
        """MIP -> MinIP -> Avg -> MIP (a slab that is off comes on at 10 mm MIP)."""
        before = self.slab()
        self.state.slab.next_mode()
        self._slab_changed(before)

    def _slab_changed(self, before: SlabSettings) -> None:
        now = self.state.slab
        if (now.thickness_mm, now.mode) == (before.thickness_mm, before.mode):
            return
        logger.debug("slab %s", now.label() or "off")
        self._update_views()
        self.slabChanged.emit(now.thickness_mm, now.mode)


class SlabToolbar(QWidget):
    """``Slab [MIP v] [10 mm]``: the slab mode and thickness of a viewer, kept in step with its keys."""

    def __init__(self, viewer: MprViewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.setObjectName("SlabToolbar")
        self.mode = QComboBox()
        for mode in SLAB_MODES:
            self.mode.addItem(MODE_NAMES[mode], mode)
        self.mode.setToolTip("Slab projection: MIP (nodules, vessels), MinIP (airways, emphysema), Avg (M cycles)")
        self.thickness = QSpinBox()
        self.thickness.setRange(0, int(MAX_THICKNESS_MM))
        self.thickness.setSingleStep(SPIN_STEP_MM)
        self.thickness.setSuffix(" mm")
        self.thickness.setSpecialValueText("Off")
        self.thickness.setToolTip("Slab thickness in mm along each view's normal (0: single slices; [ and ] step)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(QLabel("Slab"))
        layout.addWidget(self.mode)
        layout.addWidget(self.thickness)
        self.show_slab(viewer.slab().thickness_mm, viewer.slab().mode)
        self.mode.currentIndexChanged.connect(self._mode_picked)
        self.thickness.valueChanged.connect(self._thickness_picked)
        viewer.slabChanged.connect(self.show_slab)

    def _mode_picked(self, _index: int) -> None:
        self.viewer.set_slab(mode=str(self.mode.currentData()))

    def _thickness_picked(self, value: int) -> None:
        self.viewer.set_slab(thickness_mm=float(value))

    def show_slab(self, thickness_mm: float, mode: str) -> None:
        """Show the viewer's slab without sending it back."""
        for widget in (self.mode, self.thickness):
            widget.blockSignals(True)
        try:
            self.mode.setCurrentIndex(max(0, self.mode.findData(mode)))
            self.thickness.setValue(round(thickness_mm))
        finally:
            for widget in (self.mode, self.thickness):
                widget.blockSignals(False)
