"""The slab control in the window's toolbar: ``Slab [MIP v] [10 mm]``, kept in step with the viewer's keys.

The slab itself lives in the viewer model (``workstation.viewing.slab_control``);
this widget shows it and sends the user's picks back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

from workstation.viewing.slab import MAX_THICKNESS_MM, MODE_NAMES, SLAB_MODES

if TYPE_CHECKING:
    from workstation.qt.viewer.mpr import MprViewer

logger = logging.getLogger(__name__)

SPIN_STEP_MM = 5


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
