"""The reading session without Qt: which series is open, its streaming load, its analysis, its report inputs.

``ReadingSession`` holds the state of reading a study that used to live in
QObjects: the open series, the fully loaded volume, the AI result per series,
and the AI status per series. It emits plain event objects (below) to its
listeners; the window binds them to its widgets (``workstation.qt.reading``),
a test or a script reads them directly (see ``tests/test_session.py``).

Threads: every method is called on the owner's thread. Background work runs
on job runners (``workstation.services.runner``): series loads and stored-
analysis look-ups on an I/O runner, analyses on the device runner (through
``AnalysisService``). Their answers come back through ``post`` (the Qt bridge,
or a ``CallQueue``), so state changes and events happen on the owner's thread
only; answers for a series that is no longer open are dropped or kept for it.

Analyses are shared with the command line through the analysis store: every
result is kept there, and a series opened with no result in memory is looked
up there once its volume is loaded. A stored analysis that still matches the
series and the model's version is shown as if just run; one that does not is
never shown, and the model runs only when asked (or for the demo's automatic run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from inference.errors import WorkstationError
from workstation.listeners import Listeners
from workstation.services.analysis_jobs import AnalysisCancelled, AnalysisFailed, AnalysisFinished, AnalysisService
from workstation.services.dispatch import Post
from workstation.services.remote_models import remote_models
from workstation.services.runner import JobContext, JobDone, JobRunner
from workstation.services.session_events import (
    AiStatusChanged,
    AnalysisLookedUp,
    AnalysisRefused,
    AnalysisStarted,
    CodeConfirmationNeeded,
    Message,
    OpenSeries,
    Problem,
    ResultShown,
    SeriesOpened,
    SeriesOpening,
    SlicesLoaded,
    VolumeReady,
)
from workstation.settings import Settings

logger = logging.getLogger(__name__)

Listener = Callable[[Any], None]


class ReadingSession:
    """Opens series, streams them in, runs AI on them and remembers the results. See the module docstring."""

    def __init__(self, settings: Settings, post: Post, *, analysis: AnalysisService | None = None,
                 io_runner: JobRunner | None = None,
                 prefer_model: Callable[[], str | None] = lambda: None) -> None:
        self.settings = settings
        self._post = post
        self.analysis = analysis or AnalysisService(post, models_dir=settings.models_path, device=settings.device,
                                                    remote=remote_models(settings))
        self.io = io_runner or JobRunner("io-runner")
        self._prefer_model = prefer_model
        self._listeners: Listeners[Any] = Listeners("session")
        self.current: OpenSeries | None = None
        self._volume: Any = None  # the fully loaded volume of the current series, None while streaming
        self._load_generation = 0
        self._runs: dict[int, int] = {}  # analysis generation -> series id
        self._results: dict[int, Any] = {}  # series id -> its latest AI result
        self._auto_model: str | None = None  # run on the series being opened once it has loaded (the demo)
        self.loading = False
        self.analysis.subscribe(self._on_analysis)

    # --- listeners ------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event (on the owner's thread); returns the unsubscribe function."""
        return self._listeners.subscribe(listener)

    def _emit(self, event: object) -> None:
        self._listeners.emit(event)

    def _message(self, text: str) -> None:
        self._emit(Message(text))

    def _status(self, series_id: int, status: str) -> None:
        self._emit(AiStatusChanged(series_id, status))

    # --- reading state ----------------------------------------------------------------------
    def result(self, series_id: int) -> Any:
        """The latest AI result of a series (None if it has none)."""
        return self._results.get(series_id)

    def volume(self) -> Any:
        """The fully loaded volume of the open series (None while it streams in)."""
        return self._volume

    def is_analysing(self, series_id: int) -> bool:
        """True while a run of this series is submitted and unanswered."""
        return series_id in self._runs.values()

    # --- opening ------------------------------------------------------------------------------
    def open_series(self, series_id: int) -> bool:
        """Start streaming a series in; False (and a ``Problem``) if the index does not know it."""
        from workstation.index import StudyIndex

        with StudyIndex(self.settings.db_path) as index:
            row = index.find_series(str(series_id))
            study = index.study(row.study_id) if row is not None else None
        if row is None or study is None:
            self._emit(Problem("Series not found", f"Series {series_id} is no longer in the study index."))
            return False
        self.current = OpenSeries(row.id, row.study_id, row.modality, row.description, study.patient.name,
                                  study.date)
        self._volume = None
        self._auto_model = None
        self.loading = True
        self._emit(SeriesOpening(self.current))
        self._message(f"Opening series {row.id} ({row.description or row.modality})…")
        self._start_load(row.id)
        return True

    def open_study(self, study_id: int, analyze: str | None = None) -> bool:
        """Open a study's main series (its largest image volume); ``analyze``: a model to run once it is loaded."""
        from workstation.index import StudyIndex

        with StudyIndex(self.settings.db_path) as index:
            rows = [r for r in index.series(study_id) if r.kind in ("volume", "multi_volume")]
        if not rows:
            self._emit(Problem("Nothing to show", f"Study {study_id} holds no image volume."))
            return False
        best = max(rows, key=lambda r: int(r.summary.get("instances") or 0))
        opened = self.open_series(best.id)
        self._auto_model = analyze if opened else None
        return opened

    def _start_load(self, series_id: int) -> None:
        from workstation.services.streaming import open_indexed

        db, nonuniform = self.settings.db_path, self.settings.nonuniform_spacing

        def work(ctx: JobContext) -> Any:
            load = open_indexed(db, series_id, nonuniform=nonuniform)
            ready = False

            def on_slices(start: int, stop: int) -> None:
                nonlocal ready
                if not ready and load.volume is not None:
                    ready = True
                    volume, loaded = load.volume, load.loaded
                    self._post(lambda: self._on_ready(ctx.generation, series_id, volume, loaded))
                self._post(lambda: self._on_slices(ctx.generation, series_id, start, stop))

            return load.run(on_slices, lambda: ctx.token.cancelled)

        ticket = self.io.submit("load", work, on_done=lambda d: self._post(lambda: self._on_loaded(d, series_id)))
        self._load_generation = ticket.generation

    def _current_load(self, generation: int, series_id: int) -> bool:
        return (generation == self._load_generation and self.current is not None
                and self.current.series_id == series_id)

    def _on_ready(self, generation: int, series_id: int, volume: Any, loaded: Any) -> None:
        if self._current_load(generation, series_id):
            self._emit(VolumeReady(series_id, volume, loaded))

    def _on_slices(self, generation: int, series_id: int, start: int, stop: int) -> None:
        if self._current_load(generation, series_id):
            self._emit(SlicesLoaded(series_id, start, stop))

    def _on_loaded(self, done: JobDone[Any], series_id: int) -> None:
        if not self._current_load(done.generation, series_id):
            return
        self.loading = False
        if done.status == "cancelled":
            return
        if done.status == "failed" or done.value is None:
            self._load_failed(series_id, done.error)
            return
        volume = done.value
        self._volume = volume
        notes = "; ".join(volume.notes)
        shape = "×".join(str(n) for n in volume.shape)
        self._message(f"Series {series_id}: {shape} voxels" + (f" ({notes})" if notes else ""))
        previous = self._results.get(series_id)
        if previous is not None:
            self._emit(ResultShown(series_id, previous))
        self._emit(SeriesOpened(series_id, volume))
        if previous is not None:
            self._auto_model = None
            self._emit(AnalysisLookedUp(series_id, True))
        else:
            self._look_up_stored(series_id, volume)

    def _load_failed(self, series_id: int, error: BaseException | None) -> None:
        from workstation.services.streaming import describe_failure

        label = f"series {series_id}"
        if self.current is not None:
            label = f"series {series_id} ({self.current.description or self.current.modality or 'no description'})"
        text = describe_failure(label, error or RuntimeError("unknown error"))
        logger.warning("%s", text)
        self.current = None
        self._message(f"Series {series_id} could not be opened")
        self._emit(Problem("Series could not be opened", text))

    # --- the analysis store -------------------------------------------------------------------
    def look_up_again(self, series_id: int) -> None:
        """An analysis of ``series_id`` was just stored by someone else (the background worklist).

        If that series is open, loaded and shows no result, it is looked up
        again, so the reader sees it without reopening the series.
        """
        if (self.current is not None and self.current.series_id == series_id and self._volume is not None
                and series_id not in self._results and not self.is_analysing(series_id)):
            self._look_up_stored(series_id, self._volume)

    def _look_up_stored(self, series_id: int, volume: Any) -> None:
        """Ask the analysis store for this series' analysis (the preferred model first), on the I/O runner."""
        settings, prefer = self.settings, self._prefer_model()

        def work(_ctx: JobContext) -> Any:
            from workstation.services.analysis_store import AnalysisStore, find_for_series

            try:
                return find_for_series(AnalysisStore.for_settings(settings), settings.db_path, series_id, volume,
                                       settings.models_path, prefer, remote_models(settings).nodes)
            except Exception:  # an unreadable store is no reason to lose the series: it can be analysed again
                logger.warning("series %d: the analysis store could not be read", series_id, exc_info=True)
                return None

        self.io.submit("lookup", work, supersede=False,
                       on_done=lambda d: self._post(lambda: self._stored_found(series_id, volume, d.value)))

    def _stored_found(self, series_id: int, volume: Any, result: Any) -> None:
        if self.current is None or self.current.series_id != series_id or self._volume is not volume:
            return  # another series (or another load of it) is open now
        running = self.is_analysing(series_id)
        if result is not None and series_id not in self._results:
            self._results[series_id] = result
            if not running:
                self._status(series_id, "done")
            prov = result.provenance
            self._message(f"Showing the stored analysis of series {series_id}: {prov.model_id} "
                          f"{prov.model_version}")
            self._emit(ResultShown(series_id, result))
        self._emit(AnalysisLookedUp(series_id, series_id in self._results))
        model, self._auto_model = self._auto_model, None
        if model is not None and series_id not in self._results and not running:
            self.run_ai(model)

    # --- AI ---------------------------------------------------------------------------------
    def run_ai(self, model_id: str, *, allow_interpolated: bool = False) -> int | None:
        """Send the open volume to the device runner (an immutable request); the generation number, or None.

        A volume with more than the settings' share of interpolated slices is
        refused (``AnalysisRefused``; the user may call again with
        ``allow_interpolated``); the runner applies the same rule.
        """
        from inference.contract import AnalysisRequest
        from workstation.services.interpolation import InterpolationPolicy, interpolation_problem

        if self.current is None or self._volume is None:
            self._message("Open a series and wait for it to load before running AI")
            return None
        if self._needs_code_confirmation(model_id):
            return None
        request = AnalysisRequest(self._volume, model_id, self.settings.device, {})
        series_id = self.current.series_id
        label = f"Series {series_id} ({self.current.description or self.current.modality})"
        policy = InterpolationPolicy(self.settings.max_interpolated_share, allow_interpolated, hint="")
        problem = interpolation_problem(self._volume, label, policy.max_share)
        if problem is not None and not allow_interpolated:
            text = problem.refusal()
            self._message(text)
            self._emit(AnalysisRefused(model_id, text))
            return None
        for gen, sid in list(self._runs.items()):  # the runner cancels the run this one supersedes
            self._status(sid, "none" if sid not in self._results else "done")
            del self._runs[gen]
        generation = self.analysis.submit(request, series_id, policy=policy, label=label,
                                          keep=self._store_sink(series_id, label))
        self._runs[generation] = series_id
        self._status(series_id, "running")
        self._emit(AnalysisStarted(series_id, generation, model_id))
        self._message(f"Running {model_id} on series {series_id}…")
        return generation

    def cancel_ai(self) -> None:
        """Ask the current run to stop."""
        self.analysis.cancel()

    def _store_sink(self, series_id: int, label: str) -> Any:
        """Where the runner keeps this run's result: the analysis store, shared with the command line."""
        from workstation.services.analysis_store import AnalysisStore, IndexedSeriesSink

        return IndexedSeriesSink(AnalysisStore.for_settings(self.settings), self.settings.db_path, series_id, label)

    def _needs_code_confirmation(self, model_id: str) -> bool:
        """True (and ``CodeConfirmationNeeded`` emitted) if the model's config runs code not yet trusted."""
        from workstation.services.models import code_review, confirmation_text

        try:
            review = code_review(model_id, self.settings.models_path)
        except WorkstationError:
            return False  # an unknown or broken model: the run reports why
        if review is None:
            return False
        self._message(f"{model_id} runs code from its configuration: confirm to run it")
        self._emit(CodeConfirmationNeeded(model_id, confirmation_text(model_id, review)))
        return True

    def trust_and_run(self, model_id: str) -> int | None:
        """The user confirmed the model's code: record the trust, then run it."""
        from workstation.services.models import trust_bundle

        try:
            trust_bundle(model_id, self.settings.models_path)
        except (WorkstationError, OSError) as exc:
            self._emit(Problem("The model could not be trusted", str(exc)))
            return None
        return self.run_ai(model_id)

    def _on_analysis(self, event: object) -> None:
        if isinstance(event, AnalysisFinished):
            series_id = self._runs.pop(event.generation, None)
            if series_id is None:
                return
            self._results[series_id] = event.result
            self._status(series_id, "done")
            prov = event.result.provenance
            self._message(f"AI draft ready for series {series_id}: {prov.model_id} on {prov.device}")
            if self.current is not None and self.current.series_id == series_id:
                self._emit(ResultShown(series_id, event.result))
        elif isinstance(event, AnalysisFailed):
            series_id = self._runs.pop(event.generation, None)
            if series_id is not None:
                self._status(series_id, "failed")
                self._message(f"AI failed on series {series_id}: {event.message}")
        elif isinstance(event, AnalysisCancelled):
            series_id = self._runs.pop(event.generation, None)
            if series_id is not None:
                self._status(series_id, "done" if series_id in self._results else "none")
                self._message("AI run cancelled")

    # --- the report ---------------------------------------------------------------------------
    def report_inputs(self, series_id: int) -> Any:
        """The drafter's inputs for a series with a result (notes and findings), or None without one."""
        from workstation.index import StudyIndex
        from workstation.services.reporting import report_inputs

        result = self._results.get(series_id)
        if result is None or self._volume is None or self.current is None:
            return None
        with StudyIndex(self.settings.db_path) as index:
            return report_inputs(index, self.current.study_id, result, self._volume)

    # --- quitting -------------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Cancel and join the loads and the analysis runner; True if every thread stopped."""
        self.loading = False
        self._load_generation = -1
        analysis = self.analysis.shutdown(timeout_s)
        io = self.io.shutdown(timeout_s)
        return analysis and io
