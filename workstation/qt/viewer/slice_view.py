"""One MPR view (axial, coronal or sagittal): draws a slice and turns mouse input into viewer actions.

The widget paints itself (no QGraphicsView): the windowed slice is rendered to
a QImage once per slice/window change and cached, then scaled by a QTransform
whose x and y scales are the view's in-plane pixel sizes in mm, so anisotropic
voxels keep their true aspect without resampling. Overlay, crosshair,
measurements and text are drawn over it on every paint, which stays cheap.

Mouse (see ``MprViewer`` for the whole scheme): the left button does what the
current tool says (W/L by default); Shift+left always moves the crosshair;
right-drag zooms about the press point; middle-drag pans; the wheel scrolls
slices (Ctrl+wheel zooms); a double-click maximises or restores the view.

A view knows the viewer model (``workstation.viewing.model.ViewerModel``: it
draws its state and sends cursor, slice, W/L and measurement changes to it) and
a narrow ``ViewerActions`` for the two requests that concern the other views
(maximise, reset). Zoom and pan are the view's own: they depend on its size.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QTransform, QWheelEvent
from PySide6.QtWidgets import QWidget

from workstation.qt.viewer import painting
from workstation.qt.viewer.keys import ViewerActions, handle_key
from workstation.qt.viewer.render import overlay_image, slice_image
from workstation.viewing.annotations import corner_lines
from workstation.viewing.measure import ViewMeasurement
from workstation.viewing.model import ViewerModel
from workstation.viewing.orientation import PLANES, PlaneGeometry, ViewPlane
from workstation.viewing.slab import SlabSettings, slab_bounds
from workstation.viewing.slab_control import view_pixels

logger = logging.getLogger(__name__)

MIN_ZOOM, MAX_ZOOM = 0.1, 40.0
ZOOM_PIXELS_PER_E = 200.0
SLAB_COLOUR = QColor(130, 230, 130)  # the slab line in the corner: a view that is not a single slice


@dataclass
class _Drag:
    """A mouse drag in progress: what it does and where it started."""

    kind: str
    start: QPointF
    image_start: tuple[float, float]
    window: float
    level: float
    zoom: float
    pan: QPointF
    image_now: tuple[float, float]


class SliceView(QWidget):
    """A single plane of the MPR viewer, drawing the shared state of the viewer model."""

    def __init__(self, model: ViewerModel, actions: ViewerActions, plane: ViewPlane,
                 slab: SlabSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.viewer_actions = actions
        self.plane = plane
        self.own_slab = slab  # a view with a slab of its own (the 2x2 layout's axial MIP), else the viewer's
        self.zoom = 1.0
        self.pan = QPointF(0.0, 0.0)
        self.last_render_ms = 0.0
        self.last_paint_ms = 0.0
        self._grey: QImage | None = None
        self._grey_key: tuple[object, ...] | None = None
        self._missing = False
        self._overlay: QImage | None = None
        self._overlay_key: tuple[object, ...] | None = None
        self._drag: _Drag | None = None
        self._hover: tuple[int, int, int] | None = None
        self._wheel_rest = 0
        self.corner_text: dict[str, list[str]] = {}  # what the last paint wrote in each corner
        self.setObjectName(f"{plane}View")
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(96, 96)

    # ------------------------------------------------------------------ geometry

    @property
    def geom(self) -> PlaneGeometry | None:
        """This plane's mapping onto the current volume (``None`` before a volume is set)."""
        return self.model.state.geoms.get(self.plane)

    @property
    def slice_index(self) -> int:
        """The array index of the shown slice along this view's normal axis."""
        return self.model.slice_index(self.plane)

    def frame(self) -> tuple[float, float, float, float]:
        """``(sx, sy, ox, oy)``: widget pixels per image pixel along x/y and the image origin."""
        g = self.geom
        if g is None:
            return 1.0, 1.0, 0.0, 0.0
        dx, dy = g.pixel_mm
        w_mm, h_mm = g.width * dx, g.height * dy
        fit = min(max(self.width(), 1) / w_mm, max(self.height(), 1) / h_mm)
        s = fit * self.zoom
        ox = (self.width() - w_mm * s) / 2.0 + self.pan.x()
        oy = (self.height() - h_mm * s) / 2.0 + self.pan.y()
        return dx * s, dy * s, ox, oy

    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Widget position of continuous image point ``(x, y)``."""
        sx, sy, ox, oy = self.frame()
        return QPointF(ox + x * sx, oy + y * sy)

    def widget_to_image(self, pos: QPointF) -> tuple[float, float]:
        """Continuous image point under a widget position."""
        sx, sy, ox, oy = self.frame()
        return (pos.x() - ox) / sx, (pos.y() - oy) / sy

    def image_rect(self) -> QRectF:
        """Where the whole slice lies in the widget."""
        g = self.geom
        if g is None:
            return QRectF()
        return QRectF(self.image_to_widget(0.0, 0.0), self.image_to_widget(float(g.width), float(g.height)))

    def index_at(self, pos: QPointF) -> tuple[int, int, int] | None:
        """The voxel under a widget position on the shown slice, or ``None`` outside the image."""
        g = self.geom
        if g is None:
            return None
        x, y = self.widget_to_image(pos)
        if not (0.0 <= x < g.width and 0.0 <= y < g.height):
            return None
        idx = np.rint(g.image_to_index(x, y, self.slice_index)).astype(int)
        return int(idx[0]), int(idx[1]), int(idx[2])

    def magnification(self) -> float:
        """Screen pixels per image pixel (100 % = one to one), counting the finer in-plane pixel size.

        Reformatted views of thick slices have one coarse axis; measuring
        against the finer one gives the three views comparable numbers.
        """
        g = self.geom
        if g is None:
            return 1.0
        sx, sy, _, _ = self.frame()
        dx, dy = g.pixel_mm
        return min(sx / dx, sy / dy) * min(dx, dy)

    def reset_view(self) -> None:
        """Fit the slice to the view."""
        self.zoom, self.pan = 1.0, QPointF(0.0, 0.0)
        self.update()

    def zoom_about(self, anchor: QPointF, zoom: float) -> None:
        """Set the zoom keeping the image point under ``anchor`` where it is."""
        x, y = self.widget_to_image(anchor)
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        moved = self.image_to_widget(x, y)
        self.pan += anchor - moved
        self.update()

    def ensure_visible(self, x: float, y: float) -> None:
        """Pan so that image point ``(x, y)`` lies inside the view (after a jump to a finding)."""
        p = self.image_to_widget(x, y)
        if not QRectF(self.rect()).adjusted(20, 20, -20, -20).contains(p):
            self.pan += QPointF(self.width() / 2.0, self.height() / 2.0) - p
            self.update()

    def invalidate(self) -> None:
        """Forget the cached images (new volume, data arrived) and repaint."""
        self._grey_key = self._overlay_key = None
        self.update()

    def slab_settings(self) -> SlabSettings:
        """The slab this view shows: its own, or the viewer's (thickness 0: single slices)."""
        return self.own_slab if self.own_slab is not None else self.model.state.slab

    # ------------------------------------------------------------------ rendering

    def _ensure_images(self, g: PlaneGeometry) -> None:
        st = self.model.state
        vol = st.volume
        assert vol is not None
        s = self.slice_index
        settings = self.slab_settings()
        slab = (slab_bounds(s, g.n_slices, g.spacing[g.normal], settings.thickness_mm) if settings.active
                else None)
        loaded_key: object = st.loaded_version if g.normal != 0 or slab else st.slice_loaded(s)
        key = (st.volume_version, s, st.window, st.level, st.invert, loaded_key, slab, slab and settings.mode)
        if key != self._grey_key:
            t0 = time.perf_counter()
            self._grey, self._missing = None, False
            whole, rows, cols = g.line_mask(st.loaded, s) if st.loaded is not None else (True, None, None)
            if whole:
                self._grey, self._missing = slice_image(view_pixels(st, g, s, slab, settings.mode), st.window,
                                                        st.level, st.invert, rows, cols)
            else:
                self._missing = True
            self._grey_key = key
            self.last_render_ms = (time.perf_counter() - t0) * 1000.0
        ov = st.overlay
        okey = (st.volume_version, s, ov.version, ov.mode) if ov is not None else None
        if okey != self._overlay_key:
            self._overlay = None if ov is None else overlay_image(g.extract(ov.labelmap, s), ov.lut, ov.filled)
            self._overlay_key = okey

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        """Slice (or slab), overlay (of the centre slice), highlight, measurements, crosshair, then text."""
        t0 = time.perf_counter()
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), Qt.GlobalColor.black)
            g = self.geom
            if self.model.state.volume is None or g is None:
                painter.setFont(painting.text_font(self.width(), self.height()))
                painting.draw_centre_note(painter, QRectF(self.rect()), "No series open", painting.TEXT_COLOUR)
                return
            self._ensure_images(g)
            self._paint_images(painter)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setFont(painting.text_font(self.width(), self.height()))
            self._paint_graphics(painter, g)
            if self.model.state.show_annotations:
                self._paint_text(painter, g)
            self._paint_border(painter)
        finally:
            painter.end()
        self.last_paint_ms = (time.perf_counter() - t0) * 1000.0

    def _paint_images(self, painter: QPainter) -> None:
        sx, sy, ox, oy = self.frame()
        painter.save()
        painter.setTransform(QTransform(sx, 0.0, 0.0, sy, ox, oy))
        if self._grey is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(QPointF(0.0, 0.0), self._grey)
        ov = self.model.state.overlay
        if self._overlay is not None and ov is not None and ov.visible and ov.opacity > 0:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            painter.setOpacity(ov.opacity)
            painter.drawImage(QPointF(0.0, 0.0), self._overlay)
        painter.restore()

    def _paint_graphics(self, painter: QPainter, g: PlaneGeometry) -> None:
        st = self.model.state
        s = self.slice_index
        if st.highlight is not None:
            lo, hi = st.highlight
            if min(lo[g.normal], hi[g.normal]) <= s <= max(lo[g.normal], hi[g.normal]):
                painting.draw_box(painter, self.image_to_widget, g.index_edges(lo, hi))
        shown: list[ViewMeasurement] = [m for m in st.measurements if m.plane == self.plane and m.slice_index == s]
        live = self._live_measurement()
        painting.draw_measurements(painter, self.image_to_widget, [*shown, *([live] if live else [])])
        if st.show_crosshair:
            centre = self.image_to_widget(*g.index_to_image(st.cursor))
            by_normal = {st.geoms[p].normal: p for p in PLANES}
            painting.draw_crosshair(painter, QRectF(self.rect()), centre,
                                    painting.PLANE_COLOURS[by_normal[g.h_axis]],
                                    painting.PLANE_COLOURS[by_normal[g.v_axis]])

    def _paint_text(self, painter: QPainter, g: PlaneGeometry) -> None:
        lines = corner_lines(self.model, self.plane, self.slab_settings(), self.magnification(), self._hover)
        colours = {"identity": painting.IDENTITY_COLOUR, "plane": painting.PLANE_COLOURS[self.plane],
                   "text": painting.TEXT_COLOUR, "slab": SLAB_COLOUR}
        corners = {corner: [(text, colours[role]) for text, role in rows] for corner, rows in lines.items()}
        self.corner_text = {corner: [text for text, _ in rows] for corner, rows in lines.items()}
        painting.draw_corners(painter, QRectF(self.rect()), corners)
        painting.draw_letters(painter, QRectF(self.rect()), g.left, g.right, g.top, g.bottom)
        if self._missing:
            done, total = self.model.state.loaded_count()
            painting.draw_centre_note(painter, QRectF(self.rect()), f"loading… {done}/{total} slices")

    def _paint_border(self, painter: QPainter) -> None:
        colour = QColor(painting.PLANE_COLOURS[self.plane])
        colour.setAlpha(230 if self.model.state.active == self.plane else 70)
        w, h = self.width(), self.height()
        for rect in (QRectF(0, 0, w, 1), QRectF(0, h - 1, w, 1), QRectF(0, 0, 1, h), QRectF(w - 1, 0, 1, h)):
            painter.fillRect(rect, colour)

    def _live_measurement(self) -> ViewMeasurement | None:
        return self._measurement_of(self._drag)

    def _measurement_of(self, d: _Drag | None) -> ViewMeasurement | None:
        if d is None or d.kind not in ("ruler", "roi"):
            return None
        return self.model.measure("ruler" if d.kind == "ruler" else "roi", self.plane, d.image_start, d.image_now)

    # ------------------------------------------------------------------ input

    def _drag_kind(self, event: QMouseEvent) -> str | None:
        button = event.button()
        if button == Qt.MouseButton.RightButton:
            return "zoom"
        if button == Qt.MouseButton.MiddleButton:
            return "pan"
        if button != Qt.MouseButton.LeftButton:
            return None
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            return "crosshair"
        return self.model.state.tool

    def _clamped_image(self, pos: QPointF) -> tuple[float, float]:
        g = self.geom
        x, y = self.widget_to_image(pos)
        if g is None:
            return x, y
        return min(max(x, 0.0), float(g.width)), min(max(y, 0.0), float(g.height))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Start the drag the button (and tool) stands for."""
        self.model.set_active_plane(self.plane)
        kind = self._drag_kind(event)
        if kind is None or self.geom is None:
            super().mousePressEvent(event)
            return
        st = self.model.state
        start = self._clamped_image(event.position())
        self._drag = _Drag(kind, event.position(), start, st.window, st.level, self.zoom, QPointF(self.pan), start)
        if kind == "crosshair":
            self._move_cursor(event.position())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Continue a drag, or track the voxel under the pointer for the value readout."""
        d = self._drag
        pos = event.position()
        if d is None:
            hover = self.index_at(pos)
            if hover != self._hover:
                self._hover = hover
                self.update()
            return
        delta = pos - d.start
        if d.kind == "wl":
            self.model.wl.drag(d.window, d.level, delta.x(), delta.y())
        elif d.kind == "zoom":
            self.zoom, self.pan = d.zoom, QPointF(d.pan)
            self.zoom_about(d.start, d.zoom * math.exp(-delta.y() / ZOOM_PIXELS_PER_E))
        elif d.kind == "pan":
            self.pan = d.pan + delta
            self.update()
        elif d.kind == "crosshair":
            self._move_cursor(pos)
        elif d.kind in ("ruler", "roi"):
            d.image_now = self._clamped_image(pos)
            self.update()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Finish a drag; a finished ruler or ROI becomes a measurement."""
        d, self._drag = self._drag, None
        if d is None:
            super().mouseReleaseEvent(event)
            return
        if d.kind in ("ruler", "roi"):
            d.image_now = self._clamped_image(event.position())
            m = self._measurement_of(d)
            if m is not None:
                self.model.add_measurement(m)
        self.update()
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Maximise this view, or go back to the previous layout."""
        if event.button() == Qt.MouseButton.LeftButton and self.model.state.tool in ("wl", "crosshair", "pan"):
            self.viewer_actions.toggle_maximized(self.plane)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def _move_cursor(self, pos: QPointF) -> None:
        g = self.geom
        if g is None:
            return
        x, y = self._clamped_image(pos)
        idx = g.image_to_index(min(x, g.width - 1e-6), min(y, g.height - 1e-6), self.slice_index)
        self.model.set_cursor_index((round(idx[0]), round(idx[1]), round(idx[2])))

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        """Scroll slices (wheel towards you: next image); Ctrl+wheel zooms."""
        self.model.set_active_plane(self.plane)
        self._wheel_rest += event.angleDelta().y()
        steps = int(self._wheel_rest / 120)
        self._wheel_rest -= steps * 120
        if steps:
            if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                self.zoom_about(event.position(), self.zoom * (1.15 ** steps))
            else:
                self.model.step_slice(self.plane, -steps)
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Slice, preset, reset and cine keys go to the viewer."""
        if self._drag is not None and event.key() == Qt.Key.Key_Escape:
            self._drag = None
            self.update()
            event.accept()
            return
        if handle_key(self.model, self.viewer_actions, self.plane, event):
            event.accept()
            return
        super().keyPressEvent(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        """Clear the value readout when the pointer leaves."""
        if self._hover is not None:
            self._hover = None
            self.update()
