"""Report drafting on the device runner: a language model may take a minute, so drafting never runs on the GUI thread.

Threading design (the same pattern as ``workstation.qt.worker.AnalysisWorker``):

* ``DraftWorker`` lives on the GUI thread and submits ``DraftJob``s (kind
  ``"draft"``) to a ``workstation.services.runner.JobRunner``: the window's
  device runner, shared with the analyses, so a draft and an analysis never
  hold the GPU at the same time. A reader's analysis queued beside a draft
  runs first (``PRIORITY_DRAFT``). Without a runner (a panel on its own, the
  tests) the worker makes and owns one.
* The drafter is made on the runner's thread, so torch and transformers are
  imported there and only there (the template drafter needs neither). A loaded
  language model is kept for the next draft and released on that thread when
  the worker shuts down.
* ``submit`` supersedes the previous draft (the runner cancels its token; one
  still queued never runs) and returns the new generation number.
* Streamed text is joined on the runner's thread and sent at most every
  ``stream_interval_ms`` (20 a second by default), the first piece one interval
  after drafting began, the rest when the draft ends, so a fast model cannot
  flood the GUI's event queue, and a draft done within the interval (the
  template) sends nothing the GUI would paint while it is being written or
  checked: its document comes whole. Text, status and outcome reach the GUI thread through
  ``workstation.qt.bridge.GuiPoster``, tagged with their generation; anything
  that is not the current generation is dropped there.
* What a job does is ``workstation.services.drafting.draft_document``, the one
  drafting pipeline (draft, clean, check, document) that ``workstation report``
  and the self-test run too: this module only decides where it runs.
* A job waits, before it drafts, until the GUI thread is quiet
  (``workstation.qt.frame_steps.when_quiet``, at most ``QUIET_WAIT_S``): the
  template draft is ~20 ms of pure Python, and run while the GUI draws the
  analysis that prompted it, it held the GIL the drawing needed (a 20-30 ms
  frame, measured by benchmarks/bench_gui_stall.py).
* ``cancel`` sets the job's ``CancelToken``: the language model stops before its
  next token (a ``StoppingCriteria``), the template between sections.
* ``shutdown`` (on quit) cancels, releases the language model on the runner's
  thread and, if the worker owns its runner, stops and joins it: the only wait.

Nothing here logs report text or notes (patient data).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

from inference.cancel import CancelledError, CancelToken
from inference.drafting import ReportInputs
from workstation.qt.bridge import GuiPoster
from workstation.qt.frame_steps import when_quiet
from workstation.services import drafting
from workstation.services.failures import user_message
from workstation.services.runner import PRIORITY_DRAFT, PRIORITY_READER, CurrentJob, JobContext, JobDone, JobRunner

logger = logging.getLogger(__name__)

STREAM_INTERVAL_MS = 50  # at most 20 text signals a second
QUIET_WAIT_S = 0.5  # the longest a draft waits for the GUI thread to finish drawing
KIND = "draft"
RELEASE_KIND = "draft-release"


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
    """Joins streamed text and passes it on at most every ``interval_s`` (runs on the runner's thread)."""

    def __init__(self, emit: Callable[[str], None], interval_s: float) -> None:
        self._emit = emit
        self._interval = interval_s
        self._pending: list[str] = []
        self._last = time.monotonic()  # the first piece waits an interval too: a quick draft sends none
        self._sent = False

    def restart(self) -> None:
        """Drafting begins now (after a model was loaded): the first piece waits an interval from here."""
        self._last = time.monotonic()

    def quick(self) -> bool:
        """True while nothing was sent and less than an interval has passed since drafting began."""
        return not self._sent and time.monotonic() - self._last < self._interval

    def put(self, text: str) -> None:
        self._pending.append(text)
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self.flush()

    def flush(self) -> None:
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._sent = True
            self._emit(text)


class _Drafting:
    """Runs drafting jobs; the drafter (and any language model) is made, used and released on the runner's thread."""

    def __init__(self, post: Callable[[Callable[[], None]], None], chunk: Callable[[int, str], None],
                 status: Callable[[int, str], None], interval_s: float,
                 quiet: Callable[[Callable[[], object], int], None] = when_quiet) -> None:
        self._post = post
        self._quiet = quiet
        self._chunk = chunk
        self._status = status
        self._interval = interval_s
        self._drafter: Any = None
        self._drafter_key: tuple[Path | None, str, int | None] | None = None

    def _emit_chunk(self, gen: int, text: str) -> None:
        self._post(lambda: self._chunk(gen, text))

    def _emit_status(self, gen: int, text: str) -> None:
        self._post(lambda: self._status(gen, text))

    def _drafter_for(self, job: DraftJob) -> Any:
        from inference.drafting import make_drafter

        key = (job.llm_dir, job.device, job.max_new_tokens)
        if self._drafter is None or key != self._drafter_key:
            self.release()
            self._drafter = make_drafter(job.llm_dir, job.device, job.max_new_tokens)
            self._drafter_key = key
        return self._drafter

    def _await_quiet(self, token: CancelToken) -> None:
        """Wait (on the runner's thread) until the GUI thread has drawn what it is drawing, or a cancel."""
        settled = threading.Event()
        self._post(lambda: self._quiet(settled.set, int(QUIET_WAIT_S * 1000)))
        deadline = time.monotonic() + QUIET_WAIT_S + 0.1  # no event loop to answer (a test): go on all the same
        while not settled.wait(0.01) and not token.cancelled and time.monotonic() < deadline:
            pass

    def release(self) -> None:
        """Unload the language model, if one is loaded (on the runner's thread)."""
        drafter, self._drafter, self._drafter_key = self._drafter, None, None
        if drafter is not None and getattr(drafter, "loaded", False):
            try:
                drafter.unload()
            except Exception:  # releasing memory must never break shutdown
                logger.exception("could not release the language model")

    def run(self, job: DraftJob, _ctx: JobContext | None = None) -> DraftOutcome:
        """Draft ``job`` on the calling (runner's) thread; every error becomes an outcome."""
        gen = job.generation
        self._emit_status(gen, "Drafting the report…")  # painted during the wait, not while the draft runs
        self._await_quiet(job.token)
        if job.token.cancelled:
            return DraftOutcome("cancelled", gen)
        throttle = _Throttle(lambda text: self._emit_chunk(gen, text), self._interval)

        def checking(_fraction: float, _stage: str) -> None:
            if throttle.quick():  # a template draft: its check takes a few ms more, nothing to show meanwhile
                return
            throttle.flush()
            self._emit_status(gen, "Checking the draft against the findings…")

        t0 = time.perf_counter()
        try:
            drafter = self._drafter_for(job)
            if job.llm_dir is not None and not getattr(drafter, "loaded", True):
                self._emit_status(gen, f"Loading the language model {job.llm_dir.name}…")
                drafter.load()
                self._emit_status(gen, "Drafting the report…")
            t0 = time.perf_counter()
            throttle.restart()
            drafted = drafting.draft_document(job.subject, drafter, on_token=throttle.put, cancel=job.token,
                                              progress=checking)
        except CancelledError:
            throttle.flush()
            logger.info("report draft %d cancelled after %.2f s", gen, time.perf_counter() - t0)
            return DraftOutcome("cancelled", gen)
        except Exception as exc:  # reported to the GUI, the runner keeps serving
            logger.exception("report draft %d failed", gen)
            self.release()
            return DraftOutcome("failed", gen, message=user_message(exc, "drafting the report"))
        logger.info("report draft %d ready (%s): %d sentences, %d flagged, %.2f s", gen,
                    drafted.draft.metadata.get("drafter", "?"), len(drafted.grounding.sentences),
                    len(drafted.flagged), time.perf_counter() - t0)
        return DraftOutcome("finished", gen, drafted)


class DraftWorker(QObject, CurrentJob):
    """The GUI's handle on drafting. Create it on the GUI thread; call ``shutdown`` on quit.

    ``runner`` is the device runner it shares with the analyses (the window's);
    without one the worker makes and owns its own.

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

    def __init__(self, *, stream_interval_ms: int = STREAM_INTERVAL_MS, runner: JobRunner | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._poster = GuiPoster(self)
        self._owns_runner = runner is None
        self.runner = runner or JobRunner("draft-runner")
        self._drafting = _Drafting(self._poster.post, self._on_chunk, self._on_status, stream_interval_ms / 1000.0)
        self._generation = 0
        self._active: DraftJob | None = None
        self._closed = False
        app = QCoreApplication.instance()
        if app is not None:  # a last safety net: never leave the thread running at exit
            app.aboutToQuit.connect(self.shutdown)

    def submit(self, subject: drafting.DraftSubject | ReportInputs, llm_dir: Path | None = None,
               device: str = "auto", max_new_tokens: int | None = None) -> int:
        """Queue a draft on the runner (superseding any earlier one) and return its generation number.

        ``subject`` is what to draft for (``ReportContext.subject``); bare inputs
        draft a document of no study (tests, benchmarks).
        """
        if isinstance(subject, ReportInputs):
            subject = drafting.DraftSubject(subject)
        if self._closed:
            raise RuntimeError("the report drafting worker was shut down")
        self.cancel()
        generation = self.runner.generation(KIND) + 1
        job = DraftJob(generation, subject, llm_dir, device, max_new_tokens, CancelToken())
        self._active = job
        self._generation = generation
        work = self._drafting.run
        ticket = self.runner.submit(KIND, lambda ctx: work(job, ctx), token=job.token,
                                    on_done=lambda done: self._done(job, done), priority=PRIORITY_DRAFT)
        assert ticket.generation == generation
        logger.info("submitted report draft %d (%s)", generation, "language model" if llm_dir else "template")
        return generation

    def is_running(self) -> bool:
        """True while the runner's thread (the drafting thread) is alive."""
        return self.runner.is_running()

    @property
    def generation(self) -> int:
        """The newest generation number (0 before any submit)."""
        return self._generation

    @Slot()
    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel, release the language model; stop and join an own runner (the only wait). True if it stopped."""
        if self._closed:
            return not (self._owns_runner and self.runner.is_running())
        self._closed = True
        self._drop_active()
        app = QCoreApplication.instance()
        if app is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                app.aboutToQuit.disconnect(self.shutdown)
        self._release()
        if not self._owns_runner:
            return True
        stopped = self.runner.shutdown(timeout_ms / 1000.0)
        if not stopped:
            logger.warning("the report drafting thread did not stop within %d ms", timeout_ms)
        return stopped

    def _release(self) -> None:
        """Release the language model on the runner's thread, after the (cancelled) draft has stopped.

        The release is the ``then`` of a job: the runner calls it on its thread
        whether the job runs or is skipped because the runner shuts down.
        """
        release = self._drafting.release
        if not self.runner.is_running():  # never started, or already stopped: no thread holds the drafter
            release()
            return
        try:
            self.runner.submit(RELEASE_KIND, lambda _ctx: None, then=lambda _done: release(),
                               priority=PRIORITY_READER, supersede=False)
        except RuntimeError:  # the runner is shutting down: the model goes with the drafter
            logger.debug("the runner was shut down before the language model could be released")

    # --- on the runner's thread -------------------------------------------------------------
    def _done(self, job: DraftJob, done: JobDone[DraftOutcome]) -> None:
        if done.status == "finished" and done.value is not None:
            outcome = done.value
        elif done.status == "failed":  # _Drafting.run classifies everything: a last safety net
            error = done.error if done.error is not None else RuntimeError("unknown error")
            outcome = DraftOutcome("failed", job.generation, message=user_message(error, "drafting the report"))
        else:
            outcome = DraftOutcome("cancelled", job.generation)
        self._poster.post(lambda: self._on_outcome(outcome))

    # --- on the GUI thread ------------------------------------------------------------------
    def _current(self, generation: int) -> bool:
        return not self._closed and self._active is not None and self._active.generation == generation

    def _on_chunk(self, generation: int, text: str) -> None:
        if self._current(generation) and not self._active.token.cancelled:  # type: ignore[union-attr]
            self.chunk.emit(generation, text)

    def _on_status(self, generation: int, text: str) -> None:
        if self._current(generation):
            self.status.emit(generation, text)

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
