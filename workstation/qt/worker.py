"""The one inference worker thread: it owns the device, runs analyses, and talks to the GUI by signals.

Threading design
----------------
* ``AnalysisWorker`` lives on the GUI thread. It owns one ``_InferenceThread``
  (a ``QThread`` without an event loop) that takes jobs from a queue. The
  engine is created on that thread and used only there; torch is first
  imported there (when it names the device at start-up), never on the GUI thread.
* ``submit`` puts an immutable job on the queue and returns its generation
  number; it cancels the previous job's token first. The thread skips jobs
  superseded while they waited, so a burst of submits runs only the last.
* The thread reports each outcome with a queued signal; the GUI-side slots drop
  any outcome whose generation is not the current one, so a superseded result
  is never emitted.
* Progress is not sent as one event per report: the thread overwrites a
  ``ProgressMailbox`` and a GUI timer reads it 20 times a second at most.
* A finished result is handed to its job's sink (the analysis store) on the
  thread, after the outcome signal: the overlay never waits for the disk.
* Nothing on the GUI thread waits for the worker, except ``shutdown`` (on quit):
  it cancels the running job, tells the thread to stop and joins it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal, Slot

from inference.contract import AnalysisRequest
from inference.engine import Engine
from workstation.services.interpolation import InterpolationPolicy
from workstation.services.jobs import (
    Job,
    Outcome,
    ProgressMailbox,
    ResultSink,
    describe_device,
    keep_result,
    run_job,
    supersede,
    warm_up,
)

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_MS = 50  # at most 20 progress signals a second
EngineFactory = Callable[[], Engine]


class _InferenceThread(QThread):
    """Runs jobs one at a time; the engine lives only here."""

    outcome = Signal(object)
    described = Signal(str)

    def __init__(self, engine_factory: EngineFactory, device: str, mailbox: ProgressMailbox) -> None:
        super().__init__()
        self.setObjectName("inference-worker")
        self._engine_factory = engine_factory
        self._device = device
        self._mailbox = mailbox
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()

    def _next_job(self) -> Job | None:
        """The newest queued job (older ones were superseded); None means stop."""
        job = self.jobs.get()
        while job is not None:
            try:
                newer = self.jobs.get_nowait()
            except queue.Empty:
                break
            if newer is None:
                return None
            logger.debug("analysis %d superseded before it started", job.generation)
            job = newer
        return job

    def run(self) -> None:
        """Name the device, build the engine, then run jobs until told to stop."""
        device = describe_device(self._device)
        warm_up()  # before announcing the device: "ready" means the first run will not import anything
        self.described.emit(device)
        engine: Engine | None = None
        while (job := self._next_job()) is not None:
            try:
                if engine is None:
                    engine = self._engine_factory()
                outcome = run_job(engine, job, self._mailbox)
            except Exception as exc:  # the factory failed: report it, keep serving
                logger.exception("analysis %d: could not create the engine", job.generation)
                outcome = Outcome("failed", job.generation,
                                  message=f"The analysis engine could not start ({type(exc).__name__}: {exc}).")
            self.outcome.emit(outcome)
            keep_result(job, outcome)  # after the GUI has it: writing the result never delays the overlay
        logger.debug("inference thread stopped")


class AnalysisWorker(QObject):
    """The GUI's handle on the inference thread. Create it on the GUI thread; call ``shutdown`` on quit.

    Signals are delivered on the GUI thread and only for the current generation:
    ``progress(gen, fraction, stage)``, ``finished(gen, AnalysisResult)``,
    ``failed(gen, message)``, ``cancelled(gen)``, and ``deviceDescribed(text)``
    once the thread has looked at the hardware.
    """

    progress = Signal(int, float, str)
    finished = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)
    deviceDescribed = Signal(str)  # noqa: N815 - Qt signal naming

    def __init__(self, models_dir: Path | None = None, *, device: str = "auto",
                 engine_factory: EngineFactory | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self.device_text = ""
        self._mailbox = ProgressMailbox()
        self._thread = _InferenceThread(engine_factory or (lambda: Engine(models_dir)), device, self._mailbox)
        self._thread.outcome.connect(self._on_outcome, Qt.ConnectionType.QueuedConnection)
        self._thread.described.connect(self._on_described, Qt.ConnectionType.QueuedConnection)
        self._timer = QTimer(self)
        self._timer.setInterval(PROGRESS_INTERVAL_MS)
        self._timer.timeout.connect(self._poll_progress)
        self._generation = 0
        self._active: Job | None = None
        self._series_id: int | None = None
        self._closed = False
        app = QCoreApplication.instance()
        if app is not None:  # a last safety net: never leave the thread running at exit
            app.aboutToQuit.connect(self.shutdown)

    # --- API -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread (it names the device first). ``submit`` starts it too."""
        if self._closed:
            raise RuntimeError("the analysis worker was shut down")
        if not self._thread.isRunning() and not self._thread.isFinished():
            self._thread.start(QThread.Priority.LowPriority)

    def submit(self, request: AnalysisRequest, series_id: int, *, policy: InterpolationPolicy | None = None,
               label: str = "", keep: ResultSink | None = None) -> int:
        """Queue ``request`` (cancelling any earlier one) and return its generation number.

        ``policy`` is the interpolation rule the run obeys (default: refuse over
        10 % interpolated slices); ``label`` names the series in its messages;
        ``keep`` receives the result on the worker thread (the analysis store).
        """
        self.start()
        self._generation = supersede(self._active, self._generation)
        job = Job(self._generation, request, series_id, policy=policy or InterpolationPolicy(hint=""), label=label,
                  keep=keep)
        self._active = job
        self._series_id = series_id
        self._thread.jobs.put(job)
        self._timer.start()
        logger.info("submitted analysis %d (%s, series %d)", job.generation, request.model_id, series_id)
        return job.generation

    def cancel(self) -> None:
        """Ask the current run to stop; ``cancelled`` follows when it has stopped."""
        if self._active is not None:
            self._active.token.cancel()

    def is_busy(self) -> bool:
        """True from ``submit`` until the current generation's outcome arrives."""
        return self._active is not None

    @property
    def generation(self) -> int:
        """The generation number of the newest submitted request (0 before any)."""
        return self._generation

    @property
    def series_id(self) -> int | None:
        """The series of the newest submitted request."""
        return self._series_id

    def is_running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread.isRunning()

    @Slot()
    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel, stop the thread and join it (the only wait on the GUI thread). True if it stopped."""
        if self._closed:
            return not self._thread.isRunning()
        self._closed = True
        self._timer.stop()
        if self._active is not None:
            self._active.token.cancel()
            self._active = None
        app = QCoreApplication.instance()
        if app is not None:
            with contextlib.suppress(RuntimeError, TypeError):  # already disconnected
                app.aboutToQuit.disconnect(self.shutdown)
        if not self._thread.isRunning():
            return True
        self._thread.jobs.put(None)
        stopped = bool(self._thread.wait(timeout_ms))
        if not stopped:
            logger.warning("the inference thread did not stop within %d ms", timeout_ms)
        return stopped

    # --- GUI-thread slots --------------------------------------------------------------
    @Slot()
    def _poll_progress(self) -> None:
        report = self._mailbox.take()
        if self._closed or self._active is None:
            self._timer.stop()
            return
        if report is not None and report.generation == self._active.generation:
            self.progress.emit(report.generation, report.fraction, report.stage)

    @Slot(str)
    def _on_described(self, text: str) -> None:
        self.device_text = text
        logger.info("analysis device: %s", text)
        if not self._closed:
            self.deviceDescribed.emit(text)

    @Slot(object)
    def _on_outcome(self, outcome: Outcome) -> None:
        if self._closed or self._active is None or outcome.generation != self._active.generation:
            logger.debug("dropped outcome of superseded analysis %d", outcome.generation)
            return
        self._active = None
        self._timer.stop()
        self._mailbox.take()
        if outcome.kind == "finished":
            self.finished.emit(outcome.generation, outcome.result)
        elif outcome.kind == "failed":
            self.failed.emit(outcome.generation, outcome.message)
        else:
            self.cancelled.emit(outcome.generation)
