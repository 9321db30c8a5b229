"""The viewer model: what the MPR views show and every change to it, without Qt.

``ViewerModel`` owns one ``ViewerState`` (volume, streaming mask, linked
cursor, active plane, tool, highlight, measurements) and composes the parts
that change it: ``wl`` (window/level and presets), ``overlay`` (label map),
``slab`` (thick slabs) and ``cine``. Every change is announced to the
listeners as a plain event (``workstation.viewing.events``), on the thread that
made it. The Qt viewer (``workstation.qt.viewer.mpr.MprViewer``) draws the state
and forwards mouse and keys to the model; a test drives the model directly.

Voxel indices are ``(slice, row, column)`` of the volume's array; positions in
patient space are LPS millimetres through the volume's affine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.volume import Volume
from workstation.imaging import PresetBook
from workstation.listeners import Listeners
from workstation.viewing.cine import CineControl
from workstation.viewing.events import (
    CursorMoved,
    DisplayChanged,
    MeasurementsChanged,
    SlicesArrived,
    ViewerEvent,
    VolumeShown,
)
from workstation.viewing.measure import MeasureKind, Point, ViewMeasurement, make_roi, make_ruler
from workstation.viewing.orientation import PLANES, ViewPlane, plane_geometries
from workstation.viewing.overlay import OverlayControl
from workstation.viewing.slab_control import SlabControl
from workstation.viewing.state import TOOLS, Tool, ViewerInfo, ViewerState, next_version
from workstation.viewing.window_level import WindowLevelControl

logger = logging.getLogger(__name__)

PAGE_STEP = 10
"""Images moved by PageUp/PageDown."""

Listener = Callable[[ViewerEvent], None]


class ViewerModel:
    """The state of the MPR viewer and its operations; see the module docstring."""

    def __init__(self, presets: PresetBook | None = None) -> None:
        self.state = ViewerState()
        self._listeners: Listeners[ViewerEvent] = Listeners("viewer")
        self.wl = WindowLevelControl(self.state, self._emit, presets)
        self.overlay = OverlayControl(self.state, self._emit)
        self.slab = SlabControl(self.state, self._emit)
        self.cine = CineControl(self.state, self._emit, self.set_slice, self.step_slice)

    # ------------------------------------------------------------------ listeners

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every change; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    def _emit(self, event: Any) -> None:
        self._listeners.emit(event)

    # ------------------------------------------------------------------ volume

    def set_volume(
        self, volume: Volume, info: ViewerInfo | None = None, loaded: npt.NDArray[np.bool_] | None = None
    ) -> None:
        """Show a volume. ``loaded`` (one bool per slice along array axis 0) marks slices already filled.

        Cheap on purpose (no pass over the whole array): the cursor goes to the
        centre (the loaded slice nearest it while streaming), the window to the
        modality's default; overlay, highlight and measurements are dropped.
        """
        if loaded is not None:
            loaded = np.array(loaded, dtype=bool)
            if loaded.shape != (volume.shape[0],):
                raise ValueError(f"loaded mask needs shape ({volume.shape[0]},), got {loaded.shape}")
        self.cine.stop()
        st = self.state
        st.volume = volume
        st.info = (
            info
            if info is not None
            else ViewerInfo(
                series_description=str(volume.metadata.get("series_description") or ""), modality=volume.modality
            )
        )
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
        self.wl.apply_default()
        self._emit(VolumeShown(volume))
        logger.debug("viewer shows %s volume %s spacing %s", volume.modality, volume.shape, volume.spacing)

    @property
    def volume(self) -> Volume | None:
        """The volume shown, if any."""
        return self.state.volume

    def mark_loaded(self, start: int, stop: int) -> None:
        """Slices ``start:stop`` (array axis 0) now hold data; the automatic window is redone once all have."""
        st = self.state
        if st.volume is None or st.loaded is None:
            return
        st.loaded[max(0, start) : max(0, stop)] = True
        st.loaded_version = next_version()
        complete = bool(st.loaded.all())
        if complete:
            st.loaded = None
        self._emit(SlicesArrived(start, stop, complete))
        if complete and self.wl.auto:
            self.wl.apply_auto()

    def is_loaded(self) -> bool:
        """Whether every slice has arrived."""
        return self.state.loaded is None

    # ------------------------------------------------------------------ cursor and slices

    def set_cursor_index(self, index: Sequence[int]) -> None:
        """Move the linked cursor to voxel ``(slice, row, column)`` (clipped to the volume)."""
        st = self.state
        if st.volume is None:
            return
        new = [min(max(int(v), 0), n - 1) for v, n in zip(index, st.volume.shape, strict=True)]
        old = st.cursor
        if new == old:
            return
        st.cursor = new
        changed = tuple(
            (p, new[g.normal]) for p in PLANES if (g := st.geoms.get(p)) is not None and new[g.normal] != old[g.normal]
        )
        lps = self.current_lps()
        self._emit(CursorMoved((new[0], new[1], new[2]), (float(lps[0]), float(lps[1]), float(lps[2])), changed))

    def current_index(self) -> tuple[int, int, int]:
        """The crosshair voxel ``(slice, row, column)``."""
        c = self.state.cursor
        return c[0], c[1], c[2]

    def current_lps(self) -> npt.NDArray[np.float64]:
        """The crosshair position in LPS mm (zeros with no volume)."""
        vol = self.state.volume
        if vol is None:
            return np.zeros(3)
        return vol.index_to_lps(np.array(self.state.cursor, dtype=np.float64))

    def lps_to_voxel(self, point: Sequence[float] | npt.NDArray[Any]) -> tuple[int, int, int] | None:
        """The voxel nearest an LPS point (mm), unclipped; ``None`` with no volume."""
        vol = self.state.volume
        if vol is None:
            return None
        idx = np.rint(vol.lps_to_index(np.asarray(point, dtype=np.float64))).astype(int)
        return int(idx[0]), int(idx[1]), int(idx[2])

    def slice_index(self, plane: ViewPlane) -> int:
        """The array index of the slice shown in ``plane`` (0 with no volume)."""
        g = self.state.geoms.get(plane)
        return self.state.cursor[g.normal] if g is not None else 0

    def set_slice(self, plane: ViewPlane, slice_index: int) -> None:
        """Show slice ``slice_index`` (array index along the plane's normal) in ``plane``."""
        g = self.state.geoms.get(plane)
        if g is not None:
            cursor = list(self.state.cursor)
            cursor[g.normal] = slice_index
            self.set_cursor_index(cursor)

    def step_slice(self, plane: ViewPlane, images: int) -> None:
        """Move ``images`` images forward (head to feet, front to back, right to left) in ``plane``."""
        g = self.state.geoms.get(plane)
        if g is not None:
            self.set_slice(plane, self.state.cursor[g.normal] + images * g.next_step)

    def go_to_end(self, plane: ViewPlane, last: bool) -> None:
        """The first (``last`` False) or last image of ``plane`` in reading order."""
        g = self.state.geoms.get(plane)
        if g is not None:
            first = 0 if g.next_step > 0 else g.n_slices - 1
            self.set_slice(plane, g.n_slices - 1 - first if last else first)

    # ------------------------------------------------------------------ what the views draw

    def set_active_plane(self, plane: ViewPlane) -> None:
        """Make ``plane`` the one keys (and cine) act on."""
        if plane != self.state.active:
            self.state.active = plane
            self._emit(DisplayChanged("active"))

    def active_plane(self) -> ViewPlane:
        """The plane last clicked or scrolled."""
        return self.state.active

    def set_tool(self, tool: Tool | str) -> None:
        """What the left button does: ``wl``, ``crosshair``, ``ruler``, ``roi``, ``pan`` or ``zoom``."""
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
        self.state.tool = tool
        self._emit(DisplayChanged("tool"))

    def set_crosshair_visible(self, visible: bool) -> None:
        """Show or hide the crosshair lines (the cursor still links the views)."""
        self.state.show_crosshair = visible
        self._emit(DisplayChanged("crosshair"))

    def set_annotations_visible(self, visible: bool) -> None:
        """Show or hide corner text and orientation letters."""
        self.state.show_annotations = visible
        self._emit(DisplayChanged("annotations"))

    def highlight_box(self, index_min: Sequence[int], index_max: Sequence[int]) -> None:
        """Outline an inclusive voxel box in every view whose slice passes through it."""
        lo = (int(index_min[0]), int(index_min[1]), int(index_min[2]))
        hi = (int(index_max[0]), int(index_max[1]), int(index_max[2]))
        self.state.highlight = (lo, hi)
        self._emit(DisplayChanged("highlight"))

    def clear_highlight(self) -> None:
        """Remove the highlight box."""
        self.state.highlight = None
        self._emit(DisplayChanged("highlight"))

    # ------------------------------------------------------------------ measurements

    def measure(
        self, kind: MeasureKind, plane: ViewPlane, start: Point, end: Point, slice_index: int | None = None
    ) -> ViewMeasurement | None:
        """A ruler or ROI from ``start`` to ``end`` (continuous image coordinates of ``plane``) on its shown
        slice (or ``slice_index``), not yet kept; ``None`` when empty or when an ROI would count slices
        still loading."""
        st = self.state
        g, vol = st.geoms.get(plane), st.volume
        if g is None or vol is None or start == end:
            return None
        s = self.slice_index(plane) if slice_index is None else slice_index
        if kind == "ruler":
            return make_ruler(vol, g, s, start, end)
        if not (st.loaded is None or (g.normal == 0 and st.slice_loaded(s))):
            return None  # statistics over slices still loading would count zeros
        return make_roi(vol, g, s, start, end)

    def measurements(self) -> list[ViewMeasurement]:
        """Rulers and ROIs kept so far, oldest first."""
        return list(self.state.measurements)

    def add_measurement(self, measurement: ViewMeasurement) -> None:
        """Keep a finished measurement (the views draw it on its slice)."""
        self.state.measurements.append(measurement)
        self._emit(MeasurementsChanged(len(self.state.measurements)))

    def remove_last_measurement(self) -> None:
        """Undo the latest measurement."""
        if self.state.measurements:
            self.state.measurements.pop()
            self._emit(MeasurementsChanged(len(self.state.measurements)))

    def clear_measurements(self) -> None:
        """Remove every measurement."""
        self.state.measurements.clear()
        self._emit(MeasurementsChanged(0))
