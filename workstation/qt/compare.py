"""Follow-up reading in the window: priors offered, the comparison run, prior and current read side by side.

``CompareReading`` owns the window's central area, a splitter holding the
current viewer and (while comparing) a prior pane: a second ``MprViewer``
labelled with the prior's date and how it was aligned (the two viewers, their
link and their zoom: ``compare_views.SideBySide``). It

* looks up the open series' priors when a series has opened (on the session's
  I/O runner: ``FollowupService.look_up_priors``), marks them in the study
  browser, fills the "Prior" chooser (the best comparable first) and offers
  "Compare with prior" in the status bar; then, when PACS nodes are configured,
  adds the priors only a PACS holds, "on PACS <node>" (``compare_pacs.PacsPriors``:
  retrieved into the index when chosen, then compared like the others);
* runs the comparison as a job on the window's device runner
  (``FollowupService``), with progress and Cancel in its toolbar;
* shows the prior as soon as it is loaded, outlines the prior's own findings
  once the prior is analysed (the same model, colours and overlay settings as
  the current), then links the two viewer models through the registration
  (``workstation.viewing.linking.ViewerLink``): cursor, scrolling, W/L, slab
  and overlay; the views' zoom and pan follow (they are Qt state). A
  registration that failed its check is shown in red and never links positions;
* puts the comparison into the findings panel and, through a job on the
  session's I/O runner (``report_context.submit_context``: the index is read
  and the notes de-identified off the GUI thread), into the report context.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QToolBar

from inference.followup.model import LesionChange, RegistrationResult
from workstation.qt.bridge import GuiPoster
from workstation.qt.compare_pacs import PacsPriors
from workstation.qt.compare_views import SideBySide
from workstation.qt.viewer import MprViewer, ViewerInfo
from workstation.services.followup_jobs import (
    FollowupCancelled,
    FollowupFailed,
    FollowupFinished,
    FollowupProgress,
    FollowupService,
    PriorAnalysed,
    PriorLoaded,
    prior_text,
)
from workstation.services.report_context import ContextBuilt, ContextOutcome, submit_context

if TYPE_CHECKING:
    from workstation.qt.browser import StudyBrowser
    from workstation.qt.panels import FindingsPanel
    from workstation.qt.reading import ReadingSession
    from workstation.qt.report_panel import ReportPanel
    from workstation.qt.viewer.slice_view import SliceView
    from workstation.services.catalog import Catalog
    from workstation.services.followup import PriorCandidate
    from workstation.services.runner import JobRunner
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

COMPARISON_CONTEXT_KIND = "comparison-report-context"  # its own kind: never supersedes a new result's context


class CompareReading(QObject):
    """The window's follow-up reading; see the module docstring. ``splitter`` is the central widget."""

    message = Signal(str)  # a line for the status bar
    problem = Signal(str, str)  # title, text
    priorsFound = Signal(int, int)  # noqa: N815 - series id, how many priors it has
    comparisonShown = Signal(object)  # noqa: N815 - FollowupFinished: the prior is aligned (or failed to be)
    reportUpdated = Signal(object)  # noqa: N815 - ContextOutcome: the report context took the comparison (or not)

    def __init__(self, settings: Settings, catalog: Catalog, runner: JobRunner, viewer: MprViewer,
                 session: ReadingSession, findings: FindingsPanel, browser: StudyBrowser,
                 report: ReportPanel | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.catalog, self.viewer, self.session = catalog, viewer, session
        self.findings, self.browser, self.report = findings, browser, report
        self._poster = GuiPoster(self)
        self.service = FollowupService(self._poster.post, settings, catalog, runner, io_runner=session.model.io)
        self.service.subscribe(self._on_event)
        self.priors: list[PriorCandidate] = []  # the index's; the chooser lists them, then self.pacs.priors
        self.finished: FollowupFinished | None = None
        self._series_id: int | None = None
        self.views = SideBySide(viewer, self)
        self.splitter, self.prior_viewer = self.views.splitter, self.views.prior_viewer
        self.prior_pane, self.prior_header = self.views.prior_pane, self.views.prior_header
        self.current_header = self.views.current_header
        self._build_actions()
        self.pacs = PacsPriors(self, settings, catalog)
        session.seriesOpened.connect(self.series_opened)
        findings.comparison.lesionSelected.connect(self.show_change)

    # --- widgets --------------------------------------------------------------------------
    def _build_actions(self) -> None:
        self.compare_action = QAction("Compare with &prior", self)
        self.compare_action.setShortcut(QKeySequence("Ctrl+Shift+P"))
        self.compare_action.setToolTip("Align the chosen prior study, compare lesions and read both side by side")
        self.compare_action.setEnabled(False)
        self.compare_action.triggered.connect(lambda _c=False: self.compare())
        self.cancel_action = QAction("Cancel comparison", self)
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(lambda _c=False: self.cancel())
        self.close_action = QAction("Close prior", self)
        self.close_action.setToolTip("Back to the current study alone")
        self.close_action.setEnabled(False)
        self.close_action.triggered.connect(lambda _c=False: self.close_prior())
        self.chooser = QComboBox()
        self.chooser.setObjectName("PriorChooser")
        self.chooser.setMinimumContentsLength(28)
        self.chooser.setToolTip("Earlier studies of this patient (the most comparable series of each)")
        self.chooser.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(True)
        self.toolbar = QToolBar("Follow-up")
        self.toolbar.setObjectName("FollowupToolbar")
        self.toolbar.addWidget(QLabel(" Prior: "))
        self.toolbar.addWidget(self.chooser)
        self.toolbar.addAction(self.compare_action)
        self._progress_action = self.toolbar.addWidget(self.progress)
        self._progress_action.setVisible(False)
        self.toolbar.addAction(self.cancel_action)
        self.toolbar.addAction(self.close_action)

    # --- priors of the open series ---------------------------------------------------------
    def series_opened(self, series_id: int) -> None:
        """A series is open: look up its priors, mark them, offer the comparison; another study's prior goes."""
        if self._series_id != series_id:
            self.close_prior()
            self.findings.comparison.clear()
        self._series_id = series_id
        self.service.look_up_priors(series_id, self._priors_found)

    def _priors_found(self, series_id: int, priors: list[PriorCandidate]) -> None:
        if series_id != self._series_id:
            return  # another series was opened meanwhile
        self.priors = priors
        self.chooser.clear()
        for candidate in self.priors:
            self.chooser.addItem(prior_text(candidate))
        self.offer()
        self.browser.set_priors({c.study.id: f"Prior of the open study: {prior_text(c)}" for c in self.priors})
        if self.priors:
            self.message.emit(f"{len(self.priors)} prior stud{'y' if len(self.priors) == 1 else 'ies'} of this "
                              f"patient, the latest {prior_text(self.priors[0])}: Compare with prior (Ctrl+Shift+P)")
        self.priorsFound.emit(series_id, len(self.priors))
        self.pacs.look_up(series_id)  # after the local ones: a slow or absent PACS never holds them up

    @property
    def series_id(self) -> int | None:
        """The open series whose priors are offered."""
        return self._series_id

    def offer(self) -> None:
        """Enable the chooser and the action when the chooser holds a prior (local or on PACS)."""
        self.chooser.setEnabled(self.chooser.count() > 0)
        self.compare_action.setEnabled(self.chooser.count() > 0 and not self.is_busy())

    # --- the comparison ------------------------------------------------------------------------
    def compare(self, index: int | None = None) -> int | None:
        """Compare the open series with a prior (the chooser's, by default); the job's generation or None."""
        current, volume = self.session.current, self.session.volume()
        choice = self.chooser.currentIndex() if index is None else index
        if current is None or volume is None or not 0 <= choice < len(self.priors) + len(self.pacs.priors):
            self.message.emit("Open a series with a prior study and wait for it to load, then compare")
            return None
        if choice >= len(self.priors):  # on a PACS: retrieved first, then compare_with (no generation yet)
            self.pacs.retrieve_then_compare(current.series_id, choice - len(self.priors))
            return None
        return self.compare_with(self.priors[choice])

    def compare_with(self, candidate: PriorCandidate) -> int | None:
        """Compare the open series with ``candidate`` (in the index); the job's generation or None."""
        current, volume = self.session.current, self.session.volume()
        if current is None or volume is None:
            self.message.emit("Open a series and wait for it to load, then compare")
            return None
        result = self.session.result(current.series_id)
        generation = self.service.submit(current.series_id, volume, result, candidate)
        self.finished = None
        self._running(True)
        what = ("aligning and comparing lesions" if result is not None
                else "aligning (no analysis: lesions not compared)")
        self.message.emit(f"Comparing with the prior of {prior_text(candidate)}: {what}…")
        return generation

    def is_busy(self) -> bool:
        """True while a comparison runs or a prior is being retrieved for one."""
        return self.service.is_busy() or self.pacs.service.is_busy()

    def cancel(self) -> None:
        """Cancel the retrieve of a prior and the comparison."""
        self.pacs.service.cancel()
        self.service.cancel()

    def _running(self, running: bool) -> None:
        self._progress_action.setVisible(running)
        self.progress.setValue(0)
        self.cancel_action.setEnabled(running)
        self.compare_action.setEnabled(not running and self.chooser.count() > 0)

    def _on_event(self, event: object) -> None:
        if isinstance(event, PriorLoaded):
            self._show_prior(event.candidate, event.volume)
        elif isinstance(event, PriorAnalysed):
            self.views.show_prior_analysis(event.result)
        elif isinstance(event, FollowupProgress):
            self.progress.setValue(round(event.fraction * 100))
            self.progress.setFormat(f"%p% {event.stage}")
            self.progress.setToolTip(event.stage)
        elif isinstance(event, FollowupFinished):
            self._running(False)
            self._finished(event)
        elif isinstance(event, FollowupFailed):
            self._running(False)
            self.views.set_prior_header(f"PRIOR not compared: {event.message}", failed=True)
            self.message.emit(event.message)
            self.problem.emit("The comparison with the prior failed", event.message)
        elif isinstance(event, FollowupCancelled):
            self._running(False)
            self.message.emit("Comparison cancelled")
            if self.finished is None:
                self.close_prior()

    def _show_prior(self, candidate: PriorCandidate, volume: Any) -> None:
        """The prior is loaded: show it beside the current (display linked; position once aligned)."""
        study, series = candidate.study, candidate.series
        current = self.session.current
        self.views.show_prior(
            volume, ViewerInfo(study.patient.name, study.date, series.description, series.modality),
            f"PRIOR · {_short(candidate)} · aligning…", prior_text(candidate),
            f"CURRENT · {ViewerInfo(study_date=current.study_date).date_text()} · {current.description}"
            if current is not None else "CURRENT")
        self.close_action.setEnabled(True)

    def _finished(self, event: FollowupFinished) -> None:
        self.finished = event
        reg, candidate = event.registration, event.candidate
        when = candidate.study_date.isoformat() if candidate.study_date else "date unknown"
        if reg.passed:
            self.views.set_prior_header(
                f"PRIOR · {_short(candidate)} · aligned ({reg.kind}, quality {reg.quality_value:.2f})",
                f"{prior_text(candidate)}\n{reg.quality_name}: {reg.quality_value:.3f}")
        else:
            self.views.set_prior_header(f"PRIOR · {_short(candidate)} · alignment FAILED its quality check: "
                                        f"positions are NOT linked ({reg.reason})",
                                        f"{prior_text(candidate)}\n{reg.reason}", failed=True)
        self.views.set_registration(reg)  # a failed one links the display only
        panel = self.findings.comparison
        if event.comparison is not None:
            panel.set_comparison(event.comparison)
            self._update_report(event)
        else:
            panel.set_alignment_only(prior_text(candidate), reg)
        verdict = "aligned" if reg.passed else "NOT aligned (quality check failed)"
        self.message.emit(f"Prior of {when} {verdict}" + (": comparison in the Findings tab"
                                                          if event.comparison is not None else ""))
        self.comparisonShown.emit(event)

    def _update_report(self, event: FollowupFinished) -> None:
        """Give the report the comparison: its context is rebuilt on the I/O runner (index reads, de-identified
        notes), then an untouched AI draft is redrafted with it, an edited one offers Redraft."""
        current, volume = self.session.current, self.session.volume()
        if self.report is None or current is None or volume is None or event.comparison is None:
            return
        result = self.session.result(current.series_id)
        if result is None:
            return
        submit_context(self.session.model.io, self._poster.post, self.catalog, current.series_id, result, volume,
                       lambda outcome: self._report_context_built(event, outcome), comparison=event.comparison,
                       kind=COMPARISON_CONTEXT_KIND)

    def _report_context_built(self, event: FollowupFinished, outcome: ContextOutcome) -> None:
        current = self.session.current
        if self.finished is not event or current is None or current.series_id != outcome.series_id:
            return  # another comparison or another series since: this context is stale
        if self.report is not None and isinstance(outcome, ContextBuilt):
            self.report.take_new_facts(outcome.context, "the comparison with the prior")
        elif not isinstance(outcome, ContextBuilt):  # the comparison is on screen; the report goes without it
            logger.warning("the report context could not take the comparison: %s", outcome.message)
        self.reportUpdated.emit(outcome)

    def show_change(self, change: LesionChange) -> None:
        """Go to a compared lesion in both viewers (a resolved one at its place in the prior)."""
        if change.current is not None:
            self.viewer.go_to_lps(change.current.centroid_lps)
        elif change.prior is not None and self.views.is_showing():
            self.prior_viewer.go_to_lps(change.prior.centroid_lps)
        self.views.sync_zoom_all()

    def close_prior(self) -> None:
        """Back to the current study alone (a running comparison, or retrieve, is cancelled)."""
        if self.is_busy():
            self.cancel()
        self.views.close_prior()
        self.close_action.setEnabled(False)

    def registration(self) -> RegistrationResult | None:
        """The registration shown (None before one finished)."""
        return self.finished.registration if self.finished is not None else None

    def sync_zoom(self, source: SliceView) -> None:
        """Give ``source``'s partner in the other viewer its zoom and pan (see ``SideBySide.sync_zoom``)."""
        self.views.sync_zoom(source)

    def shutdown(self) -> None:
        """Cancel the comparison and stop reporting (before the device runner is shut down)."""
        self.service.shutdown()
        self.pacs.shutdown()
        self.prior_viewer.stop_cine()


def _short(candidate: PriorCandidate) -> str:
    """The prior's date and series number, what the header must never cut: "2023-03-15 · series 2"."""
    when = candidate.study_date.isoformat() if candidate.study_date else "date unknown"
    number = candidate.series.number
    return f"{when} · series {number}" if number is not None else when
