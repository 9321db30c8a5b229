"""The label-overlay half of ``MprViewer``'s API (a mixin, to keep modules small).

A label map must lie on the volume's exact grid (the engine guarantees it), so
it is sliced with the same plane geometry as the image. Colours come from the
model's label table; visibility per label is a change of the colour table only,
so toggling a label never touches the voxels.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.labels import LabelTable
from workstation.qt.viewer.render import MAX_LABEL_VALUE
from workstation.qt.viewer.state import OverlayMode, OverlayState, ViewerState, next_version

logger = logging.getLogger(__name__)

OVERLAY_MODES: tuple[OverlayMode, ...] = ("auto", "fill", "outline")


class OverlayControl:
    """Overlay methods of the viewer; the viewer provides ``state`` and the two hooks below."""

    state: ViewerState
    _overlay_opacity: float = 0.5
    _overlay_mode: OverlayMode = "auto"

    def _update_views(self) -> None:
        raise NotImplementedError

    def _emit_overlay_changed(self) -> None:
        raise NotImplementedError

    def set_overlay(self, labelmap: npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_], table: LabelTable) -> None:
        """Draw an integer label map (the volume's shape) in the table's colours over every view.

        Opacity and fill/outline carry over from the previous overlay; every label starts visible.
        """
        vol = self.state.volume
        if vol is None:
            raise ValueError("set a volume before its overlay")
        arr = np.asarray(labelmap)
        if arr.shape != vol.shape:
            raise ValueError(f"label map shape {arr.shape} differs from the volume's {vol.shape}")
        if arr.dtype == np.bool_:
            arr = arr.view(np.uint8)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"a label map holds integers, got {arr.dtype}")
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi >= MAX_LABEL_VALUE:
            raise ValueError(f"label values must lie in 0..{MAX_LABEL_VALUE - 1}, got {lo}..{hi}")
        known = {lab.value for lab in table}
        if hi > 0 and hi not in known:
            logger.info("label map holds values without a table entry (up to %d); those are not drawn", hi)
        self.state.overlay = OverlayState(arr, table, max(hi, *known, 0), self._overlay_opacity, self._overlay_mode)
        self.state.overlay.refresh_lut()
        self._update_views()
        self._emit_overlay_changed()

    def clear_overlay(self) -> None:
        """Remove the overlay."""
        if self.state.overlay is not None:
            self.state.overlay = None
            self._update_views()
            self._emit_overlay_changed()

    def overlay(self) -> OverlayState | None:
        """The overlay shown, with its table and settings."""
        return self.state.overlay

    def set_overlay_opacity(self, opacity: float) -> None:
        """Overlay opacity, 0 (invisible) to 1 (opaque)."""
        self._overlay_opacity = min(1.0, max(0.0, float(opacity)))
        if self.state.overlay is not None:
            self.state.overlay.opacity = self._overlay_opacity
        self._update_views()
        self._emit_overlay_changed()

    def overlay_opacity(self) -> float:
        """Overlay opacity 0..1."""
        return self._overlay_opacity

    def set_overlay_mode(self, mode: OverlayMode | str) -> None:
        """``fill`` paints regions, ``outline`` only their edges (the anatomy stays visible inside), ``auto``
        fills lesions and outlines the rest."""
        if mode not in OVERLAY_MODES:
            raise ValueError(f"overlay mode must be one of {OVERLAY_MODES}, got {mode!r}")
        self._overlay_mode = mode
        ov = self.state.overlay
        if ov is not None:
            ov.mode = self._overlay_mode
            ov.filled = ov.fill_table()
            ov.version = next_version()
        self._update_views()
        self._emit_overlay_changed()

    def overlay_mode(self) -> OverlayMode:
        """``auto``, ``fill`` or ``outline``."""
        return self._overlay_mode

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the whole overlay (its settings stay)."""
        if self.state.overlay is not None:
            self.state.overlay.visible = bool(visible)
            self._update_views()
            self._emit_overlay_changed()

    def overlay_visible(self) -> bool:
        """Whether an overlay is set and shown."""
        return self.state.overlay is not None and self.state.overlay.visible

    def set_label_visible(self, value: int, visible: bool) -> None:
        """Show or hide one label value."""
        ov = self.state.overlay
        if ov is None:
            return
        if visible == (value not in ov.hidden):
            return
        if visible:
            ov.hidden.discard(value)
        else:
            ov.hidden.add(value)
        ov.refresh_lut()
        self._update_views()
        self._emit_overlay_changed()

    def label_visible(self, value: int) -> bool:
        """Whether a label value is drawn (when the overlay is shown)."""
        ov = self.state.overlay
        return ov is not None and value not in ov.hidden
