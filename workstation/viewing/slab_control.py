"""Thick-slab viewing in the viewer model, and the pixels a view shows. Qt-free.

The slab (``SlabSettings`` in the model's state) is the same for every view,
each projecting along its own normal in real mm. ``M`` cycles MIP / MinIP / Avg
(a slab that is off comes on at 10 mm), ``[`` and ``]`` make it thinner /
thicker (5 mm -> off); the toolbar (``workstation.qt.viewer.slab_toolbar``)
offers the same and follows changes made by the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from workstation.viewing.events import SlabChanged
from workstation.viewing.orientation import PlaneGeometry
from workstation.viewing.slab import SlabMode, SlabSettings
from workstation.viewing.state import ViewerState

logger = logging.getLogger(__name__)


def view_pixels(
    state: ViewerState, g: PlaneGeometry, s: int, slab: tuple[int, int] | None, mode: SlabMode | None = None
) -> npt.NDArray[Any]:
    """The 2-D image a view of ``g`` shows at slice ``s``: the slice, or the slab ``slab`` around it
    reduced by ``mode`` (default: the model's slab mode).

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
    """The slab every view shows; changes reach the model's listeners as ``SlabChanged``."""

    def __init__(self, state: ViewerState, emit: Callable[[object], None]) -> None:
        self._state = state
        self._emit = emit

    def current(self) -> SlabSettings:
        """A copy of the current slab (thickness 0: off)."""
        return SlabSettings(self._state.slab.thickness_mm, self._state.slab.mode)

    def set(self, thickness_mm: float | None = None, mode: str | None = None) -> None:
        """Show a ``thickness_mm`` slab (0: single slices) reduced by ``mode`` (``mip``, ``minip``, ``avg``)."""
        before = self.current()
        self._state.slab.set(thickness_mm, mode)
        self._changed(before)

    def thicker(self) -> None:
        """One thickness step up (off -> 5 -> 10 -> 15 -> 20 -> 30 -> 40 mm)."""
        before = self.current()
        self._state.slab.thicker()
        self._changed(before)

    def thinner(self) -> None:
        """One thickness step down (... 10 -> 5 mm -> off)."""
        before = self.current()
        self._state.slab.thinner()
        self._changed(before)

    def next_mode(self) -> None:
        """MIP -> MinIP -> Avg -> MIP (a slab that is off comes on at 10 mm MIP)."""
        before = self.current()
        self._state.slab.next_mode()
        self._changed(before)

    def _changed(self, before: SlabSettings) -> None:
        now = self._state.slab
        if (now.thickness_mm, now.mode) == (before.thickness_mm, before.mode):
            return
        logger.debug("slab %s", now.label() or "off")
        self._emit(SlabChanged(now.thickness_mm, now.mode))
