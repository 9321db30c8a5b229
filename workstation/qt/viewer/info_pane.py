"""The fourth pane of the 2x2 layout: series facts, cursor readout, legend and measurements.

A radiologist glancing at it sees which series is open (and whether it has all
arrived), where the cursor is in patient coordinates and what value lies there
(and on which acquired image: ``on Se 2 Im 78``),
which colour means which structure, and the measurements taken, plus a short
reminder of the mouse and key scheme. Painted text on black, like the views.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from inference.labels import readable_name
from workstation.qt.viewer import painting
from workstation.viewing.image_number import acquired_image_text, plane_image_text
from workstation.viewing.model import ViewerModel

logger = logging.getLogger(__name__)

HEADING = QColor(150, 190, 255)
DIM = QColor(140, 140, 140)
HELP = ("Left: tool (W/L)   Shift+left: crosshair",
        "Right: zoom   Middle: pan   Wheel: slices",
        "1-5 presets  R reset  C cine  Del undo measure",
        "M slab MIP/MinIP/Avg   [ ] slab thinner/thicker")


class InfoPane(QWidget):
    """Read-only summary of what the views show: it reads the viewer model and changes nothing."""

    def __init__(self, model: ViewerModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.setObjectName("mprInfo")
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(96, 96)

    def lines(self) -> list[tuple[str, QColor, QColor | None]]:
        """``(text, colour, swatch)`` rows, top to bottom; a swatch marks a legend row."""
        st = self.model.state
        vol = st.volume
        out: list[tuple[str, QColor, QColor | None]] = []
        if vol is None:
            return [("No series open", painting.TEXT_COLOUR, None)]
        info = st.info
        out.append(("SERIES", HEADING, None))
        for text in (info.patient_text(), info.date_text(), info.series_description):
            if text:
                out.append((text, painting.IDENTITY_COLOUR, None))
        sp = vol.spacing
        done, total = st.loaded_count()
        out += [(f"{vol.modality or '?'}  {vol.shape[0]} × {vol.shape[1]} × {vol.shape[2]}  "
                 f"voxel {sp[0]:.2f} × {sp[1]:.2f} × {sp[2]:.2f} mm", painting.TEXT_COLOUR, None)]
        if done < total:
            out.append((f"Loading: {done}/{total} slices", painting.LOADING_COLOUR, None))
        lps = self.model.current_lps()
        k, j, i = self.model.current_index()
        value = st.value_at((k, j, i))
        unit = f" {vol.units}" if vol.units else ""
        out += [("CURSOR", HEADING, None),
                (f"x {lps[0]:.1f}  y {lps[1]:.1f}  z {lps[2]:.1f} mm (LPS)", painting.TEXT_COLOUR, None),
                (f"voxel [{k}, {j}, {i}]" + (f"  {value:.0f}{unit}" if value is not None else ""),
                 painting.TEXT_COLOUR, None)]
        image = acquired_image_text(vol, k)  # the acquired image the cursor lies on (or nearest)
        if image:
            out.append((f"on {image}", painting.TEXT_COLOUR, None))
        out.append((f"W {st.window:.0f}  L {st.level:.0f}  {st.wl_name}".rstrip(), painting.TEXT_COLOUR, None))
        if st.slab.active:  # thick slab: say what every view shows instead of single slices
            out.append((f"Slab {st.slab.label()} (each view along its normal)", painting.TEXT_COLOUR, None))
        ov = st.overlay
        if ov is not None:
            out.append(("LEGEND" + ("" if ov.visible else " (overlay hidden)"), HEADING, None))
            for lab in ov.table:
                shown = lab.value not in ov.hidden
                out.append((readable_name(lab.name, capitalize=True), painting.TEXT_COLOUR if shown else DIM,
                            QColor(*lab.color) if shown else QColor(60, 60, 60)))
        if st.measurements:
            out.append(("MEASUREMENTS", HEADING, None))
            for m in st.measurements[-6:]:
                text = m.text().replace("\n", "  ")
                where = plane_image_text(vol, st.geoms[m.plane], m.slice_index)
                out.append((f"{m.plane[:3]} {where}: {text}", painting.MEASURE_COLOUR, None))
        return out

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        """Rows of text (in two columns when they do not fit one), help at the bottom."""
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), Qt.GlobalColor.black)
            font: QFont = painting.text_font(self.width(), self.height(), 1.0)
            painter.setFont(font)
            line_h = painter.fontMetrics().lineSpacing()
            rows = self.lines()
            help_top = self.height() - 8 - len(HELP) * line_h
            per_col = max(1, int((help_top - 16) // line_h))
            cols = 2 if len(rows) > per_col and self.width() > 360 else 1
            col_w = (self.width() - 24) / cols
            for n, (text, colour, swatch) in enumerate(rows[: per_col * cols]):
                x = 12 + (n // per_col) * col_w
                y = 10 + (n % per_col) * line_h
                if swatch is not None:
                    painter.fillRect(QRectF(x, y + line_h * 0.2, line_h * 0.9, line_h * 0.6), swatch)
                    x += line_h * 1.3
                painter.setPen(colour)
                shown = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, int(col_w - 16))
                painter.drawText(QRectF(x, y, col_w, line_h), int(Qt.AlignmentFlag.AlignLeft
                                                                     | Qt.AlignmentFlag.AlignVCenter), shown)
            painter.setPen(DIM)
            for n, text in enumerate(HELP):
                painter.drawText(QRectF(12, help_top + n * line_h, self.width() - 24, line_h),
                                 int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
            painter.setPen(QColor(60, 60, 60))
            painter.drawRect(QRectF(self.rect()).adjusted(0, 0, -1, -1))
        finally:
            painter.end()
