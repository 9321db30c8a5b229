"""Cine: loop through the slices of one view on a QTimer (a mixin of ``MprViewer``).

The timer runs on the GUI thread and each tick only moves the cursor by one
image, so a cine loop costs one cached-slice render per frame.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer

from workstation.qt.viewer.orientation import ViewPlane
from workstation.qt.viewer.state import ViewerState

if TYPE_CHECKING:
    from workstation.qt.viewer.slice_view import SliceView

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0


class CineControl:
    """Cine methods; the viewer provides ``state``, ``views``, the active plane and slice stepping."""

    state: ViewerState
    views: dict[ViewPlane, SliceView]
    _cine_plane: ViewPlane | None
    _cine_fps: float
    _cine: QTimer

    def _init_cine(self, owner: QObject) -> None:
        self._cine_plane = None
        self._cine_fps = DEFAULT_FPS
        self._cine = QTimer(owner)
        self._cine.timeout.connect(self._cine_step)

    def active_plane(self) -> ViewPlane:
        """The plane keys act on (provided by the viewer)."""
        raise NotImplementedError

    def _update_views(self) -> None:
        raise NotImplementedError

    def set_slice(self, plane: ViewPlane, slice_index: int) -> None:
        """Show a slice in a plane (provided by the viewer)."""
        raise NotImplementedError

    def step_slice(self, plane: ViewPlane, images: int) -> None:
        """Move images forward in a plane (provided by the viewer)."""
        raise NotImplementedError

    def set_cine_fps(self, fps: float) -> None:
        """Cine speed in images per second (1-60)."""
        self._cine_fps = min(60.0, max(1.0, float(fps)))
        self._cine.setInterval(round(1000.0 / self._cine_fps))
        self._update_views()

    def cine_fps(self) -> float:
        """Cine speed in images per second."""
        return self._cine_fps

    def cine_plane(self) -> ViewPlane | None:
        """The plane cine is running in, if any."""
        return self._cine_plane if self._cine.isActive() else None

    def start_cine(self, plane: ViewPlane | None = None) -> None:
        """Loop through the slices of ``plane`` (default: the active view), wrapping at the end."""
        if self.state.volume is None:
            return
        self._cine_plane = plane or self.active_plane()
        self._cine.start(round(1000.0 / self._cine_fps))
        self._update_views()

    def stop_cine(self) -> None:
        """Stop cine."""
        if self._cine.isActive():
            self._cine.stop()
            self._update_views()

    def toggle_cine(self, plane: ViewPlane | None = None) -> None:
        """Start or stop cine."""
        if self._cine.isActive():
            self.stop_cine()
        else:
            self.start_cine(plane)

    def _cine_step(self) -> None:
        plane = self._cine_plane
        g = self.views[plane].geom if plane is not None else None
        if plane is None or g is None:
            self.stop_cine()
            return
        if g.display_number(self.views[plane].slice_index) >= g.n_slices:
            self.set_slice(plane, 0 if g.next_step > 0 else g.n_slices - 1)
        else:
            self.step_slice(plane, 1)
