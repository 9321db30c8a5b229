"""Series thumbnails as grey numpy arrays: the windowed middle slice, made on a job runner, cached. No Qt.

A thumbnail is drawn from one plane only (the middle of the stack, or the middle
instance of a series without geometry), windowed with the scanner's own
WindowCenter/WindowWidth when given, the soft-tissue window for CT otherwise,
and the 1st-99.5th percentile for other modalities. Pixels are square (the
in-plane spacing is honoured) and the image is padded to a black square. PNGs
are kept under the data folder keyed by series key and instance count, so a
restart or a refresh shows them at once.

``ThumbnailService`` makes them on its own job runner (one thread, background
priority: it stays out of the way of series loading) and answers through
``post`` on the owner's thread; the browser (``workstation.qt.thumbnails``)
only turns the arrays into icons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation.listeners import Listeners
from workstation.services.dispatch import Post
from workstation.services.runner import PRIORITY_BACKGROUND, JobContext, JobDone, JobRunner

if TYPE_CHECKING:  # numpy, pydicom and the engine load on the thumbnail thread, not at launch
    import numpy as np
    import numpy.typing as npt

    from workstation.dicomio.headers import InstanceHeader
    from workstation.services.catalog import Catalog

logger = logging.getLogger(__name__)

THUMB_PIXELS = 128  # twice the 64-pixel icon, sharp on high-DPI screens
CACHE_VERSION = 1
CT_DEFAULT_WINDOW = (40.0, 400.0)
KIND = "thumbnail"


def thumbnail_window(h: InstanceHeader, values: npt.NDArray[Any]) -> tuple[float, float]:
    """(centre, width) for a thumbnail of ``values`` from the series headed by ``h``."""
    import numpy as np

    if h.window_center is not None and h.window_width is not None and h.window_width > 1:
        return float(h.window_center), float(h.window_width)
    if h.modality == "CT":
        return CT_DEFAULT_WINDOW
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(lo + hi) / 2.0, max(float(hi - lo), 1.0)


def _middle_plane_values(
    headers: list[InstanceHeader],
) -> tuple[InstanceHeader, npt.NDArray[np.float32], tuple[float, float]]:
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
    images = sorted(
        (h for h in headers if h.has_pixels and h.rows and h.columns),
        key=lambda h: (h.instance_number is None, h.instance_number or 0, h.ref),
    )
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


def _read_cached(path: Path) -> npt.NDArray[np.uint8] | None:
    """A cached thumbnail, or None when there is none (or it cannot be read: it is made again)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return None
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError):
        logger.info("unreadable cached thumbnail %s: made again", path.name)
        return None


def _write_cached(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(pixels, "L").save(tmp, format="PNG")
    tmp.replace(path)


@dataclass(frozen=True)
class ThumbnailReady:
    """A series' thumbnail: a square grey ``uint8`` array."""

    series_id: int
    pixels: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class ThumbnailFailed:
    """A series has no picture to show (documents, colour images, unreadable files): why."""

    series_id: int
    message: str


ThumbnailEvent = ThumbnailReady | ThumbnailFailed


class ThumbnailService:
    """Makes thumbnails on a job runner, remembers them, answers through ``post``. Owner's thread only.

    Without ``runner`` the service makes and owns one (``shutdown`` joins it).
    """

    def __init__(
        self,
        catalog: Catalog,
        cache_dir: Path,
        post: Post,
        *,
        size: int = THUMB_PIXELS,
        runner: JobRunner | None = None,
    ) -> None:
        self.catalog, self.cache_dir, self.size = catalog, Path(cache_dir), size
        self._post = post
        self._owns_runner = runner is None
        self.runner = runner or JobRunner("thumbnail-runner")
        self._listeners: Listeners[ThumbnailEvent] = Listeners("thumbnail")
        self._memory: dict[int, npt.NDArray[np.uint8]] = {}
        self._keys: dict[int, str] = {}
        self._pending: set[int] = set()
        self._closed = False

    def subscribe(self, listener: Callable[[ThumbnailEvent], None]) -> None:
        """Call ``listener(event)`` on the owner's thread for every thumbnail made or failed."""
        self._listeners.subscribe(listener)

    def cache_file(self, series_key: str, instances: int) -> Path:
        """Where the thumbnail of a series (in its current extent) is kept on disk."""
        return self.cache_dir / f"{series_key}-{instances}-v{CACHE_VERSION}-{self.size}.png"

    def cached(self, series_id: int) -> npt.NDArray[np.uint8] | None:
        """The thumbnail in memory, if made already."""
        return self._memory.get(series_id)

    @property
    def busy(self) -> bool:
        """True while thumbnails are being made."""
        return bool(self._pending)

    def request(self, series_id: int, series_key: str, instances: int) -> npt.NDArray[np.uint8] | None:
        """The thumbnail if in memory; otherwise start making it (``ThumbnailReady`` follows) and return None."""
        key = f"{series_key}-{instances}"
        if self._keys.get(series_id) == key and series_id in self._memory:
            return self._memory[series_id]
        self._keys[series_id] = key
        self._memory.pop(series_id, None)
        if series_id not in self._pending and not self._closed:
            self._pending.add(series_id)
            cache = self.cache_file(series_key, instances)
            self.runner.submit(
                KIND,
                lambda ctx: self._make(series_id, cache, ctx),
                supersede=False,
                priority=PRIORITY_BACKGROUND,
                on_done=lambda done: self._post(lambda: self._answer(series_id, done)),
            )
        return None

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Drop queued work; stop and join an own runner. True if nothing is left running."""
        self._closed = True
        self._pending.clear()
        if not self._owns_runner:
            return True
        return self.runner.shutdown(timeout_s)

    # --- on the runner's thread -------------------------------------------------------------
    def _make(self, series_id: int, cache: Path, ctx: JobContext) -> npt.NDArray[np.uint8]:
        ctx.token.raise_if_cancelled()
        pixels = _read_cached(cache)
        if pixels is None:
            pixels = thumbnail_pixels(self.catalog.series_headers(series_id), self.size)
            _write_cached(cache, pixels)
        return pixels

    # --- on the owner's thread ----------------------------------------------------------------
    def _answer(self, series_id: int, done: JobDone[npt.NDArray[np.uint8]]) -> None:
        from inference.errors import WorkstationError

        self._pending.discard(series_id)
        if self._closed or done.status == "cancelled":
            return
        event: ThumbnailEvent
        if done.value is not None:
            self._memory[series_id] = done.value
            event = ThumbnailReady(series_id, done.value)
        else:
            error = done.error
            if isinstance(error, (WorkstationError, OSError)):
                logger.info("no thumbnail for series %d: %s", series_id, error)
            else:  # a thumbnail must never take the browser down
                logger.error("thumbnail of series %d failed", series_id, exc_info=error)
            event = ThumbnailFailed(series_id, str(error) if error is not None else "no picture")
        self._listeners.emit(event)
