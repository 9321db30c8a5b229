"""The reading session's views: binds the Qt-free ``ReadingSession`` to the browser, viewer and panels.

All the state of reading a study (which series is open, its streaming load,
the AI result per series, the stored-analysis look-up, the interpolation and
code-trust rules) lives in ``workstation.services.session.ReadingSession``;
its background work runs on the services' job runners. This module only:

* creates the session with the GUI thread's ``post`` (``workstation.qt.bridge``),
  so every session event arrives on the GUI thread;
* draws each event on the widgets (viewer, findings, AI bar, browser status);
* forwards the widgets' requests (open a series, run, cancel, go to a finding);
* re-emits the signals the main window and the tests connect to.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from workstation.qt.bridge import GuiPoster
from workstation.qt.browser import StudyBrowser
from workstation.qt.panels import AnalysisBar, FindingsPanel, FindingTarget, NotesPanel
from workstation.qt.viewer import MprViewer, ViewerInfo
from workstation.qt.worker import AnalysisWorker
from workstation.services import session_events as ev
from workstation.services.analysis_jobs import AnalysisService
from workstation.services.remote_models import remote_models
from workstation.services.runner import JobRunner
from workstation.services.session import ReadingSession as ReadingModel
from workstation.settings import Settings

logger = logging.getLogger(__name__)

OVERLAY_OPACITY = 0.35
HIDDEN_BY_DEFAULT = ("body",)  # a filled body label would hide the anatomy it contains


class ReadingSession(QObject):
    """The window's side of the reading session: signals and widget updates for ``services.session`` events.

    ``runner`` is the device runner the analyses run on (the window's, shared with
    report drafting); without one the analysis service makes and owns its own.
    """

    message = Signal(str)  # a line for the status bar
    problem = Signal(str, str)  # title, text: something the user must see
    seriesOpened = Signal(int)  # noqa: N815 - Qt signal naming; the series is fully loaded
    resultShown = Signal(int)  # noqa: N815 - series id whose AI result is now on screen
    analysisRefused = Signal(str, str)  # noqa: N815 - model id, why: the AI bar offers "Analyse anyway"
    codeConfirmationNeeded = Signal(str, str)  # noqa: N815 - model id, question: its config runs untrusted code
    analysisLookedUp = Signal(int, bool)  # noqa: N815 - series id, whether a stored analysis is now shown

    def __init__(self, settings: Settings, browser: StudyBrowser, viewer: MprViewer, findings: FindingsPanel,
                 notes: NotesPanel, bar: AnalysisBar, parent: QObject | None = None, *,
                 runner: JobRunner | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.browser, self.viewer, self.findings, self.notes, self.bar = browser, viewer, findings, notes, bar
        self._poster = GuiPoster(self)
        analysis = AnalysisService(self._poster.post, models_dir=settings.models_path, device=settings.device,
                                   runner=runner, remote=remote_models(settings))
        self.model = ReadingModel(settings, self._poster.post, analysis=analysis,
                                      prefer_model=bar.current_model_id)
        self.worker = AnalysisWorker(service=analysis, parent=self)
        self.bar.attach(self.worker)
        self._info: ViewerInfo | None = None
        self.model.subscribe(self._on_event)
        browser.seriesActivated.connect(self.open_series)
        bar.runRequested.connect(self.run_ai)
        bar.runAnywayRequested.connect(lambda model_id: self.run_ai(model_id, allow_interpolated=True))
        bar.cancelRequested.connect(self.worker.cancel)
        findings.findingSelected.connect(self.show_finding)
        bar.set_modality(None)

    # --- the session's API, for the window ------------------------------------------------
    @property
    def current(self) -> ev.OpenSeries | None:
        """The open series (None before one is chosen, or after its load failed)."""
        return self.model.current

    @property
    def loading(self) -> bool:
        """True while the open series streams in."""
        return self.model.loading

    def open_series(self, series_id: int) -> bool:
        """Start streaming a series into the viewer; False (and ``problem``) if the index does not know it."""
        return self.model.open_series(series_id)

    def open_study(self, study_id: int, analyze: str | None = None) -> bool:
        """Open a study's main series; ``analyze``: a model to run once it is loaded (the demo)."""
        return self.model.open_study(study_id, analyze)

    def result(self, series_id: int) -> Any:
        """The latest AI result of a series (None if it has none)."""
        return self.model.result(series_id)

    def volume(self) -> Any:
        """The fully loaded volume of the open series (None while it streams in)."""
        return self.model.volume()

    def run_ai(self, model_id: str, *, allow_interpolated: bool = False) -> int | None:
        """Run a model on the open volume (see ``services.session.ReadingSession.run_ai``)."""
        return self.model.run_ai(model_id, allow_interpolated=allow_interpolated)

    def trust_and_run(self, model_id: str) -> int | None:
        """The user confirmed the model's code: record the trust, then run it."""
        return self.model.trust_and_run(model_id)

    def show_finding(self, target: FindingTarget) -> None:
        """Move every view to a finding and outline its box."""
        self.viewer.go_to_lps(target.centroid_lps)
        self.viewer.highlight_box(target.bbox_min_index, target.bbox_max_index)

    def shutdown(self) -> None:
        """Save notes, cancel and join the runners (called on close)."""
        self.notes.flush()
        self.worker.shutdown(5000)
        self.model.shutdown(5.0)

    # --- drawing the session's events ----------------------------------------------------------
    def _on_event(self, event: object) -> None:
        if isinstance(event, ev.Message):
            self.message.emit(event.text)
        elif isinstance(event, ev.Problem):
            self.problem.emit(event.title, event.text)
        elif isinstance(event, ev.SeriesOpening):
            self._opening(event.series)
        elif isinstance(event, ev.VolumeReady):
            if self._info is not None:
                self.viewer.set_volume(event.volume, self._info, loaded=event.loaded)
        elif isinstance(event, ev.SlicesLoaded):
            self.viewer.mark_loaded(event.start, event.stop)
        elif isinstance(event, ev.SeriesOpened):
            self._opened(event.series_id, event.volume)
        elif isinstance(event, ev.AiStatusChanged):
            self.browser.set_ai_status(event.series_id, event.status)
        elif isinstance(event, ev.ResultShown):
            self._show_result(event.series_id, event.result)
        elif isinstance(event, ev.AnalysisLookedUp):
            self._looked_up(event.series_id, event.found)
        elif isinstance(event, ev.AnalysisRefused):
            self.bar.show_refused(event.model_id, event.text)
            self.analysisRefused.emit(event.model_id, event.text)
        elif isinstance(event, ev.CodeConfirmationNeeded):
            self.codeConfirmationNeeded.emit(event.model_id, event.question)
        elif isinstance(event, ev.AnalysisStarted):
            self.bar.show_running()

    def _opening(self, series: ev.OpenSeries) -> None:
        self._info = ViewerInfo(series.patient_name, series.study_date, series.description, series.modality)
        self.findings.clear()
        self.viewer.clear_overlay()
        self.bar.set_modality(series.modality)
        self.bar.setEnabled(False)  # until every slice is in: the AI gets the whole volume
        self.notes.set_study(series.study_id)
        self.browser.select_series(series.series_id)

    def _opened(self, series_id: int, volume: Any) -> None:
        if self.viewer.volume() is not volume and self._info is not None:  # not streamed, or a narrower dtype
            where, wl = self.viewer.current_index(), self.viewer.window_level()
            self.viewer.set_volume(volume, self._info)
            self.viewer.set_window_level(*wl)
            self.viewer.go_to_index(where)
        self.bar.setEnabled(True)
        self.seriesOpened.emit(series_id)

    def _looked_up(self, series_id: int, found: bool) -> None:
        if (not found and not self.model.is_analysing(series_id)
                and self.browser.ai_status(series_id) == "done"):
            self.browser.set_ai_status(series_id, "none")  # its record no longer matches: nothing stale is shown
        self.analysisLookedUp.emit(series_id, found)

    def _show_result(self, series_id: int, result: Any) -> None:
        self.viewer.set_overlay(result.labelmap, result.label_table)
        self.viewer.set_overlay_opacity(OVERLAY_OPACITY)
        for label in result.label_table:
            if label.name in HIDDEN_BY_DEFAULT:
                self.viewer.set_label_visible(label.value, False)
        self.findings.set_result(result)
        self.resultShown.emit(series_id)
