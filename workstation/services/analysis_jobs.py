"""Analyses on the device runner: submit, cancel, and plain events for the current generation only. No Qt.

``AnalysisService`` is what the reading session (and the window's AI bar,
through ``workstation.qt.worker.AnalysisWorker``) uses to run a model:

* ``submit`` wraps the immutable request in a ``Job`` and runs it on the
  device ``JobRunner`` (the one thread that owns the GPU; report drafts queue
  on the same runner). A new submit supersedes the older one (its token is
  cancelled, its outcome dropped).
* The engine is created on the runner's thread on first use and kept there;
  torch is first imported there (``start`` names the device and warms the
  pipeline up as the runner's first job), never on the caller's thread.
* Every event (``DeviceDescribed``, ``AnalysisProgress``, ``AnalysisFinished``,
  ``AnalysisFailed``, ``AnalysisCancelled``) is handed to the listeners through
  ``post`` (``workstation.services.dispatch``), so they run on the owner's
  thread, and only for the newest generation: a superseded result never shows.
* A finished result goes to its sink (the analysis store) on the runner's
  thread, after the outcome was posted: the overlay never waits for the disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.contract import AnalysisRequest, AnalysisResult
from inference.engine import Engine
from workstation.listeners import Listeners
from workstation.services.dispatch import Post
from workstation.services.interpolation import InterpolationPolicy
from workstation.services.jobs import Job, Outcome, ResultSink, describe_device, keep_result, run_job, warm_up
from workstation.services.runner import PRIORITY_READER, CurrentJob, JobContext, JobDone, JobProgress, JobRunner

if TYPE_CHECKING:
    from inference.remote import RemoteModels

logger = logging.getLogger(__name__)

EngineFactory = Callable[[], Engine]
KIND = "analysis"


@dataclass(frozen=True)
class DeviceDescribed:
    """The runner looked at the hardware: how the status bar names the device."""

    text: str


@dataclass(frozen=True)
class AnalysisProgress:
    """The newest (coalesced) progress of the current analysis."""

    generation: int
    fraction: float
    stage: str


@dataclass(frozen=True)
class AnalysisFinished:
    """The current analysis produced a result."""

    generation: int
    series_id: int
    result: AnalysisResult


@dataclass(frozen=True)
class AnalysisFailed:
    """The current analysis failed; ``message`` is the user's sentence."""

    generation: int
    series_id: int
    message: str


@dataclass(frozen=True)
class AnalysisCancelled:
    """The current analysis stopped at the user's request."""

    generation: int
    series_id: int


AnalysisEvent = DeviceDescribed | AnalysisProgress | AnalysisFinished | AnalysisFailed | AnalysisCancelled
Listener = Callable[[Any], None]


