"""Keyboard shortcuts of the MPR viewer (the table is in ``mpr``'s module docstring).

Keys change the viewer model; the one key that also touches the views (``R``:
reset window/level *and* zoom) goes to the viewer through ``ViewerActions``.
"""

from __future__ import annotations

import logging
from typing import Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent

from workstation.viewing.model import PAGE_STEP, ViewerModel
from workstation.viewing.orientation import ViewPlane

logger = logging.getLogger(__name__)

_DIGITS = {Qt.Key.Key_1: "1", Qt.Key.Key_2: "2", Qt.Key.Key_3: "3", Qt.Key.Key_4: "4", Qt.Key.Key_5: "5"}
_STEPS = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -PAGE_STEP, Qt.Key.Key_PageDown: PAGE_STEP}


class ViewerActions(Protocol):
    """What a view asks of the viewer around it beyond the model: the layout and the views' zoom."""

    def toggle_maximized(self, plane: ViewPlane) -> None:
        """Show ``plane`` alone, or go back to the layout before."""

    def reset(self) -> None:
        """Default window/level and every view fitted."""


def handle_key(model: ViewerModel, actions: ViewerActions, plane: ViewPlane, event: QKeyEvent) -> bool:
    """Act on ``event`` for the view of ``plane``; ``False`` when the key is not the viewer's."""
    key = event.key()
    st = model.state
    if st.volume is None:
        return False
    if event.modifiers() & (
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier
    ):
        return False
    model.set_active_plane(plane)
    if key in _STEPS:
        model.step_slice(plane, _STEPS[Qt.Key(key)])
    elif key in (Qt.Key.Key_Home, Qt.Key.Key_End):
        model.go_to_end(plane, last=key == Qt.Key.Key_End)
    elif key in _DIGITS:
        return model.wl.apply_preset(_DIGITS[Qt.Key(key)])
    elif key == Qt.Key.Key_R:
        actions.reset()
    elif key == Qt.Key.Key_C:
        model.cine.toggle(plane)
    elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
        model.remove_last_measurement()
    elif key == Qt.Key.Key_X:
        model.set_crosshair_visible(not st.show_crosshair)
    elif key == Qt.Key.Key_I:
        model.set_annotations_visible(not st.show_annotations)
    elif key == Qt.Key.Key_O:
        model.overlay.set_visible(not model.overlay.visible())
    elif key == Qt.Key.Key_M:
        model.slab.next_mode()
    elif key == Qt.Key.Key_BracketRight:
        model.slab.thicker()
    elif key == Qt.Key.Key_BracketLeft:
        model.slab.thinner()
    else:
        return False
    return True
