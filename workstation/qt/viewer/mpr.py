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

from inference.volume import Volume
from workstation.imaging import Preset, PresetBook, auto_window, load_presets
from workstation.qt.viewer.cine import CineControl
from workstation.qt.viewer.info_pane import InfoPane
from workstation.qt.viewer.keys import handle_key
from workstation.qt.viewer.measure import ViewMeasurement
from workstation.qt.viewer.orientation import PLANES, ViewPlane, plane_geometries
from workstation.qt.viewer.overlay_control import OverlayControl
from workstation.qt.viewer.slab import SlabSettings
from workstation.qt.viewer.slab_control import SlabControl
from workstation.qt.viewer.slice_view import SliceView
from workstation.qt.viewer.state import TOOLS, Tool, ViewerInfo, ViewerState, next_version

logger = logging.getLogger(__name__)

LAYOUTS = ("1x1", "1x3", "2x2")
MIP_PANE_MM = 15.0
PAGE_STEP = 10
INT_WL_FLOOR = 20.0


class MprViewer(OverlayControl, CineControl, SlabControl, QWidget):
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
        self.state = ViewerState()
        self.preset_book = presets if presets is not None else load_presets()
        self.wl_floor = INT_WL_FLOOR
        self._wl_auto = False
        self._active: ViewPlane = "axial"
        self._layout = "2x2"
        self._restore_layout = "2x2"
        self._init_cine(self)
        self.setObjectName("mprViewer")
        self.setStyleSheet("#mprViewer { background: #2b2b2b; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.views: dict[ViewPlane, SliceView] = {p: SliceView(self, p) for p in PLANES}
        # the 2x2 layout's fourth pane: the axial plane as a thick MIP, as lung nodules are searched for
        self.mip_view = SliceView(self, "axial", SlabSettings(MIP_PANE_MM, "mip"))
        self.mip_view.setObjectName("axialMipView")
        self.info_pane = InfoPane(self)  # series facts, cursor readout, legend, measurements: a side tab shows it
        self.info_pane.hide()
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.set_layout("2x2")

    # ------------------------------------------------------------------ volume

    def set_volume(self, volume: Volume, info: ViewerInfo | None = None,
                   loaded: npt.NDArray[np.bool_] | None = None) -> None:
        """Show a volume. ``loaded`` (one bool per slice along array axis 0) marks slices already filled.

        Cheap on purpose (no pass over the whole array): the first slice is
        drawn at once and the rest as ``mark_loaded`` reports them.
        """
        if loaded is not None:
            loaded = np.array(loaded, dtype=bool)
            if loaded.shape != (volume.shape[0],):
                raise ValueError(f"loaded mask needs shape ({volume.shape[0]},), got {loaded.shape}")
        self.stop_cine()
        st = self.state
        st.volume = volume
        st.info = info if info is not None else ViewerInfo(
            series_description=str(volume.metadata.get("series_description") or ""), modality=volume.modality)
        st.geoms = plane_geometries(volume.affine, volume.shape)
        st.loaded = loaded if loaded is not None and not loaded.all() else None
        st.volume_version = st.loaded_version = next_version()
        st.overlay, st.highlight = None, None
        st.measurements.clear()
        st.invert = str(volume.metadata.get("photometric", "")).upper() == "MONOCHROME1"
        centre = [n // 2 for n in volume.shape]
        if loaded is not None and loaded.any():
            have = np.flatnonzero(loaded)
            centre[0] = int(have[np.argmin(np.abs(have - centre[0]))])
        st.cursor = centre
        self._default_window()
        for view in self.all_views():
            view.reset_view()
            view.invalidate()
        self.info_pane.update()
        self.overlayChanged.emit()
        self.measurementsChanged.emit()
        self.cursorMoved.emit(self.current_lps())
        logger.debug("viewer shows %s volume %s spacing %s", volume.modality, volume.shape, volume.spacing)

    def volume(self) -> Volume | None:
        """The volume shown, if any."""
        return self.state.volume

    def mark_loaded(self, start: int, stop: int) -> None:
        """Slices ``start:stop`` (array axis 0) now hold data: redraw what shows them (GUI thread)."""
        st = self.state
        if st.volume is None or st.loaded is None:
            return
        st.loaded[max(0, start):max(0, stop)] = True
        st.loaded_version = next_version()
        for view in self.all_views():
            g = view.geom
            if g is not None and (g.normal != 0 or view.own_slab is not None or start <= view.slice_index < stop):
                view.update()
        if st.loaded.all():
            st.loaded = None
            if self._wl_auto:
                self._apply_auto_window()
        self.info_pane.update()

    def is_loaded(self) -> bool:
        """Whether every slice has arrived."""
        return self.state.loaded is None

    # ------------------------------------------------------------------ layout and tools

    def set_layout(self, layout: str, plane: ViewPlane | None = None) -> None:
        """``1x1`` (one view: ``plane`` or the active one), ``1x3`` (three side by side), ``2x2`` (the three
        planes and an axial ``MIP_PANE_MM`` mm MIP)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if plane is not None:
            self.set_active_plane(plane)
        places: dict[QWidget, tuple[int, int]]
        if layout == "1x1":
            places = {self.views[self._active]: (0, 0)}
        elif layout == "1x3":
            places = {self.views[p]: (0, n) for n, p in enumerate(PLANES)}
        else:
            places = {self.views["axial"]: (0, 0), self.views["coronal"]: (0, 1),
                      self.views["sagittal"]: (1, 0), self.mip_view: (1, 1)}
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

    def active_plane(self) -> ViewPlane:
        """The plane last clicked or scrolled (keys act on it)."""
        return self._active

    def set_active_plane(self, plane: ViewPlane) -> None:
        """Make ``plane`` the one keys act on."""
        if plane != self._active:
            old, self._active = self._active, plane
            self.views[old].update()
            self.views[plane].update()

    def set_tool(self, tool: Tool | str) -> None:
        """What the left button does: ``wl``, ``crosshair``, ``ruler``, ``roi``, ``pan`` or ``zoom``."""
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
        self.state.tool = tool
        self._update_views()

    def tool(self) -> Tool:
        """The current left-button tool."""
        return self.state.tool

    def set_crosshair_visible(self, visible: bool) -> None:
        """Show or hide the crosshair lines (the cursor still links the views)."""
        self.state.show_crosshair = visible
        self._update_views()

    def set_annotations_visible(self, visible: bool) -> None:
        """Show or hide corner text and orientation letters."""
        self.state.show_annotations = visible
        self._update_views()

    def all_views(self) -> list[SliceView]:
        """Every view, the 2x2 layout's axial MIP included."""
        return [*self.views.values(), self.mip_view]

    def _update_views(self) -> None:
        for view in self.all_views():
            view.update()
        self.info_pane.update()

    # ------------------------------------------------------------------ window / level

    def set_window_level(self, window: float, level: float, name: str = "") -> None:
        """Set the display window (width, centre) for all views; emits ``windowLevelChanged``."""
        self._wl_auto = False
        self._apply_window(window, level, name)

    def _apply_window(self, window: float, level: float, name: str) -> None:
        st = self.state
        window = max(float(window), 1e-6)
        if (window, float(level), name) == (st.window, st.level, st.wl_name):
            return
        st.window, st.level, st.wl_name = window, float(level), name
        self._update_views()
        self.windowLevelChanged.emit(window, float(level))

    def window_level(self) -> tuple[float, float]:
        """``(window, level)``."""
        return self.state.window, self.state.level

    def presets(self) -> tuple[Preset, ...]:
        """The W/L presets of the shown modality (empty: automatic window only)."""
        vol = self.state.volume
        return self.preset_book.for_modality(vol.modality) if vol is not None else ()

    def apply_preset(self, key_or_id: str) -> bool:
        """Apply a preset by digit key or id (``"1"``, ``"lung"``); for modalities without presets "1"/"auto"."""
        vol = self.state.volume
        if vol is None:
            return False
        preset = next((p for p in self.presets() if key_or_id in (p.key, p.id)), None)
        if preset is not None:
            self.set_window_level(preset.window, preset.level, preset.name)
            return True
        if key_or_id in ("auto",) or (not self.presets() and key_or_id == "1"):
            self._apply_auto_window()
            return True
        return False

    def _default_window(self) -> None:
        vol = self.state.volume
        assert vol is not None
        self.wl_floor = INT_WL_FLOOR if vol.array.dtype.kind in "iub" else 0.0
        preset = self.preset_book.default_for(vol.modality, vol.metadata)
        if preset is not None:
            self.state.wl_name = ""
            self.set_window_level(preset.window, preset.level, preset.name)
        else:
            self._apply_auto_window()

    def _apply_auto_window(self) -> None:
        st = self.state
        assert st.volume is not None
        window, level = auto_window(st.volume.array, st.loaded, self.preset_book.auto_percentiles)
        if self.wl_floor == 0.0 or st.volume.array.dtype.kind == "f":
            self.wl_floor = window / 5.0
        self._wl_auto = True
        self._apply_window(window, level, "Auto")

    def reset(self) -> None:
        """Default window, fit every view."""
        if self.state.volume is not None:
            self._default_window()
        for view in self.all_views():
            view.reset_view()

    # ------------------------------------------------------------------ cursor and slices

    def set_cursor_index(self, index: Sequence[int]) -> None:
        """Move the linked cursor to voxel ``(slice, row, column)`` (clipped to the volume)."""
        vol = self.state.volume
        if vol is None:
            return
        new = [min(max(int(v), 0), n - 1) for v, n in zip(index, vol.shape, strict=True)]
        old = self.state.cursor
        if new == old:
            return
        self.state.cursor = new
        for plane, view in self.views.items():
            g = view.geom
            view.update()
            if g is not None and new[g.normal] != old[g.normal]:
                self.sliceChanged.emit(plane, new[g.normal])
        self.info_pane.update()
        self.cursorMoved.emit(self.current_lps())

    def current_index(self) -> tuple[int, int, int]:
        """The crosshair voxel ``(slice, row, column)``."""
        c = self.state.cursor
        return c[0], c[1], c[2]

    def current_lps(self) -> npt.NDArray[np.float64]:
        """The crosshair position in LPS mm."""
        vol = self.state.volume
        if vol is None:
            return np.zeros(3)
        return vol.index_to_lps(np.array(self.state.cursor, dtype=np.float64))

    def go_to_index(self, index: Sequence[int]) -> None:
        """Move every view to voxel ``index`` and pan zoomed views so it is visible."""
        self.set_cursor_index(index)
        for view in self.all_views():
            g = view.geom
            if g is not None:
                view.ensure_visible(*g.index_to_image(self.state.cursor))

    def go_to_lps(self, point: Sequence[float] | npt.NDArray[Any]) -> None:
        """Move every view to the voxel nearest an LPS point (mm)."""
        vol = self.state.volume
        if vol is not None:
            idx = np.rint(vol.lps_to_index(np.asarray(point, dtype=np.float64))).astype(int)
            self.go_to_index((int(idx[0]), int(idx[1]), int(idx[2])))

    def slice_index(self, plane: ViewPlane) -> int:
        """The array index of the slice shown in ``plane``."""
        return self.views[plane].slice_index

    def set_slice(self, plane: ViewPlane, slice_index: int) -> None:
        """Show slice ``slice_index`` (array index along the plane's normal) in ``plane``."""
        g = self.views[plane].geom
        if g is not None:
            cursor = list(self.state.cursor)
            cursor[g.normal] = slice_index
            self.set_cursor_index(cursor)

    def page_step(self) -> int:
        """Images moved by PageUp/PageDown."""
        return PAGE_STEP

    def step_slice(self, plane: ViewPlane, images: int) -> None:
        """Move ``images`` images forward (head to feet, front to back, right to left) in ``plane``."""
        g = self.views[plane].geom
        if g is not None:
            self.set_slice(plane, self.state.cursor[g.normal] + images * g.next_step)

    def highlight_box(self, index_min: Sequence[int], index_max: Sequence[int]) -> None:
        """Outline an inclusive voxel box in every view whose slice passes through it."""
        lo = (int(index_min[0]), int(index_min[1]), int(index_min[2]))
        hi = (int(index_max[0]), int(index_max[1]), int(index_max[2]))
        self.state.highlight = (lo, hi)
        self._update_views()

    def clear_highlight(self) -> None:
        """Remove the highlight box."""
        self.state.highlight = None
        self._update_views()

    # ------------------------------------------------------------------ measurements

    def measurements(self) -> list[ViewMeasurement]:
        """Rulers and ROIs drawn so far, oldest first."""
        return list(self.state.measurements)

    def add_measurement(self, measurement: ViewMeasurement) -> None:
        """Keep a finished measurement (the views draw it on its slice)."""
        self.state.measurements.append(measurement)
        self._update_views()
        self.measurementsChanged.emit()

    def remove_last_measurement(self) -> None:
        """Undo the latest measurement."""
        if self.state.measurements:
            self.state.measurements.pop()
            self._update_views()
            self.measurementsChanged.emit()

    def clear_measurements(self) -> None:
        """Remove every measurement."""
        self.state.measurements.clear()
        self._update_views()
        self.measurementsChanged.emit()

    # ------------------------------------------------------------------ keys

    def handle_key(self, plane: ViewPlane, event: QKeyEvent) -> bool:
        """Act on a key pressed in ``plane``; whether it was one of the viewer's keys."""
        return handle_key(self, plane, event)

    def _emit_overlay_changed(self) -> None:
        self.info_pane.update()
        self.overlayChanged.emit()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Keys pressed while the viewer itself has focus act on the active view."""
        if not self.handle_key(self._active, event):
            super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Stop cine before the widget goes."""
        self.stop_cine()
        super().closeEvent(event)
