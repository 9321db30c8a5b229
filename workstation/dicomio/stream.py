"""Fill a volume a slice range at a time with exactly the values ``load_series`` gives.

``load_series`` reads every plane first and then picks the output dtype from the
data. To show the first slice before the rest is read, the dtype must be known
from the headers alone: the range that BitsStored and PixelRepresentation allow,
taken through each plane's rescale, picks it by the same rule. When the data
alone would pick another type (16-bit signed storage that holds only -1024..3071,
say), the finished volume is converted once at the end (``final_dtype``), so the
result equals ``load_series`` in values and dtype.

Only plain stacks stream: one volume of single-frame objects on a regular grid.
Tilted or unevenly spaced stacks must be resampled as a whole, and multi-frame
objects and mosaics are decoded per object; ``stream_refusal`` says why a plan
does not stream, and those series go through ``load_series`` instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import WorkstationError
from inference.volume import Volume
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.pixels import read_planes, stored_dtype
from workstation.dicomio.stack import StackGeometry, StackPlan
from workstation.dicomio.volume_builder import output_dtype, series_units, source_images, volume_metadata

logger = logging.getLogger(__name__)


class StreamMismatchError(WorkstationError):
    """Decoded pixels fall outside the range the headers promise; the series must be loaded whole."""


def stream_refusal(plan: StackPlan) -> str:
    """Why the series of ``plan`` cannot stream slice by slice ("" when it can)."""
    if len(plan.volumes) > 1:
        return f"multi-volume series ({len(plan.volumes)} volumes: time points or echoes)"
    g = plan.volumes[0]
    if g.needs_shift:
        return f"gantry tilt ({g.tilt_degrees:.2f}°): slices are resampled onto an orthogonal grid"
    if not g.uniform and len(g.planes) > 1:
        return "non-uniform slice spacing: slices are resampled onto a regular grid"
    if any(p.tile >= 0 for p in g.planes):
        return "mosaic images: each file holds many slices"
    if any(p.header.number_of_frames > 1 or p.header.frames for p in g.planes):
        return "multi-frame objects: each file holds many slices"
    try:
        dtypes = {stored_dtype(p.header) for p in g.planes}
    except WorkstationError as exc:
        return str(exc)
    if len(dtypes) > 1:
        return "slices differ in pixel type"
    return ""


def _stored_range(h: InstanceHeader) -> tuple[int, int]:
    bits = h.bits_stored or h.bits_allocated
    if h.pixel_representation:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass(frozen=True)
class StreamLayout:
    """How the planes of one regular stack are read and rescaled into a preallocated array.

    ``inplace``: stored values are read straight into the output array (reinterpreted
    as the stored type) and the intercept added in place, as ``load_series`` does for
    CT; otherwise each range is read into a scratch buffer and rescaled slice by slice
    with the same arithmetic as ``load_series``.
    """

    geometry: StackGeometry
    stored: np.dtype[Any]
    dtype: np.dtype[Any]
    integral: bool
    inplace: bool
    slopes: npt.NDArray[np.float64]
    intercepts: npt.NDArray[np.float64]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)`` of the output array."""
        first = self.geometry.planes[0]
        return (len(self.geometry.planes), first.rows, first.columns)


def stream_layout(g: StackGeometry) -> StreamLayout:
    """The layout of a stack that ``stream_refusal`` accepted."""
    planes = g.planes
    stored = stored_dtype(planes[0].header)
    slopes = np.array([p.slope for p in planes], dtype=np.float64)
    intercepts = np.array([p.intercept for p in planes], dtype=np.float64)
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts)))
    ranges = np.array([_stored_range(p.header) for p in planes], dtype=np.float64)
    ends = np.stack([ranges[:, 0] * slopes + intercepts, ranges[:, 1] * slopes + intercepts])
    dtype = output_dtype(float(ends.min()), float(ends.max()), integral)
    inplace = False
    if integral and bool(np.all(slopes == 1)) and dtype.kind in "iu" and dtype.itemsize == stored.itemsize:
        info = np.iinfo(dtype)
        inplace = bool(info.min <= ranges[:, 0].min() and ranges[:, 1].max() <= info.max)
    return StreamLayout(g, stored, dtype, integral, inplace, slopes, intercepts)


def empty_volume(layout: StreamLayout) -> Volume:
    """The volume to fill: zeros (allocated lazily by the OS) on the final grid, with its metadata.

    Zeros cost nothing until written; slices not yet read hold 0, so a viewer should
    consult the loaded mask rather than the values to tell them apart.
    """
    h = layout.geometry.planes[0].header
    return Volume(
        array=np.zeros(layout.shape, dtype=layout.dtype),
        affine=layout.geometry.affine(),
        modality=h.modality,
        units=series_units(h),
        frame_of_reference_uid=h.frame_of_reference_uid,
        notes=(),
        metadata=volume_metadata(h, len(layout.geometry.planes)),
        source=source_images(layout.geometry),
    )


def fill_slices(layout: StreamLayout, array: npt.NDArray[Any], start: int, stop: int,
                ranges: npt.NDArray[np.float64]) -> None:
    """Read planes ``start:stop`` into ``array[start:stop]`` as real values.

    ``ranges[k]`` receives the stored (min, max) of slice ``k``; ``final_dtype`` needs them.
    Safe to call from several threads on disjoint ranges.
    """
    planes = layout.geometry.planes[start:stop]
    if layout.inplace:
        stored = array.view(layout.stored)[start:stop]
        read_planes(planes, stored, workers=1)
        _record_ranges(stored, ranges, start)
        info = np.iinfo(layout.dtype)
        if ranges[start:stop, 0].min() < info.min or ranges[start:stop, 1].max() > info.max:
            raise StreamMismatchError(f"{planes[0].header.ref}: stored values exceed BitsStored")
        out = array[start:stop]
        icpt = layout.intercepts[start:stop]
        if np.all(icpt == icpt[0]):
            if icpt[0] != 0:
                out += layout.dtype.type(int(icpt[0]))
        else:
            out += icpt.astype(layout.dtype)[:, None, None]
        return
    buf = np.empty((stop - start, *array.shape[1:]), dtype=layout.stored)
    read_planes(planes, buf, workers=1)
    _record_ranges(buf, ranges, start)
    work = np.int64 if layout.integral else np.float64
    for i in range(stop - start):
        slope, icpt = layout.slopes[start + i], layout.intercepts[start + i]
        tmp = buf[i].astype(work)
        if slope != 1:
            tmp *= int(slope) if layout.integral else slope
        if icpt != 0:
            tmp += int(icpt) if layout.integral else icpt
        array[start + i] = tmp


def _record_ranges(stored: npt.NDArray[Any], ranges: npt.NDArray[np.float64], start: int) -> None:
    stop = start + stored.shape[0]
    ranges[start:stop, 0] = stored.min(axis=(1, 2))
    ranges[start:stop, 1] = stored.max(axis=(1, 2))


def final_dtype(layout: StreamLayout, ranges: npt.NDArray[np.float64]) -> np.dtype[Any]:
    """The dtype ``load_series`` picks from the data, given every slice's stored (min, max)."""
    ends = np.stack([ranges[:, 0] * layout.slopes + layout.intercepts,
                     ranges[:, 1] * layout.slopes + layout.intercepts])
    return output_dtype(float(ends.min()), float(ends.max()), layout.integral)
