"""The reading session: which series is open, its streaming load, its AI run, and what they feed.

Ties the study browser, the series loader, the MPR viewer, the analysis worker
and the side panels together so that the main window only lays them out. All of
it runs on the GUI thread and never waits: loads and analyses report back through
queued signals, and results for a series that is no longer open are kept for
when it is reopened, never drawn over another series.

Analyses are shared with the command line through the analysis store
(``workstation.services.analysis_store``): every result of the worker is kept
there, and a series opened without a result in memory is looked up there (on a
pool thread, once its volume is loaded). A stored analysis that still matches the
series and the model's version is shown as if just run, its report context
included; one that does not is never shown, and the model runs only when asked
(or for the demo's automatic run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from inference.errors import WorkstationError
from workstation.qt.browser import StudyBrowser
from workstation.qt.panels import AnalysisBar, FindingsPanel, FindingTarget, NotesPanel
from workstation.qt.series_loader import SeriesLoader
from workstation.qt.viewer import MprViewer, ViewerInfo
from workstation.qt.worker import AnalysisWorker
from workstation.settings import Settings

logger = logging.getLogger(__name__)

OVERLAY_OPACITY = 0.35
HIDDEN_BY_DEFAULT = ("body",)  # a filled body label would hide the anatomy it contains


@dataclass(frozen=True)
class OpenSeries:
    """The series on screen and what the viewer and the AI need to know about it."""

    series_id: int
    study_id: int
    modality: str
    description: str
    info: ViewerInfo


class _LookupSignals(QObject):
    found = Signal(int, object, object)  # series id, the volume looked up for, the stored result or None


class _StoredLookup(QRunnable):
    """Find the stored analysis of a loaded series (index, records, label map) off the GUI thread."""

    def __init__(self, settings: Settings, series_id: int, volume: Any, prefer: str | None) -> None:
        super().__init__()
        self.settings, self.series_id, self.volume, self.prefer = settings, series_id, volume, prefer
        self.signals = _LookupSignals()

    def run(self) -> None:
        from workstation.services.analysis_store import AnalysisStore, find_for_series

        result: Any = None
        try:
            result = find_for_series(AnalysisStore.for_settings(self.settings), self.settings.db_path,
                                     self.series_id, self.volume, self.settings.models_path, self.prefer)
        except Exception:  # an unreadable store is no reason to lose the series: it can be analysed again
            logger.warning("series %d: the analysis store could not be read", self.series_id, exc_info=True)
        self.signals.found.emit(self.series_id, self.volume, result)


class ReadingSession(QObject):
    """Opens series, streams them into the viewer, runs AI on them and shows the results."""

    message = Signal(str)  # a line for the status bar
    problem = Signal(str, str)  # title, text: something the user must see
    seriesOpened = Signal(int)  # noqa: N815 - Qt signal naming; the series is fully loaded
    resultShown = Signal(int)  # noqa: N815 - series id whose AI result is now on screen
    analysisRefused = Signal(str, str)  # noqa: N815 - model id, why: the AI bar offers "Analyse anyway"
    codeConfirmationNeeded = Signal(str, str)  # noqa: N815 - model id, question: its config runs untrusted code
    analysisLookedUp = Signal(int, bool)  # noqa: N815 - series id, whether a stored analysis is now shown

    def __init__(self, settings: Settings, browser: StudyBrowser, viewer: MprViewer, findings: FindingsPanel,
                 notes: NotesPanel, bar: AnalysisBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.browser, self.viewer, self.findings, self.notes, self.bar = browser, viewer, findings, notes, bar
        self.loader = SeriesLoader(settings.db_path, self, nonuniform=settings.nonuniform_spacing)
        self.worker = AnalysisWorker(settings.models_path, parent=self)
        self.bar.attach(self.worker)
        self.current: OpenSeries | None = None
        self._volume: Any = None  # the fully loaded volume of the current series, None while streaming
        self._runs: dict[int, int] = {}  # worker generation -> series id
        self._results: dict[int, Any] = {}  # series id -> its latest AI result
        self._auto_model: str | None = None  # run on the series being opened once it has loaded (the demo)
        self._lookups = QThreadPool(self)  # stored-analysis look-ups, one at a time
        self._lookups.setMaxThreadCount(1)
        self._pending: set[_LookupSignals] = set()  # kept alive until their answer arrives
        browser.seriesActivated.connect(self.open_series)
        self.loader.volumeReady.connect(self._volume_ready)
        self.loader.slicesLoaded.connect(self._slices_loaded)
        self.loader.finished.connect(self._load_finished)
        self.loader.failed.connect(self._load_failed)
        bar.runRequested.connect(self.run_ai)
        bar.runAnywayRequested.connect(lambda model_id: self.run_ai(model_id, allow_interpolated=True))
        bar.cancelRequested.connect(self.worker.cancel)
        self.worker.finished.connect(self._ai_finished)
        self.worker.failed.connect(self._ai_failed)
        self.worker.cancelled.connect(self._ai_cancelled)
        findings.findingSelected.connect(self.show_finding)
        bar.set_modality(None)

    # --- opening a series ---------------------------------------------------------
    def open_series(self, series_id: int) -> bool:
        """Start streaming a series into the viewer; False (and a message) if the index does not know it."""
        from workstation.index import StudyIndex

        with StudyIndex(self.settings.db_path) as index:
            row = index.find_series(str(series_id))
            study = index.study(row.study_id) if row is not None else None
        if row is None or study is None:
            self.problem.emit("Series not found", f"Series {series_id} is no longer in the study index.")
            return False
        info = ViewerInfo(study.patient.name, study.date, row.description, row.modality)
        self.current = OpenSeries(row.id, row.study_id, row.modality, row.description, info)
        self._volume = None
        self._auto_model = None
        self.findings.clear()
        self.viewer.clear_overlay()
        self.bar.set_modality(row.modality)
        self.bar.setEnabled(False)  # until every slice is in: the AI gets the whole volume
        self.notes.set_study(row.study_id)
        self.browser.select_series(row.id)
        self.message.emit(f"Opening series {row.id} ({row.description or row.modality})…")
        self.loader.open_series(row.id)
        return True

    def open_study(self, study_id: int, analyze: str | None = None) -> bool:
        """Open a study's main series (its largest image volume); ``analyze``: a model to run once it is loaded."""
        from workstation.index import StudyIndex

        with StudyIndex(self.settings.db_path) as index:
            rows = [r for r in index.series(study_id) if r.kind in ("volume", "multi_volume")]
        if not rows:
            self.problem.emit("Nothing to show", f"Study {study_id} holds no image volume.")
            return False
        best = max(rows, key=lambda r: int(r.summary.get("instances") or 0))
        opened = self.open_series(best.id)
        self._auto_model = analyze if opened else None
        return opened

    def result(self, series_id: int) -> Any:
        """The latest AI result of a series (None if it has none)."""
        return self._results.get(series_id)

    def volume(self) -> Any:
        """The fully loaded volume of the open series (None while it streams in)."""
        return self._volume

    def _volume_ready(self, series_id: int, volume: Any, loaded: Any) -> None:
        if self.current is None or series_id != self.current.series_id:
            return
        self.viewer.set_volume(volume, self.current.info, loaded=loaded)

    def _slices_loaded(self, series_id: int, start: int, stop: int) -> None:
        if self.current is not None and series_id == self.current.series_id:
            self.viewer.mark_loaded(start, stop)

    def _load_finished(self, series_id: int, volume: Any) -> None:
        if self.current is None or series_id != self.current.series_id:
            return
        if self.viewer.volume() is not volume:  # not streamed (resampled grid) or converted to a narrower type
            where, wl = self.viewer.current_index(), self.viewer.window_level()
            self.viewer.set_volume(volume, self.current.info)
            self.viewer.set_window_level(*wl)
            self.viewer.go_to_index(where)
        self._volume = volume
        self.bar.setEnabled(True)
        notes = "; ".join(volume.notes)
        shape = "×".join(str(n) for n in volume.shape)
        self.message.emit(f"Series {series_id}: {shape} voxels" + (f" ({notes})" if notes else ""))
        previous = self._results.get(series_id)
        if previous is not None:
            self._show_result(previous)
        self.seriesOpened.emit(series_id)
        if previous is not None:
            self._auto_model = None
            self.analysisLookedUp.emit(series_id, True)
        else:
            self._look_up_stored(series_id, volume)

    def _look_up_stored(self, series_id: int, volume: Any) -> None:
        """Ask the analysis store for this series' analysis (the AI bar's model first); ``_stored_found`` answers."""
        task = _StoredLookup(self.settings, series_id, volume, self.bar.current_model_id())
        self._pending.add(task.signals)
        task.signals.found.connect(self._stored_found)
        self._lookups.start(task)

    def _stored_found(self, series_id: int, volume: Any, result: Any) -> None:
        sender = self.sender()
        self._pending = {s for s in self._pending if s is not sender}
        if self.current is None or self.current.series_id != series_id or self._volume is not volume:
            return  # another series (or another load of it) is on screen now
        running = series_id in self._runs.values()
        shown = result is not None and series_id not in self._results
        if shown:
            self._results[series_id] = result
            if not running:
                self.browser.set_ai_status(series_id, "done")
            prov = result.provenance
            self.message.emit(f"Showing the stored analysis of series {series_id}: {prov.model_id} "
                              f"{prov.model_version}")
            self._show_result(result)
        elif series_id not in self._results and not running and self.browser.ai_status(series_id) == "done":
            self.browser.set_ai_status(series_id, "none")  # its record no longer matches: nothing stale is shown
        self.analysisLookedUp.emit(series_id, series_id in self._results)
        model, self._auto_model = self._auto_model, None
        if model is not None and series_id not in self._results and not running:
            self.run_ai(model)

    def _load_failed(self, series_id: int, text: str) -> None:
        if self.current is not None and series_id == self.current.series_id:
            self.current = None
        self.message.emit(f"Series {series_id} could not be opened")
        self.problem.emit("Series could not be opened", text)

    # --- AI -------------------------------------------------------------------------
    def run_ai(self, model_id: str, *, allow_interpolated: bool = False) -> int | None:
        """Send the open volume to the worker (an immutable request); the generation number, or None.

        A volume with more than the settings' share of interpolated slices is
        refused (``analysisRefused``; the AI bar offers "Analyse anyway", which
        calls back with ``allow_interpolated``); the worker applies the same rule.
        """
        from inference.contract import AnalysisRequest
        from workstation.services.interpolation import InterpolationPolicy, interpolation_problem

        if self.current is None or self._volume is None:
            self.message.emit("Open a series and wait for it to load before running AI")
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
            self.message.emit(text)
            self.bar.show_refused(model_id, text)
            self.analysisRefused.emit(model_id, text)
            return None
        for gen, sid in list(self._runs.items()):  # the worker cancels the run this one supersedes
            self.browser.set_ai_status(sid, "none" if sid not in self._results else "done")
            del self._runs[gen]
        generation = self.worker.submit(request, series_id, policy=policy, label=label,
                                        keep=self._store_sink(series_id, label))
        self._runs[generation] = series_id
        self.browser.set_ai_status(series_id, "running")
        self.bar.show_running()
        self.message.emit(f"Running {model_id} on series {series_id}…")
        return generation

    def _store_sink(self, series_id: int, label: str) -> Any:
        """Where the worker keeps this run's result: the analysis store, shared with the command line."""
        from workstation.services.analysis_store import AnalysisStore, IndexedSeriesSink

        return IndexedSeriesSink(AnalysisStore.for_settings(self.settings), self.settings.db_path, series_id, label)

    def _needs_code_confirmation(self, model_id: str) -> bool:
        """True (and ``codeConfirmationNeeded`` emitted) if the model's config runs code the user has not trusted.

        The decision is the services' (``code_review``, reading JSON only); the
        window asks, and ``trust_and_run`` records a "yes". The worker refuses
        such a model anyway, so nothing runs unannounced.
        """
        from workstation.services.models import code_review, confirmation_text

        try:
            review = code_review(model_id, self.settings.models_path)
        except WorkstationError:
            return False  # an unknown or broken model: the run reports why
        if review is None:
            return False
        self.message.emit(f"{model_id} runs code from its configuration: confirm to run it")
        self.codeConfirmationNeeded.emit(model_id, confirmation_text(model_id, review))
        return True

    def trust_and_run(self, model_id: str) -> int | None:
        """The user confirmed the model's code: record the trust, then run it."""
        from workstation.services.models import trust_bundle

        try:
            trust_bundle(model_id, self.settings.models_path)
        except (WorkstationError, OSError) as exc:
            self.problem.emit("The model could not be trusted", str(exc))
            return None
        return self.run_ai(model_id)

    def _ai_finished(self, generation: int, result: Any) -> None:
        series_id = self._runs.pop(generation, None)
        if series_id is None:
            return
        self._results[series_id] = result
        self.browser.set_ai_status(series_id, "done")
        prov = result.provenance
        self.message.emit(f"AI draft ready for series {series_id}: {prov.model_id} on {prov.device}")
        if self.current is not None and self.current.series_id == series_id:
            self._show_result(result)

    def _show_result(self, result: Any) -> None:
        self.viewer.set_overlay(result.labelmap, result.label_table)
        self.viewer.set_overlay_opacity(OVERLAY_OPACITY)
        for label in result.label_table:
            if label.name in HIDDEN_BY_DEFAULT:
                self.viewer.set_label_visible(label.value, False)
        self.findings.set_result(result)
        if self.current is not None:
            self.resultShown.emit(self.current.series_id)

    def _ai_failed(self, generation: int, text: str) -> None:
        series_id = self._runs.pop(generation, None)
        if series_id is None:
            return
        self.browser.set_ai_status(series_id, "failed")
        self.message.emit(f"AI failed on series {series_id}: {text}")

    def _ai_cancelled(self, generation: int) -> None:
        series_id = self._runs.pop(generation, None)
        if series_id is not None:
            self.browser.set_ai_status(series_id, "done" if series_id in self._results else "none")
            self.message.emit("AI run cancelled")

    def show_finding(self, target: FindingTarget) -> None:
        """Move every view to a finding and outline its box."""
        self.viewer.go_to_lps(target.centroid_lps)
        self.viewer.highlight_box(target.bbox_min_index, target.bbox_max_index)

    # --- quitting -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Save notes, cancel and join the worker and the loader (called on close)."""
        self.notes.flush()
        self.worker.shutdown(5000)
        self.loader.shutdown()
        self._lookups.waitForDone(5000)
