"""Window/level of the viewer model: presets, the automatic window, and the W/L drag. Qt-free.

Every view shares one window (width, centre). A volume opens on its modality's
default preset, or on the automatic window (percentiles of the loaded slices)
where there is none; an automatic window is recomputed once a streaming series
has fully arrived, unless the user has set one by hand since.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workstation.imaging import Preset, PresetBook, auto_window, load_presets
from workstation.viewing.events import WindowLevelChanged
from workstation.viewing.state import ViewerState

logger = logging.getLogger(__name__)

INT_WL_FLOOR = 20.0
"""Smallest window the drag scales from for integer data (a narrow window still moves at a usable speed)."""
WL_PIXELS_PER_DOUBLING = 200.0
"""Mouse travel (pixels) that changes the window or level by the (floored) starting window."""


class WindowLevelControl:
    """The shared display window; changes reach the model's listeners as ``WindowLevelChanged``."""

    def __init__(self, state: ViewerState, emit: Callable[[object], None], presets: PresetBook | None = None) -> None:
        self._state = state
        self._emit = emit
        self.book = presets if presets is not None else load_presets()
        self.floor = INT_WL_FLOOR
        self.auto = False

    def set(self, window: float, level: float, name: str = "") -> None:
        """Set the window (width, centre) by hand (an automatic window is then no longer recomputed)."""
        self.auto = False
        self._apply(window, level, name)

    def get(self) -> tuple[float, float]:
        """``(window, level)``."""
        return self._state.window, self._state.level

    def _apply(self, window: float, level: float, name: str) -> None:
        st = self._state
        window = max(float(window), 1e-6)
        if (window, float(level), name) == (st.window, st.level, st.wl_name):
            return
        st.window, st.level, st.wl_name = window, float(level), name
        self._emit(WindowLevelChanged(window, float(level), name))

    def presets(self) -> tuple[Preset, ...]:
        """The presets of the shown modality (empty: automatic window only)."""
        vol = self._state.volume
        return self.book.for_modality(vol.modality) if vol is not None else ()

    def apply_preset(self, key_or_id: str) -> bool:
        """Apply a preset by digit key or id (``"1"``, ``"lung"``); for modalities without presets "1"/"auto"."""
        if self._state.volume is None:
            return False
        preset = next((p for p in self.presets() if key_or_id in (p.key, p.id)), None)
        if preset is not None:
            self.set(preset.window, preset.level, preset.name)
            return True
        if key_or_id in ("auto",) or (not self.presets() and key_or_id == "1"):
            self.apply_auto()
            return True
        return False

    def apply_default(self) -> None:
        """The modality's default preset, or the automatic window."""
        vol = self._state.volume
        if vol is None:
            return
        self.floor = INT_WL_FLOOR if vol.array.dtype.kind in "iub" else 0.0
        preset = self.book.default_for(vol.modality, vol.metadata)
        if preset is not None:
            self._state.wl_name = ""
            self.set(preset.window, preset.level, preset.name)
        else:
            self.apply_auto()

    def apply_auto(self) -> None:
        """The automatic window of the slices loaded so far."""
        st = self._state
        if st.volume is None:
            return
        window, level = auto_window(st.volume.array, st.loaded, self.book.auto_percentiles)
        if self.floor == 0.0 or st.volume.array.dtype.kind == "f":
            self.floor = window / 5.0
        self.auto = True
        self._apply(window, level, "Auto")

    def drag(self, start_window: float, start_level: float, dx: float, dy: float) -> None:
        """The W/L drag: ``dx`` pixels right widen, ``dy`` pixels down raise the level (darker), both in
        proportion to the starting window (at least ``floor``)."""
        base = max(start_window, self.floor)
        self.set(
            max(start_window + dx * base / WL_PIXELS_PER_DOUBLING, self.floor / 20.0),
            start_level + dy * base / WL_PIXELS_PER_DOUBLING,
        )
