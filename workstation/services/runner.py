"""The one job runner: a worker thread that runs background work one job at a time. No Qt.

Every background task of the application (an analysis, a report draft, a
series load, a stored-analysis look-up) is a *job*: a callable that takes a
``JobContext`` (its generation number, its cancel token, a progress callback)
and returns a value. ``JobRunner.submit`` queues it and returns its ticket.

The rules, in one place instead of one copy per feature:

* **Newest request wins.** Jobs have a *kind* (``"analysis"``, ``"draft"``,
  ``"load"``...). Submitting a job cancels the token of the earlier job of the
  same kind; if that one had not started, it never runs (its ``on_done`` gets a
  ``"cancelled"`` outcome so nobody waits for it forever).
* **Generation numbers**, counted per kind from 1, travel with every report so
  a listener can drop what belongs to a superseded request.
* **Cancellation** is cooperative: the job checks ``ctx.token``.
* **Progress is coalesced**: at most one report every ``progress_interval_s``
  (20 a second by default) reaches ``on_progress``, the newest one; a report
  held back is delivered before the outcome, so the last stage is never lost.
* **One thread.** A runner owns exactly one thread, so the jobs on it never run
  at the same time: the device runner (analysis and drafting) is therefore the
  one owner of the GPU, and a draft waits for an analysis rather than competing
  with it for memory. Lower ``priority`` numbers run first (a reader's request
  before background work); equal priorities run in submission order.
* **Pre-emption.** A job submitted ``preemptible`` (the background worklist's)
  is cancelled while it runs as soon as a job of a lower priority number is
  submitted; its owner sees a ``cancelled`` outcome and may queue it again, so a
  reader never waits for background work to finish.

Callbacks (``on_progress``, ``on_done``, ``then``) are called on the runner's
thread. A consumer that has a GUI thread re-posts them there (see
``workstation.services.dispatch``); nothing here waits on the consumer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from inference.cancel import CancelledError, CancelToken

logger = logging.getLogger(__name__)

T = TypeVar("T")
DoneKind = Literal["finished", "failed", "cancelled"]
PROGRESS_INTERVAL_S = 0.05  # at most 20 progress reports a second
PRIORITY_READER = 0  # something the reader asked for and waits on
PRIORITY_DRAFT = 5  # a report draft: after a reader's analysis queued with it, before background work
PRIORITY_BACKGROUND = 10  # warm-up, prefetch: runs when nothing else is queued


@dataclass(frozen=True)
class JobProgress:
    """One (coalesced) progress report of a job."""

    kind: str
    generation: int
    fraction: float
    stage: str


@dataclass(frozen=True)
class JobDone(Generic[T]):
    """How a job ended: its value, the exception it raised, or a cancel (exactly one)."""

    kind: str
    generation: int
    status: DoneKind
    value: T | None = None
    error: BaseException | None = None


class JobContext:
    """What a running job gets: its generation, its cancel token and a (coalesced) progress callback."""

    def __init__(self, kind: str, generation: int, token: CancelToken,
                 on_progress: Callable[[JobProgress], object] | None, interval_s: float) -> None:
        self.kind = kind
        self.generation = generation
        self.token = token
        self._on_progress = on_progress
        self._interval = interval_s
        self._last_sent = float("-inf")
        self._held: JobProgress | None = None

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or superseded."""
        return self.token.cancelled

    def progress(self, fraction: float, stage: str) -> None:
        """Report progress (any number of times): sent at once if the interval has passed, else held."""
        if self._on_progress is None:
            return
        report = JobProgress(self.kind, self.generation, max(0.0, min(1.0, float(fraction))), stage)
        now = time.monotonic()
        if now - self._last_sent >= self._interval:
            self._last_sent = now
            self._held = None
            self._send(report)
        else:
            self._held = report

    def flush(self) -> None:
        """Send the report held back by the interval, if any (the runner calls this before the outcome)."""
        report, self._held = self._held, None
        if report is not None:
            self._send(report)

    def _send(self, report: JobProgress) -> None:
        assert self._on_progress is not None
        try:
            self._on_progress(report)
        except Exception:  # a broken listener must not fail the job
            logger.exception("%s %d: progress listener failed", self.kind, self.generation)


@dataclass
class Ticket:
    """A submitted job: its kind, generation and cancel token. ``cancel`` is safe from any thread."""

    kind: str
    generation: int
    token: CancelToken = field(compare=False)

    def cancel(self) -> None:
        """Ask the job to stop (it gets a ``cancelled`` outcome, or none at all if its work ignores the token)."""
        self.token.cancel()


@dataclass
class _Entry:
    ticket: Ticket
    work: Callable[[JobContext], Any]
    on_done: Callable[[JobDone[Any]], object] | None
    on_progress: Callable[[JobProgress], object] | None
    then: Callable[[JobDone[Any]], object] | None
    preemptible: bool = False


class CurrentJob:
    """Mixin for a job's owner that keeps its newest unanswered job (one with a ``token``) in ``_active``.

    The one home of "cancel the current job" and "is one still unanswered"
    (the analysis service and the report drafting worker both need them).
    """

    _active: Any = None

    def cancel(self) -> None:
        """Ask the current job to stop; its cancelled outcome follows once it has stopped."""
        if self._active is not None:
            self._active.token.cancel()

    def is_busy(self) -> bool:
        """True from ``submit`` until the current generation's outcome arrives."""
        return self._active is not None

    def _drop_active(self) -> None:
        """Cancel the current job and forget it: its outcome will be dropped (on shutdown)."""
        self.cancel()
        self._active = None


