"""Qt bridge for the streaming series loader: loads on a pool thread, reports by signals.

``SeriesLoader.open_series(id)`` starts a ``StreamingLoad`` on a worker thread
and answers on the GUI thread: ``volumeReady`` as soon as the middle slice is in
(the viewer draws it at once and follows the loaded mask), ``slicesLoaded`` per
chunk, then ``finished`` or ``failed``. Opening another series cancels the
previous load; every task carries a generation number, and signals of an older
generation are dropped, so a slow old load can never overwrite a newer view.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

if TYPE_CHECKING:  # the loading stack (pydicom, numpy, the engine's errors) loads on first use, off launch
    from workstation.dicomio.volume_builder import NonUniform
    from workstation.services.studies import SeriesSource

logger = logging.getLogger(__name__)


class _TaskSignals(QObject):
    """Signals emitted from worker threads; every one carries the task's generation first."""

    ready = Signal(int, int, object, object)
    slices = Signal(int, int, int, int)
    done = Signal(int, int, object)
    error = Signal(int, int, str)


class _LoadTask(QRunnable):
    """Read one series (headers from the index when no source is given) and stream its pixels."""

    def __init__(self, generation: int, series_id: int, db_path: Path | None, source: SeriesSource | None,
                 cancel: threading.Event, signals: _TaskSignals, nonuniform: NonUniform) -> None:
        super().__init__()
        self.generation = generation
        self.series_id = series_id
        self.db_path = db_path
        self.source = source
        self.cancel = cancel
        self.signals = signals
        self.nonuniform: NonUniform = nonuniform

    def run(self) -> None:
        from inference.cancel import CancelledError
        from inference.errors import WorkstationError
        from workstation.services.streaming import StreamingLoad, describe_failure

        gen, sid = self.generation, self.series_id
        label = f"series {sid}"
        try:
            source = self.source or self._indexed()
            label = source.label
            if self.cancel.is_set():
                return
            load = StreamingLoad(source, nonuniform=self.nonuniform)
            ready = False

            def on_slices(start: int, stop: int) -> None:
                nonlocal ready
                if not ready and load.volume is not None:
                    ready = True
                    self.signals.ready.emit(gen, sid, load.volume, load.loaded)
                self.signals.slices.emit(gen, sid, start, stop)

            volume = load.run(on_slices, self.cancel.is_set)
            self.signals.done.emit(gen, sid, volume)
        except CancelledError:
            logger.debug("%s: load cancelled", label)
        except (WorkstationError, OSError, MemoryError) as exc:
            message = describe_failure(label, exc)
            logger.warning("%s", message)
            self.signals.error.emit(gen, sid, message)
        except Exception as exc:  # a worker must report every failure, never die silently
            logger.exception("%s: unexpected error while loading", label)
            self.signals.error.emit(gen, sid, describe_failure(label, exc))

    def _indexed(self) -> SeriesSource:
        from workstation.index.db import StudyIndex
        from workstation.services.streaming import indexed_source

        assert self.db_path is not None
        with StudyIndex(self.db_path) as index:
            return indexed_source(index, self.series_id)


class SeriesLoader(QObject):
    """Loads one series at a time off the GUI thread; the newest request always wins.

    Signals (all on the GUI thread, only for the current request):

    - ``volumeReady(series_id, volume, loaded_mask)``: the volume's geometry is final and
      its middle slice is in; ``loaded_mask`` (numpy bool per slice) fills as chunks land.
    - ``slicesLoaded(series_id, start, stop)``: slices ``start:stop`` hold their values.
    - ``finished(series_id, volume)``: everything is in. ``volume`` is usually the same
      object as in ``volumeReady``; when the data fit a narrower dtype it is a converted copy.
    - ``failed(series_id, message)``: the message names the series, the file and the reason.
    """

    volumeReady = Signal(int, object, object)  # noqa: N815 - Qt signal naming
    slicesLoaded = Signal(int, int, int)  # noqa: N815
    finished = Signal(int, object)
    failed = Signal(int, str)

    def __init__(self, db_path: str | Path | None = None, parent: QObject | None = None, *,
                 nonuniform: NonUniform = "resample") -> None:
        super().__init__(parent)
        self.db_path = Path(db_path) if db_path is not None else None
        self.nonuniform: NonUniform = nonuniform
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)  # the running load plus a cancelled one winding down
        self._signals = _TaskSignals(self)
        queued = Qt.ConnectionType.QueuedConnection
        self._signals.ready.connect(self._on_ready, queued)
        self._signals.slices.connect(self._on_slices, queued)
        self._signals.done.connect(self._on_done, queued)
        self._signals.error.connect(self._on_error, queued)
        self._generation = 0
        self._cancel = threading.Event()
        self._current: int | None = None
        self._busy = False

    @property
    def current_series(self) -> int | None:
        """The series of the newest request (None before the first)."""
        return self._current

    @property
    def loading(self) -> bool:
        """True while the newest request has neither finished nor failed."""
        return self._busy

    def open_series(self, series_id: int) -> None:
        """Load an indexed series (cancels any load in progress)."""
        if self.db_path is None:
            raise ValueError("SeriesLoader needs db_path to open indexed series")
        self._start(series_id, None)

    def open_source(self, series_id: int, source: SeriesSource) -> None:
        """Load a series given by its headers (reported under ``series_id``)."""
        self._start(series_id, source)

    def _start(self, series_id: int, source: SeriesSource | None) -> None:
        self._cancel.set()
        self._generation += 1
        self._cancel = threading.Event()
        self._current = series_id
        self._busy = True
        task = _LoadTask(self._generation, series_id, self.db_path, source, self._cancel, self._signals,
                         self.nonuniform)
        self._pool.start(task)

    def cancel(self) -> None:
        """Stop the current load; its remaining signals are dropped."""
        self._cancel.set()
        self._generation += 1
        self._busy = False

    def wait(self, timeout_ms: int = -1) -> bool:
        """Block until no load thread runs (True) or the timeout passes (False)."""
        return bool(self._pool.waitForDone(timeout_ms))

    def shutdown(self) -> None:
        """Cancel and join: call before the window closes so no thread outlives it."""
        self.cancel()
        self.wait()

    def _stale(self, generation: int) -> bool:
        return generation != self._generation

    def _on_ready(self, generation: int, series_id: int, volume: Any, loaded: Any) -> None:
        if not self._stale(generation):
            self.volumeReady.emit(series_id, volume, loaded)

    def _on_slices(self, generation: int, series_id: int, start: int, stop: int) -> None:
        if not self._stale(generation):
            self.slicesLoaded.emit(series_id, start, stop)

    def _on_done(self, generation: int, series_id: int, volume: Any) -> None:
        if not self._stale(generation):
            self._busy = False
            self.finished.emit(series_id, volume)

    def _on_error(self, generation: int, series_id: int, message: str) -> None:
        if not self._stale(generation):
            self._busy = False
            self.failed.emit(series_id, message)
