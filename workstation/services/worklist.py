"""The background worklist: studies analysed one by one, in arrival order, when the reader is not using the device.

Studies reach the worklist two ways: the window's storage listener pushes each
arriving study (when ``worklist.analyze_incoming`` is on), and the reader queues
one from the study browser ("Analyse in background"). Each study is resolved
to one series when it is queued (``services.studies.resolve_for_analysis``:
the image volume of a modality the model takes with most slices, the series
the reading session opens for a CT study), or the reader names the series.

The rules, in one place:

* **Arrival order, one at a time.** The worklist feeds the runner one job at a
  time and keeps its own queue, so the order is the worklist's and removing a
  queued study is just dropping it.
* **The reader first.** Local models run on the window's one device runner at
  ``PRIORITY_BACKGROUND``, submitted ``preemptible``: a reader's analysis or
  report draft queued while nothing runs goes first by priority, and one
  submitted while a background analysis runs *cancels* it (the runner's
  pre-emption). The cancelled study goes back to the head of the queue
  ("queued" again) and starts over once the reader's jobs are done. Letting it
  finish was the alternative; a real CT takes minutes, which is too long to
  keep a reader waiting for a study nobody has opened yet.
* **Remote models** (``remote:NODE/MODEL``) need no local device: they run on the
  worklist's own runner, and a reader's local work never waits for them.
* **Results go to the analysis store**, where the reading session looks a series
  up when it is opened (``analysis_store.find_for_series``) and the browser reads
  its "Done" from: the analysis is waiting when the reader opens the study. A
  series the store already holds a current analysis of (by the reader, the command
  line, ``listen --analyze-into``) is marked done without running the model again.
* **Status** per study and series (queued, running, done, failed with the
  user's sentence, removed) goes to listeners as ``WorkStatusChanged`` events,
  on the owner's thread through ``post`` (``services.dispatch``).

Every public method is called on the owner's thread. Nothing here imports Qt or
torch, nor logs patient data (index ids and model ids only).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from inference.errors import NotAVolumeError, WorkstationError
from workstation.listeners import Listeners
from workstation.services.dispatch import Post
from workstation.services.runner import PRIORITY_BACKGROUND, JobContext, JobDone, JobRunner, Ticket
from workstation.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "builtin.ct"
KIND = "worklist"
ALREADY_STORED = "already in the analysis store"
INTERPOLATED_HINT = "Open the series and choose 'Analyse anyway' to analyse it regardless."
WorkStatus = Literal["queued", "running", "done", "failed", "removed"]
Origin = Literal["pacs", "user"]
Listener = Callable[["WorkStatusChanged"], None]


@dataclass(frozen=True)
class WorklistConfig:
    """The ``worklist`` settings: whether pushed studies are queued, and the model the worklist runs."""

    analyze_incoming: bool = False
    model_id: str = DEFAULT_MODEL

    @classmethod
    def from_settings(cls, settings: Settings) -> WorklistConfig:
        """Parse ``settings.worklist``; a bad value is logged and its default used."""
        raw = settings.worklist if isinstance(settings.worklist, dict) else {}
        analyze = raw.get("analyze_incoming", False)
        if not isinstance(analyze, bool):
            logger.warning("worklist.analyze_incoming must be true or false, not %.40r; off", analyze)
            analyze = False
        model = raw.get("model", DEFAULT_MODEL)
        if not isinstance(model, str) or not model.strip():
            logger.warning("worklist.model must be a model id, not %.40r; using %s", model, DEFAULT_MODEL)
            model = DEFAULT_MODEL
        return cls(analyze, model.strip())


@dataclass(frozen=True)
class WorkItem:
    """One study on the worklist as it stands: the series picked, the model, its status and why it failed."""

    study_id: int
    series_id: int | None  # None when no series of the study could be picked (status "failed")
    model_id: str
    origin: Origin
    status: WorkStatus
    reason: str = ""  # the user's sentence for a failure; "already in the analysis store" for a done one
    label: str = ""  # "series 3 (CHEST)": index id and description, never patient data


@dataclass(frozen=True)
class WorkStatusChanged:
    """A study's worklist status changed (the event the browser draws)."""

    item: WorkItem


@dataclass
class _Running:
    item: WorkItem
    ticket: Ticket
    removing: bool = False  # the reader removed it: its cancel is final, not a pre-emption


