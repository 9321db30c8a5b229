"""Open a series so its middle slice can be drawn at once while the rest streams in. No Qt.

``StreamingLoad`` plans the grid from the headers (no pixels), preallocates the
volume, reads the middle slice first, then the other slices in chunks on a few
threads, outward from the middle, calling ``on_slices(start, stop)`` as each chunk
lands and checking a cancel flag between chunks. The finished volume equals what
``load_series_volumes`` gives, voxel for voxel, with the same affine.

Series that must be resampled as a whole (gantry tilt, non-uniform spacing), or
whose files hold many slices each (multi-frame, mosaic), or that make several
volumes, are loaded whole by ``load_series``; ``streamed`` is then False and
``fallback_reason`` says why.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference.cancel import CancelledError
from inference.errors import GeometryError, NotAVolumeError, UnreadableFileError, WorkstationError
from inference.volume import Volume
from workstation.dicomio.stack import StackPlan
from workstation.dicomio.stream import (
    StreamLayout,
    StreamMismatchError,
    empty_volume,
    fill_slices,
    final_dtype,
    stream_layout,
    stream_refusal,
)
from workstation.dicomio.volume_builder import NonUniform, load_series, plan_series
from workstation.index.db import StudyIndex
from workstation.services import audit_trail
from workstation.services.studies import SeriesSource

logger = logging.getLogger(__name__)

SliceCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]
DEFAULT_CHUNK = 16


def _never() -> bool:
    return False


def reading_order(n: int, chunk: int = DEFAULT_CHUNK) -> list[tuple[int, int]]:
    """Slice ranges in the order they are read: the middle slice alone, then chunks outward.

    Chunks alternate above and below the middle, so the neighbourhood of the slice
    a viewer opens on fills first.
    """
    if n <= 0:
        return []
    mid = n // 2
    order = [(mid, mid + 1)]
    up, down = mid + 1, mid
    while up < n or down > 0:
        if up < n:
            order.append((up, min(n, up + chunk)))
            up = min(n, up + chunk)
        if down > 0:
            order.append((max(0, down - chunk), down))
            down = max(0, down - chunk)
    return order


class StreamingLoad:
    """One series being opened: geometry at once, pixels as they arrive.

    Construction reads no pixels (it plans the grid from the headers and raises
    ``NotAVolumeError``/``GeometryError`` with the reason when there is none).
    ``volume`` is the preallocated volume (None for fallback series until ``run``
    ends) and ``loaded`` says which of its slices hold their final values.
    """

    def __init__(self, source: SeriesSource, *, nonuniform: NonUniform = "resample",
                 chunk: int = DEFAULT_CHUNK, workers: int = 0) -> None:
        started = time.perf_counter()
        self.source = source
        self.nonuniform: NonUniform = nonuniform
        self.chunk = max(1, chunk)
        self.workers = workers or min(8, (os.cpu_count() or 2) * 2)
        self.plan: StackPlan = plan_series(source.headers, source.label)
        self.fallback_reason = stream_refusal(self.plan)
        self.layout: StreamLayout | None = None
        self.volume: Volume | None = None
        self.volumes: list[Volume] = []
        if not self.fallback_reason:
            self.layout = stream_layout(self.plan.volumes[0])
            self.volume = empty_volume(self.layout)
        self.loaded: npt.NDArray[np.bool_] = np.zeros(self.n_slices, dtype=bool)
        self.timings: dict[str, float] = {"plan": time.perf_counter() - started}

    @property
    def label(self) -> str:
        """The series' label (``series 3 (Thorax)`` or a folder), as used in messages."""
        return self.source.label

    @property
    def streamed(self) -> bool:
        """True when slices arrive one chunk at a time; False for series loaded whole."""
        return not self.fallback_reason

    @property
    def n_slices(self) -> int:
        """Slices of the (first) output volume."""
        return self.plan.volumes[0].target_count

    @property
    def first_slice(self) -> int:
        """The slice read first (the middle one), where a viewer should open."""
        return self.n_slices // 2

    def run(self, on_slices: SliceCallback | None = None, cancel: CancelCheck | None = None) -> Volume:
        """Read the pixels; return the finished volume (raise ``CancelledError`` if cancelled).

        ``on_slices(start, stop)`` is called on this thread once per range that holds
        its final values, the middle slice first. The returned volume is ``volume``
        itself, or (rarely) a copy in the narrower dtype the data allow.
        """
        volume = self._run(on_slices or (lambda start, stop: None), cancel or _never)
        audit_trail.study_opened(volume, "viewer")
        return volume

    def _run(self, notify: SliceCallback, is_cancelled: CancelCheck) -> Volume:
        started = time.perf_counter()
        if self.layout is None:
            return self._run_whole(notify, is_cancelled, started)
        try:
            volume = self._stream(self.layout, notify, is_cancelled, started)
        except StreamMismatchError as exc:
            logger.warning("%s: %s; loading it whole", self.label, exc)
            self.loaded[:] = False
            return self._run_whole(notify, is_cancelled, started)
        self.timings["total"] = time.perf_counter() - started
        logger.info("%s streamed in %.3f s (first slice after %.3f s)", self.label,
                    self.timings["total"], self.timings["first_slice"])
        return volume

    def _stream(self, layout: StreamLayout, notify: SliceCallback, is_cancelled: CancelCheck,
                started: float) -> Volume:
        assert self.volume is not None
        array = self.volume.array
        ranges = np.zeros((self.n_slices, 2), dtype=np.float64)
        order = reading_order(self.n_slices, self.chunk)
        self._check(is_cancelled)
        first_start, first_stop = order[0]
        fill_slices(layout, array, first_start, first_stop, ranges)
        self.loaded[first_start:first_stop] = True
        self.timings["first_slice"] = time.perf_counter() - started
        notify(first_start, first_stop)

        def job(start: int, stop: int) -> bool:
            if is_cancelled():
                return False
            fill_slices(layout, array, start, stop, ranges)
            return True

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="series-read") as pool:
            pending: dict[Future[bool], tuple[int, int]] = {pool.submit(job, a, b): (a, b) for a, b in order[1:]}
            try:
                while pending:
                    done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    self._check(is_cancelled)
                    for future in done:
                        start, stop = pending.pop(future)
                        if future.result():
                            self.loaded[start:stop] = True
                            self._check(is_cancelled)  # no callback after a cancel
                            notify(start, stop)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        dtype = final_dtype(layout, ranges)
        volume = self.volume
        if dtype != array.dtype:
            logger.debug("%s: data fit %s; converting from %s", self.label, dtype, array.dtype)
            volume = replace(volume, array=array.astype(dtype))
            self.volume = volume
        self.volumes = [volume]
        return volume

    def _run_whole(self, notify: SliceCallback, is_cancelled: CancelCheck, started: float) -> Volume:
        self._check(is_cancelled)
        result = load_series(self.source.headers, nonuniform=self.nonuniform, label=self.label,
                             workers=self.workers)
        self._check(is_cancelled)
        self.volumes = result.volumes
        self.volume = result.volumes[0]
        self.loaded = np.ones(self.volume.shape[0], dtype=bool)
        self.timings["first_slice"] = self.timings["total"] = time.perf_counter() - started
        notify(0, self.volume.shape[0])
        logger.info("%s loaded whole in %.3f s (%s)", self.label, self.timings["total"],
                    self.fallback_reason or "pixels outside the declared range")
        return self.volume

    def _check(self, is_cancelled: CancelCheck) -> None:
        if is_cancelled():
            raise CancelledError(f"loading {self.label} was cancelled")