class _RunnerProgress:
    """Adapts the runner's coalescing ``JobContext`` to ``run_job``'s ``put(generation, fraction, stage)``."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    def put(self, generation: int, fraction: float, stage: str) -> None:
        self._ctx.progress(fraction, stage)


class AnalysisService(CurrentJob):
    """Runs analyses on the device runner; see the module docstring. Call methods on the owner's thread."""

    def __init__(self, post: Post, *, models_dir: Path | None = None, device: str = "auto",
                 engine_factory: EngineFactory | None = None, runner: JobRunner | None = None,
                 remote: RemoteModels | None = None) -> None:
        self._post = post
        self.device = device
        self.device_text = ""
        self._engine_factory = engine_factory or (lambda: Engine(models_dir, remote=remote))
        self._engine: Engine | None = None  # made and used on the runner's thread only
        self._owns_runner = runner is None
        self.runner = runner or JobRunner("device-runner")
        self._listeners: Listeners[AnalysisEvent] = Listeners("analysis")
        self._active: Job | None = None
        self._series_id: int | None = None
        self._described = False
        self._closed = False
        self._lock = threading.Lock()

    # --- listeners ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on the owner's thread for every event; returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    def _emit(self, event: AnalysisEvent) -> None:
        self._listeners.emit(event)

    # --- API ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runner; its first job names the device and imports the pipeline (``DeviceDescribed``)."""
        if self._closed:
            raise RuntimeError("the analysis worker was shut down")
        if self._described:
            return
        self._described = True
        self.runner.submit("describe", self._describe, on_done=self._described_done, priority=PRIORITY_READER)

    def submit(self, request: AnalysisRequest, series_id: int, *, policy: InterpolationPolicy | None = None,
               label: str = "", keep: ResultSink | None = None) -> int:
        """Run ``request`` (superseding the earlier one) and return its generation number.

        ``policy`` is the interpolation rule (default: refuse over 10 %
        interpolated slices); ``label`` names the series in messages; ``keep``
        receives the result on the runner's thread (the analysis store).
        """
        self.start()
        generation = self.runner.generation(KIND) + 1
        job = Job(generation, request, series_id, policy=policy or InterpolationPolicy(hint=""), label=label,
                  keep=keep)
        self.cancel()
        self._active = job
        self._series_id = series_id
        ticket = self.runner.submit(KIND, lambda ctx: self._run(job, ctx), token=job.token,
                                    on_progress=self._progress_done, on_done=lambda d: self._keep_then_show(job, d))
        assert ticket.generation == generation
        logger.info("submitted analysis %d (%s, series %d)", generation, request.model_id, series_id)
        return generation

    @property
    def generation(self) -> int:
        """The generation number of the newest submitted request (0 before any)."""
        return self.runner.generation(KIND)

    @property
    def series_id(self) -> int | None:
        """The series of the newest submitted request."""
        return self._series_id

    def is_running(self) -> bool:
        """True while the runner's thread is alive."""
        return self.runner.is_running()

    @property
    def closed(self) -> bool:
        """True after ``shutdown``: no more events, no more submits."""
        return self._closed

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel; stop and join the runner if this service made it. True if nothing is left running."""
        if self._closed:
            return not (self._owns_runner and self.runner.is_running())
        self._closed = True
        self._drop_active()
        if not self._owns_runner:
            self.runner.cancel(KIND)
            return True
        return self.runner.shutdown(timeout_s)

    # --- on the runner's thread ----------------------------------------------------------------
    def _describe(self, _ctx: JobContext) -> str:
        text = describe_device(self.device)
        warm_up()  # before announcing the device: "ready" means the first run imports nothing
        return text

    def _run(self, job: Job, ctx: JobContext) -> Outcome:
        try:
            with self._lock:
                if self._engine is None:
                    self._engine = self._engine_factory()
                engine = self._engine
        except Exception as exc:  # the factory failed: report it, keep serving
            logger.exception("analysis %d: could not create the engine", job.generation)
            return Outcome("failed", job.generation,
                           message=f"The analysis engine could not start ({type(exc).__name__}: {exc}).")
        return run_job(engine, job, _RunnerProgress(ctx))

    def _keep_then_show(self, job: Job, done: JobDone[Outcome]) -> None:
        """Keep the result in the store, then hand it to the owner (``keep_result`` says why in this order)."""
        if done.value is not None:
            keep_result(job, done.value)
        self._outcome_done(job, done)

    def _described_done(self, done: JobDone[str]) -> None:
        text = done.value if done.status == "finished" and done.value else "device unknown"
        self._post(lambda: self._on_described(text))

    def _progress_done(self, report: JobProgress) -> None:
        self._post(lambda: self._on_progress(report))

    def _outcome_done(self, job: Job, done: JobDone[Outcome]) -> None:
        outcome = done.value if done.value is not None else Outcome("cancelled", job.generation)
        if done.status == "failed":  # run_job classifies everything; this is a last safety net
            outcome = Outcome("failed", job.generation, message=f"Unexpected error: {done.error}")
        self._post(lambda: self._on_outcome(job, outcome))

    # --- on the owner's thread --------------------------------------------------------------
    def _on_described(self, text: str) -> None:
        self.device_text = text
        logger.info("analysis device: %s", text)
        if not self._closed:
            self._emit(DeviceDescribed(text))

    def _on_progress(self, report: JobProgress) -> None:
        if not self._closed and self._active is not None and report.generation == self._active.generation:
            self._emit(AnalysisProgress(report.generation, report.fraction, report.stage))

    def _on_outcome(self, job: Job, outcome: Outcome) -> None:
        if self._closed or self._active is None or job.generation != self._active.generation:
            logger.debug("dropped outcome of superseded analysis %d", job.generation)
            return
        self._active = None
        if outcome.kind == "finished" and outcome.result is not None:
            self._emit(AnalysisFinished(job.generation, job.series_id, outcome.result))
        elif outcome.kind == "failed":
            self._emit(AnalysisFailed(job.generation, job.series_id, outcome.message))
        else:
            self._emit(AnalysisCancelled(job.generation, job.series_id))
