"""Slice pixels to QImages: window/level and label colours, vectorised.

A 512x512 slice is redrawn on every scroll step and W/L drag, so nothing here
loops over pixels in Python. 8- and 16-bit data (CT is int16) go through a
lookup table indexed by the raw bit pattern: one ``np.take`` writes 32-bit
pixels straight into the QImage's buffer. The images are in Qt's native 32-bit
formats (RGB32, ARGB32 premultiplied), which Qt scales about twice as fast as
8-bit grey. Label maps go through a colour table (one ARGB value per label
value, ``workstation.viewing.label_colours``); outlines come from a neighbour
difference on the 2-D slice.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from PySide6.QtGui import QImage

from workstation.imaging import window as apply_window

logger = logging.getLogger(__name__)

OPAQUE = np.uint32(0xFF000000)
_UINT_OF = {1: np.uint8, 2: np.uint16}


def _scale(values: npt.NDArray[Any], window: float, level: float, invert: bool) -> npt.NDArray[np.uint8]:
    """The window/level rule (``workstation.imaging.window``) with the viewer's argument order."""
    return apply_window(values, level, window, invert)


def grey_to_rgb32(grey: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """Opaque ``0xFFgggggg`` pixels from grey levels."""
    return np.asarray(grey, dtype=np.uint32) * np.uint32(0x010101) | OPAQUE


@lru_cache(maxsize=16)
def _window_lut(window: float, level: float, dtype_str: str, invert: bool) -> npt.NDArray[np.uint32]:
    """RGB32 grey for every bit pattern of an 8/16-bit dtype (indexed by the unsigned view)."""
    dtype = np.dtype(dtype_str)
    bits = np.arange(1 << (8 * dtype.itemsize), dtype=_UINT_OF[dtype.itemsize])
    return grey_to_rgb32(_scale(bits.view(dtype), window, level, invert))


def window_grey(sl: npt.NDArray[Any], window: float, level: float, invert: bool = False) -> npt.NDArray[np.uint8]:
    """A uint8 image of a 2-D slice under window/level (``invert`` for MONOCHROME1)."""
    return (window_rgb32(sl, window, level, invert) & np.uint32(0xFF)).astype(np.uint8)


def window_rgb32(sl: npt.NDArray[Any], window: float, level: float, invert: bool = False,
                 out: npt.NDArray[np.uint32] | None = None) -> npt.NDArray[np.uint32]:
    """Opaque RGB32 grey pixels of a 2-D slice under window/level, written into ``out`` when given."""
    if sl.dtype.kind in "iu" and sl.dtype.itemsize in _UINT_OF:
        lut = _window_lut(round(float(window), 4), round(float(level), 4), sl.dtype.str, invert)
        return np.take(lut, sl.view(_UINT_OF[sl.dtype.itemsize]), out=out, mode="clip")
    pixels = grey_to_rgb32(_scale(sl, window, level, invert))
    if out is None:
        return pixels
    out[...] = pixels
    return out


def _image(height: int, width: int, fmt: QImage.Format) -> tuple[QImage, npt.NDArray[np.uint32]]:
    """A new 32-bit QImage and a numpy view of its pixels (``[row, column]`` uint32)."""
    img = QImage(width, height, fmt)
    view = np.frombuffer(img.bits(), dtype=np.uint32).reshape(height, img.bytesPerLine() // 4)[:, :width]
    return img, view


def slice_image(sl: npt.NDArray[Any], window: float, level: float, invert: bool = False,
                rows: npt.NDArray[np.bool_] | None = None, cols: npt.NDArray[np.bool_] | None = None
                ) -> tuple[QImage, bool]:
    """The windowed slice as an RGB32 QImage; rows/columns not loaded yet are black.

    Returns the image and whether any part was blacked out as not loaded.
    """
    h, w = sl.shape
    img, pixels = _image(h, w, QImage.Format.Format_RGB32)
    window_rgb32(sl, window, level, invert, out=pixels)
    missing = False
    if rows is not None and not rows.all():
        pixels[~rows, :] = OPAQUE
        missing = True
    if cols is not None and not cols.all():
        pixels[:, ~cols] = OPAQUE
        missing = True
    return img, missing


def outline(labels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The label slice kept only where a 4-neighbour differs (the edge pixels of each region)."""
    edge = np.zeros(labels.shape, dtype=bool)
    vert = labels[1:, :] != labels[:-1, :]
    edge[1:, :] |= vert
    edge[:-1, :] |= vert
    horiz = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= horiz
    edge[:, :-1] |= horiz
    return np.where(edge, labels, 0)


def overlay_image(labels: npt.NDArray[Any], lut: npt.NDArray[np.uint32],
                  filled: npt.NDArray[np.bool_] | None = None) -> QImage | None:
    """An ARGB32 (premultiplied) QImage of a 2-D label slice; ``None`` when no pixel is visible.

    ``filled[value]`` says which labels are painted whole; the others show only
    their edges (``None``: every label whole). Alpha is 0 or 255, so
    premultiplied pixels hold the exact label colours; the painter's opacity
    blends the overlay over the image.
    """
    if filled is not None and not filled.all():
        edges = outline(labels)
        if filled.any():
            whole = np.take(filled, labels, mode="clip")
            edges = np.where(whole, labels, edges)
        labels = edges
    if not labels.any():
        return None
    h, w = labels.shape
    img, pixels = _image(h, w, QImage.Format.Format_ARGB32_Premultiplied)
    np.take(lut, labels, out=pixels, mode="clip")
    if not pixels.any():
        return None
    return img
