"""Drawing on top of a slice: crosshair, measurements, highlight box, corner text, edge letters.

Reading-room legibility: text is drawn light (yellow for identity, white for
geometry) over a black shadow, so it stays readable on bright bone or lung.
Everything here draws in widget coordinates through a ``to_widget`` mapping
from image coordinates, so zoom and pan never distort the lines or the text.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen

from workstation.viewing.measure import RoiMeasurement, RulerMeasurement, ViewMeasurement
from workstation.viewing.orientation import ViewPlane

logger = logging.getLogger(__name__)

PLANE_COLOURS: dict[ViewPlane, QColor] = {
    # 3D Slicer's convention: red axial, green coronal, yellow sagittal.
    "axial": QColor(243, 74, 51),
    "coronal": QColor(110, 190, 73),
    "sagittal": QColor(237, 213, 76),
}
IDENTITY_COLOUR = QColor(255, 214, 10)
TEXT_COLOUR = QColor(240, 240, 240)
LOADING_COLOUR = QColor(255, 170, 40)
MEASURE_COLOUR = QColor(64, 224, 255)
HIGHLIGHT_COLOUR = QColor(255, 255, 0)
SHADOW = QColor(0, 0, 0)
CROSSHAIR_GAP = 10.0

ToWidget = Callable[[float, float], QPointF]


def text_font(width: int, height: int, scale: float = 1.0) -> QFont:
    """A sans font sized for the view: small panes get smaller (but legible) text."""
    font = QFont("DejaVu Sans")
    font.setStyleHint(QFont.StyleHint.SansSerif)
    font.setPixelSize(max(10, min(15, round(min(width, height) / 36 * scale))))
    return font


def shadow_text(painter: QPainter, rect: QRectF, flags: Qt.AlignmentFlag, text: str, colour: QColor) -> None:
    """Text over a one-pixel black shadow down-right and up-left (legible on bone and on air)."""
    painter.setPen(SHADOW)
    for dx, dy in ((1.0, 1.0), (-1.0, -1.0)):
        painter.drawText(rect.translated(dx, dy), int(flags), text)
    painter.setPen(colour)
    painter.drawText(rect, int(flags), text)


def draw_corners(painter: QPainter, rect: QRectF, corners: dict[str, list[tuple[str, QColor]]]) -> None:
    """Lines of text in the four corners (keys ``tl``, ``tr``, ``bl``, ``br``)."""
    metrics = painter.fontMetrics()
    line_h = metrics.lineSpacing()
    inner = rect.adjusted(6, 4, -6, -4)
    room = int(inner.width() * 0.46)
    for key, lines in corners.items():
        top = key[0] == "t"
        h_flag = Qt.AlignmentFlag.AlignLeft if key[1] == "l" else Qt.AlignmentFlag.AlignRight
        for n, (text, colour) in enumerate(lines if top else list(reversed(lines))):
            y = inner.top() + n * line_h if top else inner.bottom() - (n + 1) * line_h
            shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, room)
            shadow_text(painter, QRectF(inner.left(), y, inner.width(), line_h),
                        h_flag | Qt.AlignmentFlag.AlignVCenter, shown, colour)


def draw_letters(painter: QPainter, rect: QRectF, left: str, right: str, top: str, bottom: str) -> None:
    """Orientation letters at the middle of each edge."""
    m = painter.fontMetrics()
    w, h = m.horizontalAdvance("W") + 8, m.lineSpacing()
    centre = rect.center()
    places = ((left, QRectF(rect.left() + 4, centre.y() - h / 2, w, h), Qt.AlignmentFlag.AlignLeft),
              (right, QRectF(rect.right() - 4 - w, centre.y() - h / 2, w, h), Qt.AlignmentFlag.AlignRight),
              (top, QRectF(centre.x() - w / 2, rect.top() + 4, w, h), Qt.AlignmentFlag.AlignHCenter),
              (bottom, QRectF(centre.x() - w / 2, rect.bottom() - 4 - h, w, h), Qt.AlignmentFlag.AlignHCenter))
    for text, box, flag in places:
        shadow_text(painter, box, flag | Qt.AlignmentFlag.AlignVCenter, text, TEXT_COLOUR)


def draw_crosshair(painter: QPainter, rect: QRectF, centre: QPointF, vertical: QColor, horizontal: QColor) -> None:
    """Two thin lines through the cursor, with a gap so the voxel under it stays visible."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
    for colour, lines in (
        (vertical, (QLineF(centre.x(), rect.top(), centre.x(), centre.y() - CROSSHAIR_GAP),
                    QLineF(centre.x(), centre.y() + CROSSHAIR_GAP, centre.x(), rect.bottom()))),
        (horizontal, (QLineF(rect.left(), centre.y(), centre.x() - CROSSHAIR_GAP, centre.y()),
                      QLineF(centre.x() + CROSSHAIR_GAP, centre.y(), rect.right(), centre.y()))),
    ):
        c = QColor(colour)
        c.setAlpha(200)
        painter.setPen(QPen(c, 1.0))
        for line in lines:
            painter.drawLine(line)
    painter.restore()


def draw_box(painter: QPainter, to_widget: ToWidget, edges: tuple[float, float, float, float]) -> None:
    """A dashed highlight rectangle around image edges ``(x0, y0, x1, y1)``."""
    a, b = to_widget(edges[0], edges[1]), to_widget(edges[2], edges[3])
    pen = QPen(HIGHLIGHT_COLOUR, 2.0, Qt.PenStyle.DashLine)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(QRectF(a, b).normalized().adjusted(-3, -3, 3, 3))


def _ruler(painter: QPainter, to_widget: ToWidget, m: RulerMeasurement) -> None:
    a, b = to_widget(*m.start), to_widget(*m.end)
    painter.setPen(QPen(MEASURE_COLOUR, 1.5))
    painter.drawLine(a, b)
    length = math.hypot(b.x() - a.x(), b.y() - a.y())
    if length > 0:
        nx, ny = -(b.y() - a.y()) / length * 5, (b.x() - a.x()) / length * 5
        for p in (a, b):
            painter.drawLine(QPointF(p.x() - nx, p.y() - ny), QPointF(p.x() + nx, p.y() + ny))
    label_at = b if b.x() >= a.x() else a
    shadow_text(painter, QRectF(label_at.x() + 8, label_at.y() - 9, 200, 18),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, m.text(), MEASURE_COLOUR)


def _roi(painter: QPainter, to_widget: ToWidget, m: RoiMeasurement) -> None:
    box = QRectF(to_widget(*m.corner0), to_widget(*m.corner1)).normalized()
    painter.setPen(QPen(MEASURE_COLOUR, 1.5))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawEllipse(box)
    h = painter.fontMetrics().lineSpacing() * 2 + 4
    shadow_text(painter, QRectF(box.right() + 6, box.top() - 2, 320, h),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, m.text(), MEASURE_COLOUR)


def draw_measurements(painter: QPainter, to_widget: ToWidget, items: Sequence[ViewMeasurement]) -> None:
    """Rulers and ROIs with their values."""
    for m in items:
        if isinstance(m, RulerMeasurement):
            _ruler(painter, to_widget, m)
        else:
            _roi(painter, to_widget, m)


def draw_centre_note(painter: QPainter, rect: QRectF, text: str, colour: QColor = LOADING_COLOUR) -> None:
    """A short note centred low in the view (e.g. ``loading…``)."""
    h = painter.fontMetrics().lineSpacing() + 4
    shadow_text(painter, QRectF(rect.left(), rect.center().y() - h / 2, rect.width(), h),
                Qt.AlignmentFlag.AlignCenter, text, colour)
