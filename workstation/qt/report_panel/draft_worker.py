"""The report drafting thread: a language model may take a minute, so drafting never runs on the GUI thread.

Threading design (the same pattern as ``workstation.qt.worker.AnalysisWorker``):

* ``DraftWorker`` lives on the GUI thread and owns one ``_DraftThread`` (a
  ``QThread`` without an event loop) that takes ``DraftJob``s from a queue.
  The drafter is made on that thread, so torch and transformers are imported
  there and only there (the template drafter needs neither). A loaded
  language model is kept for the next draft and released when the thread ends.
* ``submit`` cancels the previous job's token, queues an immutable job and
  returns its generation number; jobs superseded while waiting are skipped.
* Streamed text is joined on the drafting thread and sent at most every
  ``stream_interval_ms`` (20 signals a second by default), the first piece at
  once, the rest when the draft ends, so a fast model cannot flood the GUI's
  event queue. Every signal carries its generation; the GUI-side slots drop
  anything that is not the current generation.
* What a job does is ``workstation.services.drafting.draft_document``, the one
  drafting pipeline (draft, clean, check, document) that ``workstation report``
  and the self-test run too: this module only decides where it runs.
* ``cancel`` sets the job's ``CancelToken``: the language model stops before its
  next token (a ``StoppingCriteria``), the template between sections.
* ``shutdown`` (on quit) cancels, stops and joins the thread: the only wait.

Nothing here logs report text or notes (patient data).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from inference.cancel import CancelledError, CancelToken
from inference.drafting import ReportInputs
from workstation.services import drafting
from workstation.services.failures import user_message
from workstation.services.jobs import supersede

logger = logging.getLogger(__name__)

STREAM_INTERVAL_MS = 50  # at most 20 text signals a second


@dataclass(frozen=True)
class DraftJob:
    """One immutable drafting request: what to draft for, the model folder (None: template) and its device."""

    generation: int
    subject: drafting.DraftSubject
    llm_dir: Path | None
    device: str
    max_new_tokens: int | None
    token: CancelToken


@dataclass(frozen=True)
class DraftOutcome:
    """How a job ended: the pipeline's outcome (draft, check, document), an error message, or a cancel."""

    kind: Literal["finished", "failed", "cancelled"]
    generation: int
    drafted: drafting.DraftOutcome | None = None
    message: str = ""


class _Throttle:
    """Joins streamed text and passes it on at most every ``interval_s`` (runs on the drafting thread)."""

    def __init__(self, emit: Callable[[str], None], interval_s: float) -> None:
        self._emit = emit
        self._interval = interval_s
        self._pending: list[str] = []
        self._last = float("-inf")

    def put(self, text: str) -> None:
        self._pending.append(text)
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self.flush()

    def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._emit(text)


class _DraftThread(QThread):
    """Runs drafting jobs one at a time; the drafter (and any language model) lives only here."""

    outcome = Signal(object)
    chunk = Signal(int, str)
    status = Signal(int, str)

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.setObjectName("report-draft-worker")
        self.jobs: queue.SimpleQueue[DraftJob | None] = queue.SimpleQueue()
        self._interval = interval_s
        self._drafter: Any = None
        self._drafter_key: tuple[Path | None, str, int | None] | None = None

    def _next_job(self) -> DraftJob | None:
        job = self.jobs.get()
        while job is not None:
            try:
                newer = self.jobs.get_nowait()
            except queue.Empty:
                break
            if newer is None:
                return None
            job = newer
        return job

    def run(self) -> None:
        """Serve jobs until told to stop, then release the language model."""
        try:
            while (job := self._next_job()) is not None:
                self.outcome.emit(self._run_job(job))
        finally:
            self._release()
            logger.debug("report drafting thread stopped")

    def _drafter_for(self, job: DraftJob) -> Any:
        from inference.drafting import make_drafter

        key = (job.llm_dir, job.device, job.max_new_tokens)
        if self._drafter is None or key != self._drafter_key:
            self._release()
            self._drafter = make_drafter(job.llm_dir, job.device, job.max_new_tokens)
            self._drafter_key = key
        return self._drafter

    def _release(self) -> None:
        drafter, self._drafter, self._drafter_key = self._drafter, None, None
        if drafter is not None and getattr(drafter, "loaded", False):
            try:
                drafter.unload()
            except Exception:  # releasing memory must never break shutdown
                logger.exception("could not release the language model")

    def _run_job(self, job: DraftJob) -> DraftOutcome:
        gen = job.generation
        if job.token.cancelled:
            return DraftOutcome("cancelled", gen)
        throttle = _Throttle(lambda text: self.chunk.emit(gen, text), self._interval)

        def checking(_fraction: float, _stage: str) -> None:
            throttle.flush()
            self.status.emit(gen, "Checking the draft against the findings…")

        t0 = time.perf_counter()
        try:
            drafter = self._drafter_for(job)
            if job.llm_dir is not None and not getattr(drafter, "loaded", True):
                self.status.emit(gen, f"Loading the language model {job.llm_dir.name}…")
                drafter.load()
            self.status.emit(gen, "Drafting the report…")
            t0 = time.perf_counter()
            drafted = drafting.draft_document(job.subject, drafter, on_token=throttle.put, cancel=job.token,
                                              progress=checking)
        except CancelledError:
            throttle.flush()
            logger.info("report draft %d cancelled after %.2f s", gen, time.perf_counter() - t0)
            return DraftOutcome("cancelled", gen)
        except Exception as exc:  # reported to the GUI, the thread keeps serving
            logger.exception("report draft %d failed", gen)
            self._release()
            return DraftOutcome("failed", gen, message=user_message(exc, "drafting the report"))
        logger.info("report draft %d ready (%s): %d sentences, %d flagged, %.2f s", gen,
                    drafted.draft.metadata.get("drafter", "?"), len(drafted.grounding.sentences),
                    len(drafted.flagged), time.perf_counter() - t0)
        return DraftOutcome("finished", gen, drafted)