class JobRunner:
    """One worker thread running submitted jobs one at a time; see the module docstring for the rules."""

    def __init__(self, name: str = "job-runner", *, progress_interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.name = name
        self.progress_interval_s = progress_interval_s
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int, _Entry]] = []
        self._seq = itertools.count()
        self._generations: dict[str, int] = {}
        self._latest: dict[str, Ticket] = {}
        self._thread: threading.Thread | None = None
        self._running: tuple[int, _Entry] | None = None  # the priority and entry of the job on the thread
        self._closed = False

    # --- API (any thread) ---------------------------------------------------------------
    def start(self) -> None:
        """Start the thread (``submit`` starts it too). Raises ``RuntimeError`` after ``shutdown``."""
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the {self.name} was shut down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=False)
                self._thread.start()

    def submit(self, kind: str, work: Callable[[JobContext], T], *,
               on_done: Callable[[JobDone[T]], object] | None = None,
               on_progress: Callable[[JobProgress], object] | None = None,
               then: Callable[[JobDone[T]], object] | None = None,
               priority: int = PRIORITY_READER, token: CancelToken | None = None,
               supersede: bool = True, preemptible: bool = False) -> Ticket:
        """Queue ``work`` and return its ticket; the earlier job of ``kind`` is cancelled if ``supersede``.

        ``on_done`` gets the outcome; ``then`` runs after it, still on the runner's
        thread (e.g. writing a result to disk once the reader has it on screen).
        ``preemptible``: cancel this job, while it runs, when a more urgent one is submitted.
        """
        self.start()
        with self._cond:
            generation = self._generations.get(kind, 0) + 1
            self._generations[kind] = generation
            previous = self._latest.get(kind)
            if supersede and previous is not None:
                previous.cancel()
            ticket = Ticket(kind, generation, token or CancelToken())
            self._latest[kind] = ticket
            entry = _Entry(ticket, work, on_done, on_progress, then, preemptible)
            heapq.heappush(self._queue, (priority, next(self._seq), entry))
            running = self._running
            if running is not None and running[1].preemptible and priority < running[0]:
                logger.info("%s: %s %d pre-empted by %s", self.name, running[1].ticket.kind,
                            running[1].ticket.generation, kind)
                running[1].ticket.cancel()
            self._cond.notify()
        logger.debug("%s: queued %s %d", self.name, kind, generation)
        return ticket

    def generation(self, kind: str) -> int:
        """The newest generation submitted of ``kind`` (0 before any)."""
        with self._cond:
            return self._generations.get(kind, 0)

    def cancel(self, kind: str) -> None:
        """Cancel the newest job of ``kind`` (queued or running)."""
        with self._cond:
            latest = self._latest.get(kind)
        if latest is not None:
            latest.cancel()

    def is_running(self) -> bool:
        """True while the thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def is_closed(self) -> bool:
        """True after ``shutdown``."""
        return self._closed

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel every job, stop the thread and join it; True if it stopped within ``timeout_s``. Idempotent."""
        with self._cond:
            self._closed = True
            for ticket in self._latest.values():
                ticket.cancel()
            for _, _, entry in self._queue:
                entry.ticket.cancel()
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("%s did not stop within %.1f s", self.name, timeout_s)
            return False
        return True

    # --- the thread ---------------------------------------------------------------------
    def _next(self) -> _Entry | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                skipped, self._queue = self._queue, []
            else:
                priority, _, entry = heapq.heappop(self._queue)
                self._running = (priority, entry)
                return entry
        for _, _, entry in skipped:  # after shutdown: tell who waits, run nothing
            self._deliver(entry, JobDone(entry.ticket.kind, entry.ticket.generation, "cancelled"))
        return None

    def _serve(self) -> None:
        logger.debug("%s started", self.name)
        while (entry := self._next()) is not None:
            try:
                self._run(entry)
            finally:
                with self._cond:
                    self._running = None
        logger.debug("%s stopped", self.name)

    def _run(self, entry: _Entry) -> None:
        ticket = entry.ticket
        if ticket.token.cancelled:
            logger.debug("%s %d superseded before it started", ticket.kind, ticket.generation)
            self._deliver(entry, JobDone(ticket.kind, ticket.generation, "cancelled"))
            return
        ctx = JobContext(ticket.kind, ticket.generation, ticket.token, entry.on_progress, self.progress_interval_s)
        try:
            value = entry.work(ctx)
            done: JobDone[Any] = JobDone(ticket.kind, ticket.generation, "finished", value=value)
        except CancelledError:
            done = JobDone(ticket.kind, ticket.generation, "cancelled")
        except BaseException as exc:  # reported to the submitter; the thread keeps serving
            if not isinstance(exc, Exception):
                raise
            done = JobDone(ticket.kind, ticket.generation, "failed", error=exc)
        ctx.flush()
        self._deliver(entry, done)

    def _deliver(self, entry: _Entry, done: JobDone[Any]) -> None:
        for callback in (entry.on_done, entry.then):
            if callback is None:
                continue
            try:
                callback(done)
            except Exception:  # a broken listener must not kill the thread
                logger.exception("%s %d: outcome listener failed", done.kind, done.generation)
