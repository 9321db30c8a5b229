"""Series thumbnails (the middle slice, windowed per modality, made off the GUI thread, cached) and row icons.

A thumbnail is drawn from one plane only (the middle of the stack, or the middle
instance of a series without geometry), windowed with the scanner's own
WindowCenter/WindowWidth when given, the soft-tissue window for CT otherwise,
and the 1st-99.5th percentile for other modalities. Pixels are square (the
in-plane spacing is honoured) and the image is padded to a black square. PNGs
are kept under the data folder keyed by series key and instance count, so a
restart or a refresh shows them at once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

if TYPE_CHECKING:  # numpy, pydicom and the engine load on the thumbnail thread, not at launch
    import numpy as np
    import numpy.typing as npt

    from workstation.dicomio.headers import InstanceHeader

logger = logging.getLogger(__name__)

THUMB_PIXELS = 128  # twice the 64-pixel icon, sharp on high-DPI screens
CACHE_VERSION = 1
CT_DEFAULT_WINDOW = (40.0, 400.0)


def thumbnail_window(h: InstanceHeader, values: npt.NDArray[Any]) -> tuple[float, float]:
    """(centre, width) for a thumbnail of ``values`` from the series headed by ``h``."""
    import numpy as np

    if h.window_center is not None and h.window_width is not None and h.window_width > 1:
        return float(h.window_center), float(h.window_width)
    if h.modality == "CT":
        return CT_DEFAULT_WINDOW
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(lo + hi) / 2.0, max(float(hi - lo), 1.0)


def _middle_plane_values(headers: list[InstanceHeader]) -> tuple[InstanceHeader, npt.NDArray[np.float32],
                                                                  tuple[float, float]]:
    """The real values of the series' middle plane, its header and its (row, column) spacing."""
    import numpy as np

    from inference.errors import WorkstationError
    from workstation.dicomio.pixels import decode_instance, read_planes, stored_dtype
    from workstation.dicomio.volume_builder import plan_series

    try:
        planes = plan_series(headers).volumes[0].planes
    except WorkstationError:
        planes = []
    if planes:
        plane = planes[len(planes) // 2]
        buf = np.empty((1, plane.rows, plane.columns), dtype=stored_dtype(plane.header))
        read_planes([plane], buf, workers=1)
        values = buf[0].astype(np.float32) * np.float32(plane.slope) + np.float32(plane.intercept)
        return plane.header, values, plane.pixel_spacing
    images = sorted((h for h in headers if h.has_pixels and h.rows and h.columns),
                    key=lambda h: (h.instance_number is None, h.instance_number or 0, h.ref))
    if not images:
        raise WorkstationError("no image with pixels")
    h = images[len(images) // 2]
    frames = decode_instance(h)
    values = frames[len(frames) // 2].astype(np.float32) * np.float32(h.slope) + np.float32(h.intercept)
    return h, values, h.pixel_spacing or (1.0, 1.0)


def thumbnail_pixels(headers: list[InstanceHeader], size: int = THUMB_PIXELS) -> npt.NDArray[np.uint8]:
    """A ``size`` x ``size`` grey thumbnail of the series (raises ``WorkstationError`` if it has none)."""
    import numpy as np
    from PIL import Image

    from workstation.imaging import window

    h, values, (dr, dc) = _middle_plane_values(headers)
    grey = window(values, *thumbnail_window(h, values))
    if h.photometric == "MONOCHROME1":  # low values are white
        grey = 255 - grey
    rows, cols = grey.shape
    height_mm, width_mm = rows * dr, cols * dc
    scale = size / max(height_mm, width_mm)
    w, hgt = max(1, round(width_mm * scale)), max(1, round(height_mm * scale))
    img = Image.fromarray(grey, "L").resize((w, hgt), Image.Resampling.BILINEAR)
    square = Image.new("L", (size, size), 0)
    square.paste(img, ((size - w) // 2, (size - hgt) // 2))
    return np.asarray(square, dtype=np.uint8)


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


class _ThumbSignals(QObject):
    ready = Signal(int, QImage)
    failed = Signal(int, str)


class _ThumbnailTask(QRunnable):
    def __init__(self, series_id: int, db_path: Path, cache_file: Path, size: int, signals: _ThumbSignals,
                 stop: threading.Event) -> None:
        super().__init__()
        self.series_id, self.db_path, self.cache_file, self.size = series_id, db_path, cache_file, size
        self.signals, self.stop = signals, stop

    def run(self) -> None:
        from inference.errors import WorkstationError

        if self.stop.is_set():
            return
        try:
            image = QImage(str(self.cache_file)) if self.cache_file.is_file() else QImage()
            if image.isNull():
                image = self._make()
            self.signals.ready.emit(self.series_id, image)
        except (WorkstationError, OSError) as exc:
            logger.info("no thumbnail for series %d: %s", self.series_id, exc)
            self.signals.failed.emit(self.series_id, str(exc))
        except Exception as exc:  # a thumbnail must never take the browser down
            logger.exception("thumbnail of series %d failed", self.series_id)
            self.signals.failed.emit(self.series_id, str(exc))

    def _make(self) -> QImage:
        from workstation.index.db import StudyIndex

        with StudyIndex(self.db_path) as index:
            headers = index.series_headers(self.series_id)
        image = to_qimage(thumbnail_pixels(headers, self.size))
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(".tmp.png")
        if image.save(str(tmp)):  # format from the .png suffix
            tmp.replace(self.cache_file)
        return image


class ThumbnailLoader(QObject):
    """Makes thumbnails on one background thread; answers from memory when it can.

    ``thumbnailReady(series_id, image)`` arrives on the GUI thread; ``thumbnailFailed``
    when a series has no picture to show (documents, colour images, unreadable files).
    """

    thumbnailReady = Signal(int, QImage)  # noqa: N815 - Qt signal naming
    thumbnailFailed = Signal(int, str)  # noqa: N815

    def __init__(self, db_path: Path, cache_dir: Path, size: int = THUMB_PIXELS,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db_path, self.cache_dir, self.size = db_path, cache_dir, size
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # stay out of the way of series loading
        self._signals = _ThumbSignals(self)
        self._signals.ready.connect(self._on_ready, Qt.ConnectionType.QueuedConnection)
        self._signals.failed.connect(self._on_failed, Qt.ConnectionType.QueuedConnection)
        self._memory: dict[int, QImage] = {}
        self._keys: dict[int, str] = {}
        self._pending: set[int] = set()
        self._stop = threading.Event()

    def cache_file(self, series_key: str, instances: int) -> Path:
        """Where the thumbnail of a series (in its current extent) is kept on disk."""
        return self.cache_dir / f"{series_key}-{instances}-v{CACHE_VERSION}-{self.size}.png"

    def cached(self, series_id: int) -> QImage | None:
        """The thumbnail in memory, if made already."""
        return self._memory.get(series_id)

    def request(self, series_id: int, series_key: str, instances: int) -> QImage | None:
        """The thumbnail if in memory; otherwise start making it and return None."""
        key = f"{series_key}-{instances}"
        if self._keys.get(series_id) == key and series_id in self._memory:
            return self._memory[series_id]
        self._keys[series_id] = key
        self._memory.pop(series_id, None)
        if series_id not in self._pending:
            self._pending.add(series_id)
            self._pool.start(_ThumbnailTask(series_id, self.db_path, self.cache_file(series_key, instances),
                                            self.size, self._signals, self._stop))
        return None

    @property
    def busy(self) -> bool:
        """True while thumbnails are being made."""
        return bool(self._pending)

    def shutdown(self) -> None:
        """Drop queued work and wait for the running thumbnail."""
        self._stop.set()
        self._pool.clear()
        self._pool.waitForDone()
        self._pending.clear()

    def _on_ready(self, series_id: int, image: QImage) -> None:
        self._pending.discard(series_id)
        self._memory[series_id] = image
        self.thumbnailReady.emit(series_id, image)

    def _on_failed(self, series_id: int, message: str) -> None:
        self._pending.discard(series_id)
        self.thumbnailFailed.emit(series_id, message)
