"""Cine in the viewer model: which plane loops, how fast, and the next image of each tick. Qt-free.

The model keeps the state and advances one image per ``tick``, wrapping from
the last image in reading order to the first; a clock outside calls ``tick``
(``workstation.qt.viewer.cine_timer`` in the window, a loop in a test), so a
cine loop costs one cached-slice render per frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workstation.viewing.events import CineChanged
from workstation.viewing.orientation import ViewPlane
from workstation.viewing.state import ViewerState

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0
MIN_FPS, MAX_FPS = 1.0, 60.0

SliceSetter = Callable[[ViewPlane, int], None]


class CineControl:
    """Cine state; ``set_slice`` and ``step_slice`` are the model's (array index, images in reading order)."""

    def __init__(
        self, state: ViewerState, emit: Callable[[object], None], set_slice: SliceSetter, step_slice: SliceSetter
    ) -> None:
        self._state = state
        self._emit = emit
        self._set_slice = set_slice
        self._step_slice = step_slice
        self._plane: ViewPlane | None = None
        self._fps = DEFAULT_FPS

    def _changed(self) -> None:
        self._emit(CineChanged(self._plane, self._fps))

    def set_fps(self, fps: float) -> None:
        """Cine speed in images per second (1-60)."""
        self._fps = min(MAX_FPS, max(MIN_FPS, float(fps)))
        self._changed()

    def fps(self) -> float:
        """Cine speed in images per second."""
        return self._fps

    def interval_ms(self) -> int:
        """Milliseconds between two images."""
        return round(1000.0 / self._fps)

    def plane(self) -> ViewPlane | None:
        """The plane cine is running in, if any."""
        return self._plane

    def start(self, plane: ViewPlane | None = None) -> None:
        """Loop through the slices of ``plane`` (default: the active view), wrapping at the end."""
        if self._state.volume is None:
            return
        self._plane = plane or self._state.active
        self._changed()

    def stop(self) -> None:
        """Stop cine."""
        if self._plane is not None:
            self._plane = None
            self._changed()

    def toggle(self, plane: ViewPlane | None = None) -> None:
        """Start or stop cine."""
        if self._plane is not None:
            self.stop()
        else:
            self.start(plane)

    def tick(self) -> None:
        """The next image of the cine plane (the first after the last); stops when there is nothing to show."""
        plane = self._plane
        g = self._state.geoms.get(plane) if plane is not None else None
        if plane is None or g is None or self._state.volume is None:
            self.stop()
            return
        if g.display_number(self._state.cursor[g.normal]) >= g.n_slices:
            self._set_slice(plane, 0 if g.next_step > 0 else g.n_slices - 1)
        else:
            self._step_slice(plane, 1)
