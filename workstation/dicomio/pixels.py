"""Read stored pixel values of planes, fast.

Uncompressed little-endian files are read straight from the pixel data offset
recorded at header time into the caller's array (no intermediate copies, GIL
released during I/O); everything else (compressed transfer syntaxes, zip
members, mosaics, multi-frame) is decoded once per object by pydicom's plugins
(pylibjpeg for JPEG, JPEG-LS, JPEG 2000 and RLE).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import NotAVolumeError, UnreadableFileError
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.slices import ImagePlane, mosaic_grid

logger = logging.getLogger(__name__)

LITTLE_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
BIG_NATIVE = "1.2.840.10008.1.2.2"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def stored_dtype(h: InstanceHeader) -> np.dtype[Any]:
    """The numpy dtype of stored values (native byte order)."""
    if h.samples_per_pixel != 1:
        raise NotAVolumeError(f"{h.ref}: colour images ({h.photometric}) cannot form a volume")
    if h.bits_allocated not in (8, 16, 32):
        raise NotAVolumeError(f"{h.ref}: {h.bits_allocated}-bit pixels are not supported for volumes")
    kind = "i" if h.pixel_representation else "u"
    return np.dtype(f"{kind}{h.bits_allocated // 8}")


def _fix_bits(arr: npt.NDArray[Any], h: InstanceHeader) -> None:
    """Mask unused high bits, sign-extending signed data (e.g. 12-bit signed in 16 bits)."""
    extra = h.bits_allocated - h.bits_stored
    if extra <= 0:
        return
    if h.pixel_representation:
        np.left_shift(arr, extra, out=arr)
        np.right_shift(arr, extra, out=arr)
    else:
        arr &= np.array((1 << h.bits_stored) - 1, dtype=arr.dtype)


def direct_readable(h: InstanceHeader) -> bool:
    """Whether ``read_direct`` reads this plane: native single-frame pixel data in a plain file."""
    return (
        (h.transfer_syntax in LITTLE_NATIVE or h.transfer_syntax == BIG_NATIVE)
        and "::" not in h.ref
        and h.pixel_offset is not None
        and h.pixel_length is not None
        and h.mosaic_count <= 1
        and h.number_of_frames == 1
        and h.samples_per_pixel == 1
    )


def read_direct(h: InstanceHeader, out: npt.NDArray[Any]) -> None:
    """Read the stored values of a ``direct_readable`` plane into ``out`` (native order, unused bits cleared)."""
    assert h.pixel_offset is not None
    need = out.nbytes
    try:
        with open(h.ref, "rb", buffering=0) as fp:  # noqa: PTH123 - raw unbuffered read
            fp.seek(h.pixel_offset)
            got = fp.readinto(memoryview(out).cast("B"))  # type: ignore[arg-type]
    except OSError as exc:
        raise UnreadableFileError(h.ref, f"cannot read pixel data: {exc}") from exc
    if got != need:
        raise UnreadableFileError(h.ref, f"file truncated: pixel data has {got} of {need} bytes")
    if h.transfer_syntax == BIG_NATIVE and out.dtype.itemsize > 1:
        out.byteswap(inplace=True)
    _fix_bits(out, h)


def decode_instance(h: InstanceHeader) -> npt.NDArray[Any]:
    """All frames of one object as stored values, shape ``(frames, rows, columns)``."""
    import pydicom

    try:
        with h.file_ref.open() as fp:
            ds = pydicom.dcmread(fp)
            if not any(k in ds for k in PIXEL_KEYWORDS):
                # pydicom drops an encapsulated Pixel Data element that ends without its
                # delimiter, and would then say "no Pixel Data": say what happened instead.
                raise UnreadableFileError(h.ref, "file truncated: its pixel data ends early or is missing "
                                                 "(cut short or changed since it was imported)")
            arr = np.asarray(ds.pixel_array)
    except UnreadableFileError:
        raise
    except Exception as exc:
        raise UnreadableFileError(h.ref, f"cannot decode pixel data ({h.transfer_syntax}): {exc}") from exc
    arr = arr.reshape((-1, h.rows, h.columns))
    dtype = stored_dtype(h)
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def _tile(arr: npt.NDArray[Any], h: InstanceHeader, tile: int) -> npt.NDArray[Any]:
    grid = mosaic_grid(h)
    rows, cols = h.rows // grid, h.columns // grid
    r, c = divmod(tile, grid)
    return arr[0, r * rows:(r + 1) * rows, c * cols:(c + 1) * cols]


def read_planes(planes: Sequence[ImagePlane], out: npt.NDArray[Any], workers: int = 0) -> None:
    """Fill ``out[k]`` with the stored values of ``planes[k]`` (shape ``(n, rows, cols)``)."""
    direct: list[int] = []
    by_object: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(planes):
        (direct if direct_readable(p.header) else by_object[p.header.ref]).append(k)

    def run_direct(indices: list[int]) -> None:
        for k in indices:
            read_direct(planes[k].header, out[k])

    def run_object(indices: list[int]) -> None:
        h = planes[indices[0]].header
        arr = decode_instance(h)
        for k in indices:
            p = planes[k]
            out[k] = _tile(arr, h, p.tile) if p.tile >= 0 else arr[p.frame]

    n_workers = workers or min(8, (os.cpu_count() or 2) * 2)
    chunk = max(1, len(direct) // (n_workers * 4) + 1)
    jobs = [direct[i:i + chunk] for i in range(0, len(direct), chunk)]
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = [pool.submit(run_direct, j) for j in jobs]
        futures += [pool.submit(run_object, idx) for idx in by_object.values()]
        for f in futures:
            f.result()
