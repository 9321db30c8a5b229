"""Keyboard shortcuts of the MPR viewer (the table is in ``mpr``'s module docstring)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent

from workstation.qt.viewer.orientation import ViewPlane

if TYPE_CHECKING:
    from workstation.qt.viewer.mpr import MprViewer

logger = logging.getLogger(__name__)

_DIGITS = {Qt.Key.Key_1: "1", Qt.Key.Key_2: "2", Qt.Key.Key_3: "3", Qt.Key.Key_4: "4", Qt.Key.Key_5: "5"}


def handle_key(viewer: MprViewer, plane: ViewPlane, event: QKeyEvent) -> bool:
    """Act on ``event`` for the view of ``plane``; ``False`` when the key is not the viewer's."""
    key = event.key()
    st = viewer.state
    if st.volume is None:
        return False
    if event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                            | Qt.KeyboardModifier.MetaModifier):
        return False
    viewer.set_active_plane(plane)
    g = viewer.view(plane).geom
    steps = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -viewer.page_step(),
             Qt.Key.Key_PageDown: viewer.page_step()}
    if key in steps:
        viewer.step_slice(plane, steps[Qt.Key(key)])
    elif key in (Qt.Key.Key_Home, Qt.Key.Key_End) and g is not None:
        first = 0 if g.next_step > 0 else g.n_slices - 1
        viewer.set_slice(plane, first if key == Qt.Key.Key_Home else g.n_slices - 1 - first)
    elif key in _DIGITS:
        return viewer.apply_preset(_DIGITS[Qt.Key(key)])
    elif key == Qt.Key.Key_R:
        viewer.reset()
    elif key == Qt.Key.Key_C:
        viewer.toggle_cine(plane)
    elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
        viewer.remove_last_measurement()
    elif key == Qt.Key.Key_X:
        viewer.set_crosshair_visible(not st.show_crosshair)
    elif key == Qt.Key.Key_I:
        viewer.set_annotations_visible(not st.show_annotations)
    elif key == Qt.Key.Key_O:
        viewer.set_overlay_visible(not viewer.overlay_visible())
    elif key == Qt.Key.Key_M:
        viewer.next_slab_mode()
    elif key == Qt.Key.Key_BracketRight:
        viewer.slab_thicker()
    elif key == Qt.Key.Key_BracketLeft:
        viewer.slab_thinner()
    else:
        return False
    return True
