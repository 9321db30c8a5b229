"""Two viewer models read side by side (current and prior), linked through a registration. Qt-free.

Follow-up reading shows the prior study beside the current one. ``ViewerLink``
keeps the two ``ViewerModel`` objects on the same anatomy and the same display:

* **Cursor**: a cursor move in one model (click, scroll, key, cine, a jump to a
  finding) moves the other's cursor to the voxel nearest the same anatomical
  point, mapped through the registration (``RegistrationResult.to_prior`` /
  ``to_current``: LPS mm). Scrolling one therefore scrolls the other.
* **Display**: window/level, slab, tool, active plane, crosshair and corner
  text visibility are copied as they are.
* **Overlay**: each study shows its own label map (the same model's, so the
  same colour table); how it is drawn (opacity, fill/outline, shown or hidden,
  which labels) is one setting for both: a change in either is copied to the
  other, and the prior's map, once analysed, takes the current's settings
  (``set_prior_overlay``).
* **No feedback loops**: a change the link makes itself is not mirrored back
  (the rounding of a mapped cursor would otherwise bounce between the two).

A registration that failed its quality check is never used silently: with
``position_linked`` False (``registration`` None or not ``passed``) only the
display is linked, and the views say so (``workstation.qt.compare_views``).
Zoom and pan are the Qt views' own (they depend on widget size); the Qt
layer links them (``workstation.qt.compare_views``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.followup.model import RegistrationResult
from inference.labels import LabelTable
from workstation.viewing.events import (
    CursorMoved,
    DisplayChanged,
    OverlayChanged,
    SlabChanged,
    ViewerEvent,
    WindowLevelChanged,
)
from workstation.viewing.model import ViewerModel

logger = logging.getLogger(__name__)


class ViewerLink:
    """Links a current and a prior ``ViewerModel`` (see the module docstring); ``close`` unlinks."""

    def __init__(self, current: ViewerModel, prior: ViewerModel, registration: RegistrationResult | None) -> None:
        self.current = current
        self.prior = prior
        self.registration = registration
        self._busy = False
        self._unsubscribe: list[Callable[[], None]] = [
            current.subscribe(lambda e: self._on_event(e, current, prior)),
            prior.subscribe(lambda e: self._on_event(e, prior, current)),
        ]

    @property
    def position_linked(self) -> bool:
        """True when cursors follow each other: a registration that passed its quality check."""
        return self.registration is not None and self.registration.passed

    def set_registration(self, registration: RegistrationResult | None) -> None:
        """Use a (new) registration and bring the prior to the current cursor."""
        self.registration = registration
        self.sync_from_current()

    def sync_from_current(self) -> None:
        """Copy the current model's window, slab and display to the prior and map its cursor there."""
        src, dst = self.current, self.prior
        if src.volume is None or dst.volume is None:
            return
        with self._guard():
            window, level = src.wl.get()
            dst.wl.set(window, level, src.state.wl_name)
            slab = src.slab.current()
            dst.slab.set(slab.thickness_mm, slab.mode)
            dst.set_tool(src.state.tool)
            dst.set_active_plane(src.active_plane())
            dst.set_crosshair_visible(src.state.show_crosshair)
            dst.set_annotations_visible(src.state.show_annotations)
            self._copy_overlay(src, dst)
            if self.position_linked:
                self._move(src, dst, src.current_lps())

    def set_prior_overlay(self, labelmap: npt.NDArray[np.integer[Any]], table: LabelTable) -> None:
        """Show the prior's own label map (on the prior's grid), drawn as the current's overlay is drawn.

        Raises ``ValueError`` when the map does not lie on the prior volume's grid.
        """
        with self._guard():  # the new overlay takes the current's settings, never the other way round
            self.prior.overlay.set(labelmap, table)
            self._copy_overlay(self.current, self.prior)

    def map_point(self, point: npt.ArrayLike, *, to_prior: bool) -> npt.NDArray[np.float64] | None:
        """An LPS point of one study as the same anatomy in the other's LPS (None without a usable transform)."""
        reg = self.registration
        if reg is None or not reg.passed:
            return None
        return reg.to_prior(point) if to_prior else reg.to_current(point)

    def close(self) -> None:
        """Stop linking (both models keep what they show)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _guard(self) -> Iterator[None]:
        was, self._busy = self._busy, True
        try:
            yield
        finally:
            self._busy = was

    def _on_event(self, event: ViewerEvent, src: ViewerModel, dst: ViewerModel) -> None:
        if self._busy or src.volume is None or dst.volume is None:
            return
        with self._guard():
            if isinstance(event, CursorMoved):
                if self.position_linked:
                    self._move(src, dst, np.asarray(event.lps, dtype=np.float64))
            elif isinstance(event, WindowLevelChanged):
                dst.wl.set(event.window, event.level, event.name)
            elif isinstance(event, SlabChanged):
                dst.slab.set(event.thickness_mm, event.mode)
            elif isinstance(event, DisplayChanged):
                self._copy_display(event.what, src, dst)
            elif isinstance(event, OverlayChanged):
                self._copy_overlay(src, dst)

    def _move(self, src: ViewerModel, dst: ViewerModel, lps: npt.NDArray[np.float64]) -> None:
        mapped = self.map_point(lps, to_prior=src is self.current)
        if mapped is None:
            return
        voxel = dst.lps_to_voxel(mapped)
        if voxel is not None:
            dst.set_cursor_index(voxel)  # clipped to the volume: anatomy outside the other scan stays at its edge

    @staticmethod
    def _copy_overlay(src: ViewerModel, dst: ViewerModel) -> None:
        """How ``src`` draws its overlay, for ``dst``'s: opacity and mode always; shown/hidden and each label's
        visibility when both have a label map (labels by value: both maps come from the same model)."""
        have, get = dst.overlay, src.overlay
        if have.opacity() != get.opacity():
            have.set_opacity(get.opacity())
        if have.mode() != get.mode():
            have.set_mode(get.mode())
        mine, theirs = have.current(), get.current()
        if mine is None or theirs is None:
            return
        if mine.visible != theirs.visible:
            have.set_visible(theirs.visible)
        known = {lab.value for lab in theirs.table}
        for lab in mine.table:
            if lab.value in known:
                have.set_label_visible(lab.value, get.label_visible(lab.value))

    @staticmethod
    def _copy_display(what: str, src: ViewerModel, dst: ViewerModel) -> None:
        st = src.state
        if what == "tool":
            dst.set_tool(st.tool)
        elif what == "active":
            dst.set_active_plane(st.active)
        elif what == "crosshair":
            dst.set_crosshair_visible(st.show_crosshair)
        elif what == "annotations":
            dst.set_annotations_visible(st.show_annotations)

