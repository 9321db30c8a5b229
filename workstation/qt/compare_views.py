"""The follow-up reading's two viewers side by side: current | prior, linked, zoom and pan following.

``SideBySide`` is a part of ``CompareReading`` (``workstation.qt.compare``).
It holds the splitter the window shows as its central widget: the current
viewer under a "CURRENT" header and, while comparing, a prior pane (a second
``MprViewer`` under a header naming the prior's date and how it was aligned).
It

* shows the prior beside the current (one axial plane each, half the width
  each) and puts the current viewer's layout back when the prior is closed;
* links the two viewer models through the registration
  (``workstation.viewing.linking.ViewerLink``: cursor, scrolling, W/L, slab,
  the overlay's settings) and draws the prior's own label map in the prior
  viewer, in the same colours and the same way as the current's;
* makes the views' zoom and pan follow here (they are Qt state): after a view
  zooms, pans or resizes, its partner in the other viewer gets the same scale
  and, when positions are linked, the same point under the cursor.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from workstation.qt.viewer import MprViewer, ViewerInfo
from workstation.qt.viewer.slice_view import SliceView
from workstation.viewing.linking import ViewerLink

if TYPE_CHECKING:
    from inference.contract import AnalysisResult
    from inference.followup.model import RegistrationResult
    from inference.volume import Volume

logger = logging.getLogger(__name__)

HEADER_STYLE = "QLabel { background: #1d2733; color: #e0e6ee; padding: 3px 8px; font-weight: bold; }"
PRIOR_HEADER_STYLE = "QLabel { background: #2a2238; color: #e6dcff; padding: 3px 8px; font-weight: bold; }"
FAILED_HEADER_STYLE = "QLabel { background: #8b1e1e; color: #ffffff; padding: 3px 8px; font-weight: bold; }"
NO_BUTTONS = Qt.MouseButton.NoButton
ZOOM_EVENTS = (QEvent.Type.Wheel, QEvent.Type.MouseMove, QEvent.Type.MouseButtonRelease, QEvent.Type.Resize)


class SideBySide(QObject):
    """The current and prior viewers side by side; see the module docstring. ``splitter`` is the widget."""

    def __init__(self, viewer: MprViewer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.link: ViewerLink | None = None
        self._layout_before: str | None = None
        self._zoom_busy = False
        self.current_header = QLabel()
        self.current_header.setStyleSheet(HEADER_STYLE)
        self.current_header.hide()
        current = QWidget()
        box = QVBoxLayout(current)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.current_header)
        box.addWidget(self.viewer, 1)
        self.prior_viewer = MprViewer()
        self.prior_viewer.setObjectName("priorViewer")
        self.prior_header = QLabel()
        self.prior_header.setObjectName("PriorHeader")
        for header in (self.current_header, self.prior_header):  # one line each: the two images start level
            header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.prior_pane = QWidget()
        box = QVBoxLayout(self.prior_pane)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.prior_header)
        box.addWidget(self.prior_viewer, 1)
        self.prior_pane.hide()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("CompareSplitter")
        self.splitter.addWidget(current)
        self.splitter.addWidget(self.prior_pane)
        self.splitter.setChildrenCollapsible(False)
        for view in [*self.viewer.all_views(), *self.prior_viewer.all_views()]:
            view.installEventFilter(self)
        viewer.layoutChanged.connect(self._follow_layout)

    # --- the prior pane ---------------------------------------------------------------------
    def show_prior(self, volume: Volume, info: ViewerInfo, header: str, tooltip: str, current_header: str) -> None:
        """Show the prior ``volume`` beside the current, display linked (positions once aligned)."""
        self.prior_viewer.set_volume(volume, info)  # drops an earlier prior's overlay
        if self.link is not None:
            self.link.close()
        self.link = ViewerLink(self.viewer.model, self.prior_viewer.model, None)
        self.link.sync_from_current()
        self.set_prior_header(header, tooltip)
        self.current_header.setText(current_header)
        self.current_header.show()
        if not self.prior_pane.isVisible():
            self._layout_before = self.viewer.layout_name()
            self.prior_pane.show()
            self.viewer.set_layout("1x1", "axial")  # one plane each: current | prior, as big as the screen allows
            half = max(self.splitter.width() // 2, 100)
            self.splitter.setSizes([half, half])

    def set_prior_header(self, text: str, tooltip: str | None = None, *, failed: bool = False) -> None:
        """The prior pane's header line (red when the comparison or its alignment failed); the tooltip stays
        when ``tooltip`` is None."""
        self.prior_header.setText(text)
        if tooltip is not None:
            self.prior_header.setToolTip(tooltip)
        self.prior_header.setStyleSheet(FAILED_HEADER_STYLE if failed else PRIOR_HEADER_STYLE)

    def set_registration(self, registration: RegistrationResult) -> None:
        """Link positions through ``registration`` (a failed one links the display only); partners follow."""
        if self.link is not None:
            self.link.set_registration(registration)
        self.sync_zoom_all()

    def show_prior_analysis(self, result: AnalysisResult) -> None:
        """Outline the prior's own findings in the prior viewer, drawn as the current's overlay is drawn."""
        if self.link is None or self.prior_viewer.volume() is None:
            return
        try:
            self.link.set_prior_overlay(result.labelmap, result.label_table)
        except ValueError:  # a label map off the prior's grid: the comparison stands, the overlay is left out
            logger.warning("the prior's label map does not fit the prior shown; its overlay is not drawn",
                           exc_info=True)

    def is_showing(self) -> bool:
        """True while the prior pane is shown."""
        return self.prior_pane.isVisible()

    def close_prior(self) -> None:
        """Unlink, hide the prior pane and give the current viewer its layout back."""
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.prior_pane.isVisible():
            self.prior_pane.hide()
            self.current_header.hide()
            if self._layout_before is not None:
                self.viewer.set_layout(self._layout_before)
        self._layout_before = None

    # --- layout and zoom follow the current viewer -------------------------------------------------
    def _follow_layout(self, name: str) -> None:
        if self.prior_pane.isVisible() and self.prior_viewer.layout_name() != name:
            self.prior_viewer.set_layout(name, self.viewer.model.active_plane())
            self.sync_zoom_all()

    def _partner(self, view: SliceView) -> SliceView | None:
        for mine, other in ((self.viewer, self.prior_viewer), (self.prior_viewer, self.viewer)):
            if view is mine.mip_view:
                return other.mip_view
            if mine.views.get(view.plane) is view:
                return other.views[view.plane]
        return None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """After a view zooms, pans or resizes, its partner in the other viewer follows (once the event is done).

        A zoom or pan follows the view the reader used; a resize always follows the current viewer.
        """
        if self.link is None or self._zoom_busy or not isinstance(watched, SliceView):
            return False
        kind = event.type()
        if kind == QEvent.Type.MouseMove and isinstance(event, QMouseEvent) and event.buttons() == NO_BUTTONS:
            return False
        if kind in ZOOM_EVENTS:
            source = watched
            if kind == QEvent.Type.Resize and self._is_prior(watched):
                source = self._partner(watched) or watched
            QTimer.singleShot(0, self, lambda v=source: self.sync_zoom(v))
        return False

    def _is_prior(self, view: SliceView) -> bool:
        return view in self.prior_viewer.all_views()

    def sync_zoom(self, source: SliceView) -> None:
        """Give ``source``'s partner the same scale (screen pixels per mm) and, when linked, the same point
        under the cursor at the same place on screen."""
        partner = self._partner(source)
        if self.link is None or partner is None or source.geom is None or partner.geom is None:
            return
        self._zoom_busy = True
        try:
            sx = source.frame()[0] / source.geom.pixel_mm[0]  # screen pixels per mm
            px = partner.frame()[0] / partner.geom.pixel_mm[0]
            fit = px / partner.zoom
            partner.zoom = max(0.1, min(40.0, sx / fit))
            partner.pan = QPointF(0.0, 0.0)
            if self.link.position_linked:
                there = source.image_to_widget(*source.geom.index_to_image(source.model.state.cursor))
                here = partner.image_to_widget(*partner.geom.index_to_image(partner.model.state.cursor))
                partner.pan = there - here
            partner.update()
        finally:
            self._zoom_busy = False

    def sync_zoom_all(self) -> None:
        """Every visible view of the current viewer gives its partner its zoom and pan."""
        if self.link is None:
            return
        for view in self.viewer.all_views():
            if view.isVisible():
                self.sync_zoom(view)