class Worklist:
    """Queues studies and analyses them in the background; see the module docstring.

    ``device_runner`` is the window's one device owner (made and owned here
    when not given); ``model_id`` overrides the settings' worklist model.
    """

    def __init__(self, settings: Settings, post: Post, *, device_runner: JobRunner | None = None,
                 model_id: str | None = None) -> None:
        self.settings = settings
        self.config = WorklistConfig.from_settings(settings)
        self.model_id = model_id or self.config.model_id
        self._post = post
        self._owns_device = device_runner is None
        self.device_runner = device_runner or JobRunner("device-runner")
        self._remote_runner: JobRunner | None = None
        self._queue: deque[WorkItem] = deque()
        self._running: _Running | None = None
        self._items: dict[int, WorkItem] = {}  # study id -> its latest state, in the order first queued
        self._listeners: Listeners[WorkStatusChanged] = Listeners("worklist")
        self._closed = False

    # --- listeners and state ----------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on the owner's thread for every status change; returns the unsubscribe."""
        return self._listeners.subscribe(listener)

    def _set(self, item: WorkItem) -> None:
        if item.status == "removed":
            self._items.pop(item.study_id, None)
        else:
            self._items[item.study_id] = item
        logger.info("worklist: study %d series %s %s%s", item.study_id, item.series_id, item.status,
                    f" ({item.reason})" if item.reason else "")
        self._listeners.emit(WorkStatusChanged(item))

    def items(self) -> list[WorkItem]:
        """Every study on the worklist (queued, running, done, failed), in the order first queued."""
        return list(self._items.values())

    def item(self, study_id: int) -> WorkItem | None:
        """The worklist's state of a study (None if it is not on the worklist)."""
        return self._items.get(study_id)

    def pending(self) -> int:
        """How many studies are queued or running."""
        return len(self._queue) + (self._running is not None)

    @property
    def analyze_incoming(self) -> bool:
        """Whether the storage listener's arrivals are queued (``worklist.analyze_incoming``)."""
        return self.config.analyze_incoming

    # --- queueing ------------------------------------------------------------------------------
    def enqueue(self, study_id: int, *, series_id: int | None = None, origin: Origin = "user") -> WorkItem:
        """Queue a study (its best series, or ``series_id``); returns its item, "failed" if no series fits.

        A study already queued or running is not queued twice. Reads the index
        (a few rows and the picked series' headers) on the calling thread.
        """
        if self._closed:
            raise RuntimeError("the worklist was shut down")
        existing = self._items.get(study_id)
        if existing is not None and existing.status in ("queued", "running"):
            return existing
        try:
            series_id, label = self._pick(study_id, series_id)
        except (WorkstationError, OSError, sqlite3.Error) as exc:
            failed = WorkItem(study_id, None, self.model_id, origin, "failed", reason=str(exc))
            self._set(failed)
            return failed
        item = WorkItem(study_id, series_id, self.model_id, origin, "queued", label=label)
        self._queue.append(item)
        self._set(item)
        self._pump()
        return item

    def enqueue_arrival(self, study_ids: Iterable[int]) -> list[WorkItem]:
        """Queue the studies a PACS just pushed, in the order they arrived."""
        return [self.enqueue(sid, origin="pacs") for sid in study_ids]

    def remove(self, study_id: int) -> bool:
        """Take a study off the worklist (a running analysis is cancelled); False if it is not on it."""
        item = self._items.get(study_id)
        if item is None:
            return False
        running = self._running
        if running is not None and running.item.study_id == study_id:
            running.removing = True
            running.ticket.cancel()  # "removed" once the runner answers: nothing is kept after this
            return True
        self._queue = deque(i for i in self._queue if i.study_id != study_id)
        self._set(replace(item, status="removed", reason=""))
        return True

    def _pick(self, study_id: int, series_id: int | None) -> tuple[int, str]:
        """The series to analyse (id and label): the named one, else the study's best for the model."""
        from workstation.index import StudyIndex
        from workstation.services.analysis import make_engine
        from workstation.services.analysis_record import series_identity
        from workstation.services.studies import resolve_for_analysis

        with StudyIndex(self.settings.db_path) as index:
            rows = index.series_of_study(study_id)
            if series_id is None:
                modalities = tuple(make_engine(self.settings).get(self.model_id).modalities)
                source = resolve_for_analysis(f"study:{study_id}", index, modalities)
                key = series_identity(source)["series_key"]
                row = next((r for r in rows if r.series_key == key), None)
            else:
                row = next((r for r in rows if r.id == series_id), None)
        if row is None:
            raise NotAVolumeError(f"study {study_id}: no such series in the study index")
        return row.id, f"series {row.id} ({row.description or row.modality})"

    # --- running --------------------------------------------------------------------------------
    def _runner_for(self, model_id: str) -> tuple[JobRunner, bool]:
        """The runner a model runs on, and whether its jobs give way to the reader (local models only)."""
        from inference.remote import is_remote

        if not is_remote(model_id):
            return self.device_runner, True
        if self._remote_runner is None:
            self._remote_runner = JobRunner("worklist-remote-runner")
        return self._remote_runner, False

    def _pump(self) -> None:
        """Start the next queued study if nothing of the worklist's is running."""
        if self._closed or self._running is not None or not self._queue:
            return
        item = self._queue.popleft()
        runner, preemptible = self._runner_for(item.model_id)
        ticket = runner.submit(KIND, lambda ctx: self._analyse(item, ctx), supersede=False,
                               priority=PRIORITY_BACKGROUND, preemptible=preemptible,
                               on_done=lambda done: self._post(lambda: self._answered(item, done)))
        self._running = _Running(item, ticket)

    def _analyse(self, item: WorkItem, ctx: JobContext) -> Path | None:
        """On the runner's thread: load the series, run the model, keep the result in the store (its folder).

        None when the store already held a current analysis of the series by this model.
        """
        from workstation.index import StudyIndex
        from workstation.services.analysis import analyze_source, make_engine
        from workstation.services.analysis_record import series_identity
        from workstation.services.analysis_store import AnalysisStore
        from workstation.services.interpolation import InterpolationPolicy
        from workstation.services.studies import SeriesSource

        self._post(lambda: self._started(item, ctx.generation))
        assert item.series_id is not None
        with StudyIndex(self.settings.db_path) as index:
            headers = index.series_headers(item.series_id)
        if not headers:
            raise NotAVolumeError(f"{item.label or f'series {item.series_id}'} is no longer in the study index")
        source = SeriesSource(item.label, headers)
        engine = make_engine(self.settings)
        model = engine.get(item.model_id)
        store = AnalysisStore.for_settings(self.settings)
        identity = series_identity(source)
        if any(r.matches(identity, {model.id: model.version}) for r in store.records(identity["series_key"])):
            return None
        result = analyze_source(source, engine, model_id=item.model_id, device=self.settings.device,
                                progress=ctx.progress, cancel=ctx.token,
                                policy=InterpolationPolicy(self.settings.max_interpolated_share,
                                                           hint=INTERPOLATED_HINT))
        ctx.token.raise_if_cancelled()  # pre-empted or removed while finishing: keep nothing, run again later
        return store.save(source, result)

    # --- answers, on the owner's thread --------------------------------------------------------------
    def _current(self, item: WorkItem, generation: int | None = None) -> _Running | None:
        running = self._running
        if self._closed or running is None or running.item is not item:
            return None
        if generation is not None and running.ticket.generation != generation:
            return None
        return running

    def _started(self, item: WorkItem, generation: int) -> None:
        running = self._current(item, generation)
        if running is not None and not running.removing:
            self._set(replace(item, status="running"))

    def _answered(self, item: WorkItem, done: JobDone[Any]) -> None:
        running = self._current(item, done.generation)
        if running is None:
            return
        self._running = None
        if done.status == "finished":
            self._set(replace(item, status="done", reason="" if done.value is not None else ALREADY_STORED))
        elif done.status == "failed":
            from workstation.services.jobs import failure_message

            error = done.error or RuntimeError("unknown error")
            if not isinstance(error, (WorkstationError, OSError, MemoryError)):
                logger.error("worklist: unexpected error analysing study %d", item.study_id, exc_info=error)
            self._set(replace(item, status="failed", reason=failure_message(error, item.model_id)))
        elif running.removing:
            self._set(replace(item, status="removed"))
        else:  # pre-empted by the reader: first in line again, after the reader's work
            self._queue.appendleft(item)
            self._set(replace(item, status="queued"))
        self._pump()

    # --- quitting ----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True after ``shutdown``: no more events, nothing more queued."""
        return self._closed

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel the running analysis, drop the queue, stop the runners made here; True if they stopped."""
        if self._closed:
            return True
        self._closed = True
        self._queue.clear()
        if self._running is not None:
            self._running.ticket.cancel()
            self._running = None
        stopped = True
        for runner in (self._remote_runner, self.device_runner if self._owns_device else None):
            if runner is not None:
                stopped = runner.shutdown(timeout_s) and stopped
        return stopped
