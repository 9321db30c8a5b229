"""The label overlay of the viewer model: map, opacity, fill/outline, visibility per label. Qt-free.

A label map must lie on the volume's exact grid (the engine guarantees it), so
it is sliced with the same plane geometry as the image. Colours come from the
model's label table; visibility per label is a change of the colour table only,
so toggling a label never touches the voxels. Opacity and mode outlive one
overlay: the next one is drawn the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.labels import LabelTable
from workstation.viewing.events import OverlayChanged
from workstation.viewing.label_colours import MAX_LABEL_VALUE
from workstation.viewing.state import OverlayMode, OverlayState, ViewerState, next_version

logger = logging.getLogger(__name__)

OVERLAY_MODES: tuple[OverlayMode, ...] = ("auto", "fill", "outline")


class OverlayControl:
    """The overlay shown over every view; changes reach the model's listeners as ``OverlayChanged``."""

    def __init__(self, state: ViewerState, emit: Callable[[object], None]) -> None:
        self._state = state
        self._emit = emit
        self._opacity = 0.5
        self._mode: OverlayMode = "auto"

    def _changed(self) -> None:
        self._emit(OverlayChanged())

    def set(self, labelmap: npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_], table: LabelTable) -> None:
        """Draw an integer label map (the volume's shape) in the table's colours over every view.

        Opacity and fill/outline carry over from the previous overlay; every label starts visible.
        """
        vol = self._state.volume
        if vol is None:
            raise ValueError("set a volume before its overlay")
        arr = np.asarray(labelmap)
        if arr.shape != vol.shape:
            raise ValueError(f"label map shape {arr.shape} differs from the volume's {vol.shape}")
        if arr.dtype == np.bool_:
            arr = arr.view(np.uint8)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"a label map holds integers, got {arr.dtype}")
        known = {lab.value for lab in table}
        if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:
            # every value the type can hold gets a colour-table entry (unknown ones transparent): no pass over
            # the voxels on the GUI thread (min and max of a 200-slice map took ~12 ms there)
            hi = int(np.iinfo(arr.dtype).max)
        else:
            lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
            if lo < 0 or hi >= MAX_LABEL_VALUE:
                raise ValueError(f"label values must lie in 0..{MAX_LABEL_VALUE - 1}, got {lo}..{hi}")
            if hi > 0 and hi not in known:
                logger.info("label map holds values without a table entry (up to %d); those are not drawn", hi)
        self._state.overlay = OverlayState(arr, table, max(hi, *known, 0), self._opacity, self._mode)
        self._state.overlay.refresh_lut()
        self._changed()

    def clear(self) -> None:
        """Remove the overlay."""
        if self._state.overlay is not None:
            self._state.overlay = None
            self._changed()

    def current(self) -> OverlayState | None:
        """The overlay shown, with its table and settings."""
        return self._state.overlay

    def set_opacity(self, opacity: float) -> None:
        """Overlay opacity, 0 (invisible) to 1 (opaque)."""
        self._opacity = min(1.0, max(0.0, float(opacity)))
        if self._state.overlay is not None:
            self._state.overlay.opacity = self._opacity
        self._changed()

    def opacity(self) -> float:
        """Overlay opacity 0..1."""
        return self._opacity

    def set_mode(self, mode: OverlayMode | str) -> None:
        """``fill`` paints regions, ``outline`` only their edges (the anatomy stays visible inside), ``auto``
        fills lesions and outlines the rest."""
        if mode not in OVERLAY_MODES:
            raise ValueError(f"overlay mode must be one of {OVERLAY_MODES}, got {mode!r}")
        self._mode = mode
        ov = self._state.overlay
        if ov is not None:
            ov.mode = self._mode
            ov.filled = ov.fill_table()
            ov.version = next_version()
        self._changed()

    def mode(self) -> OverlayMode:
        """``auto``, ``fill`` or ``outline``."""
        return self._mode

    def set_visible(self, visible: bool) -> None:
        """Show or hide the whole overlay (its settings stay)."""
        if self._state.overlay is not None:
            self._state.overlay.visible = bool(visible)
            self._changed()

    def visible(self) -> bool:
        """Whether an overlay is set and shown."""
        return self._state.overlay is not None and self._state.overlay.visible

    def set_label_visible(self, value: int, visible: bool) -> None:
        """Show or hide one label value."""
        ov = self._state.overlay
        if ov is None or visible == (value not in ov.hidden):
            return
        if visible:
            ov.hidden.discard(value)
        else:
            ov.hidden.add(value)
        ov.refresh_lut()
        self._changed()

    def label_visible(self, value: int) -> bool:
        """Whether a label value is drawn (when the overlay is shown)."""
        ov = self._state.overlay
        return ov is not None and value not in ov.hidden