class DraftWorker(QObject):
    """The GUI's handle on the drafting thread. Create it on the GUI thread; call ``shutdown`` on quit.

    Signals arrive on the GUI thread, only for the current generation:
    ``chunk(gen, text)`` (streamed text, throttled), ``status(gen, text)``
    (loading/drafting/checking), ``finished(gen, DraftOutcome)`` (the pipeline's:
    the cleaned draft, its grounding check and the document built from them),
    ``failed(gen, message)`` and ``cancelled(gen)``.
    """

    chunk = Signal(int, str)
    status = Signal(int, str)
    finished = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)

    def __init__(self, *, stream_interval_ms: int = STREAM_INTERVAL_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = _DraftThread(stream_interval_ms / 1000.0)
        queued = Qt.ConnectionType.QueuedConnection
        self._thread.outcome.connect(self._on_outcome, queued)
        self._thread.chunk.connect(self._on_chunk, queued)
        self._thread.status.connect(self._on_status, queued)
        self._generation = 0
        self._active: DraftJob | None = None
        self._closed = False
        app = QCoreApplication.instance()
        if app is not None:  # a last safety net: never leave the thread running at exit
            app.aboutToQuit.connect(self.shutdown)

    def submit(self, subject: drafting.DraftSubject | ReportInputs, llm_dir: Path | None = None,
               device: str = "auto", max_new_tokens: int | None = None) -> int:
        """Queue a draft (cancelling any earlier one) and return its generation number.

        ``subject`` is what to draft for (``ReportContext.subject``); bare inputs
        draft a document of no study (tests, benchmarks).
        """
        if isinstance(subject, ReportInputs):
            subject = drafting.DraftSubject(subject)
        if self._closed:
            raise RuntimeError("the report drafting worker was shut down")
        if not self._thread.isRunning():
            self._thread.start(QThread.Priority.LowPriority)
        self._generation = supersede(self._active, self._generation)
        self._active = DraftJob(self._generation, subject, llm_dir, device, max_new_tokens, CancelToken())
        self._thread.jobs.put(self._active)
        logger.info("submitted report draft %d (%s)", self._generation, "language model" if llm_dir else "template")
        return self._generation

    def cancel(self) -> None:
        """Ask the current draft to stop; ``cancelled`` follows once it has."""
        if self._active is not None:
            self._active.token.cancel()

    def is_busy(self) -> bool:
        """True from ``submit`` until the current generation's outcome arrives."""
        return self._active is not None

    def is_running(self) -> bool:
        """True while the drafting thread is alive."""
        return self._thread.isRunning()

    @property
    def generation(self) -> int:
        """The newest generation number (0 before any submit)."""
        return self._generation

    @Slot()
    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel, stop the thread and join it (the only wait on the GUI thread). True if it stopped."""
        if self._closed:
            return not self._thread.isRunning()
        self._closed = True
        if self._active is not None:
            self._active.token.cancel()
            self._active = None
        app = QCoreApplication.instance()
        if app is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                app.aboutToQuit.disconnect(self.shutdown)
        if not self._thread.isRunning():
            return True
        self._thread.jobs.put(None)
        stopped = bool(self._thread.wait(timeout_ms))
        if not stopped:
            logger.warning("the report drafting thread did not stop within %d ms", timeout_ms)
        return stopped

    def _current(self, generation: int) -> bool:
        return not self._closed and self._active is not None and self._active.generation == generation

    @Slot(int, str)
    def _on_chunk(self, generation: int, text: str) -> None:
        if self._current(generation) and not self._active.token.cancelled:  # type: ignore[union-attr]
            self.chunk.emit(generation, text)

    @Slot(int, str)
    def _on_status(self, generation: int, text: str) -> None:
        if self._current(generation):
            self.status.emit(generation, text)

    @Slot(object)
    def _on_outcome(self, outcome: DraftOutcome) -> None:
        if not self._current(outcome.generation):
            logger.debug("dropped outcome of superseded report draft %d", outcome.generation)
            return
        self._active = None
        if outcome.kind == "finished":
            self.finished.emit(outcome.generation, outcome.drafted)
        elif outcome.kind == "failed":
            self.failed.emit(outcome.generation, outcome.message)
        else:
            self.cancelled.emit(outcome.generation)
