"""Series thumbnails as icons: ``ThumbnailLoader`` shows what ``services.thumbnails`` makes; row icons.

The pixels (the windowed middle slice, made on a job runner, cached as PNG) come
from the Qt-free ``workstation.services.thumbnails.ThumbnailService``; this
module only turns its grey arrays into ``QImage``s and signals, on the GUI
thread (through ``workstation.qt.bridge.GuiPoster``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from workstation.qt.bridge import GuiPoster, stop_at_quit
from workstation.services.thumbnails import THUMB_PIXELS, ThumbnailEvent, ThumbnailReady, ThumbnailService

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from workstation.services.catalog import Catalog
    from workstation.services.runner import JobRunner

logger = logging.getLogger(__name__)


def to_qimage(grey: npt.NDArray[np.uint8]) -> QImage:
    """A QImage owning a copy of a 2-D uint8 array (safe to create on any thread)."""
    import numpy as np

    arr = np.ascontiguousarray(grey)
    rows, cols = arr.shape
    return QImage(arr.data, cols, rows, cols, QImage.Format.Format_Grayscale8).copy()


def picture_icon(image: QImage) -> QIcon:
    """An icon showing the image unaltered in every state (Qt would tint it when selected)."""
    pix = QPixmap.fromImage(image)
    icon = QIcon()
    for mode in (QIcon.Mode.Normal, QIcon.Mode.Selected, QIcon.Mode.Active):
        icon.addPixmap(pix, mode)
    return icon


def placeholder_icon(size: int) -> QIcon:
    """A dark framed square shown until a series' thumbnail is ready."""
    pix = QPixmap(size, size)
    pix.fill(QColor("#0b0c0d"))
    painter = QPainter(pix)
    painter.setPen(QColor("#3a3d42"))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return QIcon(pix)


def status_dot(colour: str, size: int = 10) -> QIcon:
    """A small filled circle in ``colour`` (AI status)."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(colour))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pix)


class ThumbnailLoader(QObject):
    """Thumbnails for the browser: made by a ``ThumbnailService`` on its runner, answered on the GUI thread.

    ``thumbnailReady(series_id, image)`` arrives on the GUI thread; ``thumbnailFailed``
    when a series has no picture to show (documents, colour images, unreadable files).
    """

    thumbnailReady = Signal(int, QImage)  # noqa: N815 - Qt signal naming
    thumbnailFailed = Signal(int, str)  # noqa: N815

    def __init__(self, catalog: Catalog, cache_dir: Path, size: int = THUMB_PIXELS, *,
                 runner: JobRunner | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._poster = GuiPoster(self)
        self.service = ThumbnailService(catalog, cache_dir, self._poster.post, size=size, runner=runner)
        self.service.subscribe(self._on_event)
        stop_at_quit(self.service.shutdown)

    def cache_file(self, series_key: str, instances: int) -> Path:
        """Where the thumbnail of a series (in its current extent) is kept on disk."""
        return self.service.cache_file(series_key, instances)

    def cached(self, series_id: int) -> QImage | None:
        """The thumbnail in memory, if made already."""
        pixels = self.service.cached(series_id)
        return to_qimage(pixels) if pixels is not None else None

    def request(self, series_id: int, series_key: str, instances: int) -> QImage | None:
        """The thumbnail if in memory; otherwise start making it and return None."""
        pixels = self.service.request(series_id, series_key, instances)
        return to_qimage(pixels) if pixels is not None else None

    @property
    def busy(self) -> bool:
        """True while thumbnails are being made."""
        return self.service.busy

    def shutdown(self) -> None:
        """Drop queued work and join the thumbnail thread."""
        self.service.shutdown()

    def _on_event(self, event: ThumbnailEvent) -> None:
        if isinstance(event, ThumbnailReady):
            self.thumbnailReady.emit(event.series_id, to_qimage(event.pixels))
        else:
            self.thumbnailFailed.emit(event.series_id, event.message)