def indexed_source(index: StudyIndex, series_id: int) -> SeriesSource:
    """The headers of an indexed series, labelled ``series ID (description)``."""
    row = index.find_series(str(series_id))
    if row is None:
        raise WorkstationError(f"series {series_id}: not in the study index")
    headers = index.series_headers(row.id)
    if not headers:
        raise NotAVolumeError(f"series {series_id}: no instances in the study index")
    return SeriesSource(f"series {row.id} ({row.description or row.modality or 'no description'})", headers)


def open_indexed(db_path: str | Path, series_id: int, *, nonuniform: NonUniform = "resample",
                 chunk: int = DEFAULT_CHUNK, workers: int = 0) -> StreamingLoad:
    """A ``StreamingLoad`` of an indexed series (opens its own index connection: any thread)."""
    with StudyIndex(db_path) as index:
        source = indexed_source(index, series_id)
    return StreamingLoad(source, nonuniform=nonuniform, chunk=chunk, workers=workers)


def describe_failure(label: str, exc: BaseException) -> str:
    """A message for the user naming the series, the file where there is one, and the reason."""
    if isinstance(exc, CancelledError):
        return f"loading {label} was cancelled"
    if isinstance(exc, UnreadableFileError):
        return f"{label} cannot be read: {exc.path}: {exc.reason}"
    if isinstance(exc, WorkstationError):
        reason = str(exc)
        for prefix in (f"{label}: ", f"{label.split(' (')[0]}: "):
            reason = reason.removeprefix(prefix)
        verb = "cannot form a volume" if isinstance(exc, NotAVolumeError | GeometryError) else "cannot be opened"
        return f"{label} {verb}: {reason}"
    if isinstance(exc, MemoryError):
        return f"{label} is too large for the memory available"
    return f"{label} cannot be loaded: {exc}"

