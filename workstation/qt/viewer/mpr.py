"""The MPR viewer: axial, coronal and sagittal views of one volume with a shared cursor.

Mouse scheme (all views):

- left button: the current tool (``set_tool``): ``wl`` (default) drags window
  (right = wider) and level (down = higher, so darker); ``crosshair`` moves the
  linked cursor; ``ruler`` measures a distance; ``roi`` draws an ellipse with
  mean/SD/area; ``pan`` and ``zoom`` as their names say;
- Shift+left: crosshair, whatever the tool;
- right-drag: zoom about the press point (up = in); middle-drag: pan;
- wheel: slices (towards you = next image); Ctrl+wheel: zoom;
- double-click: maximise the view or restore the layout.

Keys: Up/Down one image, PageUp/PageDown ten, Home/End first/last image, 1-5 W/L
presets (for MR and others, 1 = automatic window), R reset W/L and zoom, C cine
on/off, Delete removes the last measurement, X crosshair lines, I corner text,
O overlay on/off, M slab mode (MIP/MinIP/Avg; see ``slab_control``), [ / ] thinner /
thicker slab. "Next image" runs head to feet, front to back, right to left.

The state and its rules live in the Qt-free viewer model
(``workstation.viewing.model.ViewerModel``, ``viewer.model``): the widget
composes the views, the info pane and the cine clock, redraws what each model
event touches and re-emits it as a Qt signal for the rest of the window. Its
methods below are the window's and the tests' short way to the model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import QGridLayout, QWidget

from inference.labels import LabelTable
from inference.volume import Volume
from workstation.imaging import Preset, PresetBook
from workstation.qt.frame_steps import FrameSteps
from workstation.qt.viewer.cine_timer import CineTimer
from workstation.qt.viewer.info_pane import InfoPane
from workstation.qt.viewer.keys import handle_key
from workstation.qt.viewer.slice_view import SliceView
from workstation.viewing.events import (
    CineChanged,
    CursorMoved,
    DisplayChanged,
    MeasurementsChanged,
    OverlayChanged,
    SlabChanged,
    SlicesArrived,
    VolumeShown,
    WindowLevelChanged,
)
from workstation.viewing.measure import ViewMeasurement
from workstation.viewing.model import ViewerModel
from workstation.viewing.orientation import PLANES, ViewPlane
from workstation.viewing.slab import SlabSettings
from workstation.viewing.state import OverlayMode, OverlayState, Tool, ViewerInfo, ViewerState

logger = logging.getLogger(__name__)

LAYOUTS = ("1x1", "1x3", "2x2")
MIP_PANE_MM = 15.0


class MprViewer(QWidget):
    """Three linked MPR views, an info/legend pane, W/L, thick slabs, cine, measurements and a label overlay."""

    cursorMoved = Signal(object)  # noqa: N815 (Qt naming)
    windowLevelChanged = Signal(float, float)  # noqa: N815 (Qt naming)
    sliceChanged = Signal(str, int)  # noqa: N815 (Qt naming)
    measurementsChanged = Signal()  # noqa: N815 (Qt naming)
    overlayChanged = Signal()  # noqa: N815 (Qt naming)
    layoutChanged = Signal(str)  # noqa: N815 (Qt naming)
    slabChanged = Signal(float, str)  # noqa: N815 (Qt naming): thickness mm (0 = off), mode

    def __init__(self, parent: QWidget | None = None, presets: PresetBook | None = None) -> None:
        super().__init__(parent)
        self.model = ViewerModel(presets)
        self._layout = "2x2"
        self._restore_layout = "2x2"
        self.cine_timer = CineTimer(self.model.cine, self)
        self._stale: list[SliceView] = []  # views waiting for their turn to repaint (``_update_views_in_turn``)
        self._repaints = FrameSteps(self, budget_ms=0.0)  # one view per event-loop turn
        self.setObjectName("mprViewer")
        self.setStyleSheet("#mprViewer { background: #2b2b2b; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.views: dict[ViewPlane, SliceView] = {p: SliceView(self.model, self, p, parent=self) for p in PLANES}
        # the 2x2 layout's fourth pane: the axial plane as a thick MIP, as lung nodules are searched for
        self.mip_view = SliceView(self.model, self, "axial", SlabSettings(MIP_PANE_MM, "mip"), parent=self)
        self.mip_view.setObjectName("axialMipView")
        self.info_pane = InfoPane(self.model, self)  # series facts, cursor readout, legend: a side tab shows it
        self.info_pane.hide()
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.set_layout("2x2")
        self.model.subscribe(self._draw)

    @property
    def state(self) -> ViewerState:
        """The model's state (read it; change it through ``model``)."""
        return self.model.state

    # ------------------------------------------------------------------ model events -> views and signals

    def _draw(self, event: object) -> None:
        """Redraw what a model event touches and tell the window through the matching signal."""
        if isinstance(event, VolumeShown):
            for view in self.all_views():
                view.reset_view()
                view.invalidate()
            self.info_pane.update()
            self.overlayChanged.emit()
            self.measurementsChanged.emit()
            self.cursorMoved.emit(self.model.current_lps())
        elif isinstance(event, SlicesArrived):
            for view in self.all_views():
                g = view.geom
                if g is not None and (
                    g.normal != 0 or view.own_slab is not None or event.start <= view.slice_index < event.stop
                ):
                    view.update()
            self.info_pane.update()
        elif isinstance(event, CursorMoved):
            self._update_views()
            for plane, index in event.slices:
                self.sliceChanged.emit(plane, index)
            self.cursorMoved.emit(np.array(event.lps, dtype=np.float64))
        elif isinstance(event, WindowLevelChanged):
            self._update_views()
            self.windowLevelChanged.emit(event.window, event.level)
        elif isinstance(event, SlabChanged):
            self._update_views()
            self.slabChanged.emit(event.thickness_mm, event.mode)
        elif isinstance(event, OverlayChanged):
            self._update_views_in_turn()
            self.overlayChanged.emit()
        elif isinstance(event, MeasurementsChanged):
            self._update_views()
            self.measurementsChanged.emit()
        elif isinstance(event, CineChanged):
            self.cine_timer.follow()
            self._update_views()
        elif isinstance(event, DisplayChanged):
            self._update_views()

    def _update_views(self) -> None:
        self._stale.clear()  # every view repaints now: none waits for its turn
        for view in self.all_views():
            view.update()
        self.info_pane.update()

    def _update_views_in_turn(self) -> None:
        """Repaint the views one per event-loop turn (a new overlay: each view slices and colours its labels).

        Four views repainted in one frame cost more than the frame (the result's
        overlay arrives with the findings and the report); one per turn keeps every
        frame short. A view changed again before its turn is repainted once.
        """
        for view in self.all_views():
            if view not in self._stale:
                self._stale.append(view)
                self._repaints.add(self._repaint_next)
        self.info_pane.update()

    def _repaint_next(self) -> None:
        if self._stale:
            self._stale.pop(0).update()

    # ------------------------------------------------------------------ volume

    def set_volume(
        self, volume: Volume, info: ViewerInfo | None = None, loaded: npt.NDArray[np.bool_] | None = None
    ) -> None:
        """Show a volume; ``loaded`` (one bool per slice along array axis 0) marks slices already filled.

        Cheap on purpose (no pass over the whole array): the first slice is
        drawn at once and the rest as ``mark_loaded`` reports them.
        """
        self.model.set_volume(volume, info, loaded)

    def volume(self) -> Volume | None:
        """The volume shown, if any."""
        return self.model.volume

    def mark_loaded(self, start: int, stop: int) -> None:
        """Slices ``start:stop`` (array axis 0) now hold data: redraw what shows them (GUI thread)."""
        self.model.mark_loaded(start, stop)

    def is_loaded(self) -> bool:
        """Whether every slice has arrived."""
        return self.model.is_loaded()

    # ------------------------------------------------------------------ layout and views

    def set_layout(self, layout: str, plane: ViewPlane | None = None) -> None:
        """``1x1`` (one view: ``plane`` or the active one), ``1x3`` (three side by side), ``2x2`` (the three
        planes and an axial ``MIP_PANE_MM`` mm MIP)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if plane is not None:
            self.model.set_active_plane(plane)
        places: dict[QWidget, tuple[int, int]]
        if layout == "1x1":
            places = {self.views[self.model.active_plane()]: (0, 0)}
        elif layout == "1x3":
            places = {self.views[p]: (0, n) for n, p in enumerate(PLANES)}
        else:
            places = {
                self.views["axial"]: (0, 0),
                self.views["coronal"]: (0, 1),
                self.views["sagittal"]: (1, 0),
                self.mip_view: (1, 1),
            }
        for w in self.all_views():
            self._grid.removeWidget(w)
            w.setVisible(w in places)
        for placed, (row, col) in places.items():
            self._grid.addWidget(placed, row, col)
        for n in range(3):
            self._grid.setRowStretch(n, 1 if (layout == "2x2" and n < 2) or n == 0 else 0)
            self._grid.setColumnStretch(n, 1 if n < {"1x1": 1, "1x3": 3, "2x2": 2}[layout] else 0)
        self._grid.activate()
        self._layout = layout
        self.layoutChanged.emit(layout)

    def layout_name(self) -> str:
        """The current layout."""
        return self._layout

    def toggle_maximized(self, plane: ViewPlane) -> None:
        """Show ``plane`` alone, or go back to the layout before."""
        if self._layout == "1x1":
            self.set_layout(self._restore_layout if self._restore_layout != "1x1" else "2x2")
        else:
            self._restore_layout = self._layout
            self.set_layout("1x1", plane)

    def view(self, plane: ViewPlane) -> SliceView:
        """The view of one plane."""
        return self.views[plane]

    def all_views(self) -> list[SliceView]:
        """Every view, the 2x2 layout's axial MIP included."""
        return [*self.views.values(), self.mip_view]

    def reset(self) -> None:
        """Default window, fit every view."""
        self.model.wl.apply_default()
        for view in self.all_views():
            view.reset_view()

    def set_tool(self, tool: Tool | str) -> None:
        """What the left button does: ``wl``, ``crosshair``, ``ruler``, ``roi``, ``pan`` or ``zoom``."""
        self.model.set_tool(tool)

    def tool(self) -> Tool:
        """The current left-button tool."""
        return self.model.state.tool

    def set_crosshair_visible(self, visible: bool) -> None:
        """Show or hide the crosshair lines (the cursor still links the views)."""
        self.model.set_crosshair_visible(visible)

    def set_annotations_visible(self, visible: bool) -> None:
        """Show or hide corner text and orientation letters."""
        self.model.set_annotations_visible(visible)

    # ------------------------------------------------------------------ window / level

    def set_window_level(self, window: float, level: float, name: str = "") -> None:
        """Set the display window (width, centre) for all views; emits ``windowLevelChanged``."""
        self.model.wl.set(window, level, name)

    def window_level(self) -> tuple[float, float]:
        """``(window, level)``."""
        return self.model.wl.get()

    def presets(self) -> tuple[Preset, ...]:
        """The W/L presets of the shown modality (empty: automatic window only)."""
        return self.model.wl.presets()

    def apply_preset(self, key_or_id: str) -> bool:
        """Apply a preset by digit key or id (``"1"``, ``"lung"``); for modalities without presets "1"/"auto"."""
        return self.model.wl.apply_preset(key_or_id)

    # ------------------------------------------------------------------ cursor and slices

    def set_cursor_index(self, index: Sequence[int]) -> None:
        """Move the linked cursor to voxel ``(slice, row, column)`` (clipped to the volume)."""
        self.model.set_cursor_index(index)

    def current_index(self) -> tuple[int, int, int]:
        """The crosshair voxel ``(slice, row, column)``."""
        return self.model.current_index()

    def go_to_index(self, index: Sequence[int]) -> None:
        """Move every view to voxel ``index`` and pan zoomed views so it is visible."""
        self.model.set_cursor_index(index)
        for view in self.all_views():
            g = view.geom
            if g is not None:
                view.ensure_visible(*g.index_to_image(self.model.state.cursor))

    def go_to_lps(self, point: Sequence[float] | npt.NDArray[Any]) -> None:
        """Move every view to the voxel nearest an LPS point (mm)."""
        index = self.model.lps_to_voxel(point)
        if index is not None:
            self.go_to_index(index)

    def slice_index(self, plane: ViewPlane) -> int:
        """The array index of the slice shown in ``plane``."""
        return self.model.slice_index(plane)

    def set_slice(self, plane: ViewPlane, slice_index: int) -> None:
        """Show slice ``slice_index`` (array index along the plane's normal) in ``plane``."""
        self.model.set_slice(plane, slice_index)

    def highlight_box(self, index_min: Sequence[int], index_max: Sequence[int]) -> None:
        """Outline an inclusive voxel box in every view whose slice passes through it."""
        self.model.highlight_box(index_min, index_max)

    def clear_highlight(self) -> None:
        """Remove the highlight box."""
        self.model.clear_highlight()

    # ------------------------------------------------------------------ measurements

    def measurements(self) -> list[ViewMeasurement]:
        """Rulers and ROIs drawn so far, oldest first."""
        return self.model.measurements()

    def clear_measurements(self) -> None:
        """Remove every measurement."""
        self.model.clear_measurements()

    # ------------------------------------------------------------------ overlay, slab, cine

    def set_overlay(self, labelmap: npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_], table: LabelTable) -> None:
        """Draw an integer label map (the volume's shape) in the table's colours over every view."""
        self.model.overlay.set(labelmap, table)

    def clear_overlay(self) -> None:
        """Remove the overlay."""
        self.model.overlay.clear()

    def overlay(self) -> OverlayState | None:
        """The overlay shown, with its table and settings."""
        return self.model.overlay.current()

    def set_overlay_opacity(self, opacity: float) -> None:
        """Overlay opacity, 0 (invisible) to 1 (opaque)."""
        self.model.overlay.set_opacity(opacity)

    def overlay_opacity(self) -> float:
        """Overlay opacity 0..1."""
        return self.model.overlay.opacity()

    def set_overlay_mode(self, mode: OverlayMode | str) -> None:
        """``fill``, ``outline`` or ``auto`` (lesions filled, the rest outlined)."""
        self.model.overlay.set_mode(mode)

    def overlay_mode(self) -> OverlayMode:
        """``auto``, ``fill`` or ``outline``."""
        return self.model.overlay.mode()

    def set_overlay_visible(self, visible: bool) -> None:
        """Show or hide the whole overlay (its settings stay)."""
        self.model.overlay.set_visible(visible)

    def set_label_visible(self, value: int, visible: bool) -> None:
        """Show or hide one label value."""
        self.model.overlay.set_label_visible(value, visible)

    def label_visible(self, value: int) -> bool:
        """Whether a label value is drawn (when the overlay is shown)."""
        return self.model.overlay.label_visible(value)

    def slab(self) -> SlabSettings:
        """A copy of the current slab (thickness 0: off)."""
        return self.model.slab.current()

    def set_slab(self, thickness_mm: float | None = None, mode: str | None = None) -> None:
        """Show a ``thickness_mm`` slab (0: single slices) reduced by ``mode`` (``mip``, ``minip``, ``avg``)."""
        self.model.slab.set(thickness_mm, mode)

    def set_cine_fps(self, fps: float) -> None:
        """Cine speed in images per second (1-60)."""
        self.model.cine.set_fps(fps)

    def cine_plane(self) -> ViewPlane | None:
        """The plane cine is running in, if any."""
        return self.model.cine.plane()

    def stop_cine(self) -> None:
        """Stop cine."""
        self.model.cine.stop()

    # ------------------------------------------------------------------ keys and closing

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Keys pressed while the viewer itself has focus act on the active view."""
        if not handle_key(self.model, self, self.model.active_plane(), event):
            super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Stop cine before the widget goes."""
        self.model.cine.stop()
        super().closeEvent(event)
