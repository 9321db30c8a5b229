"""The main window: study browser, MPR viewer, findings, notes and the AI run bar.

The window only lays things out and owns the menus; ``ReadingSession`` does the
opening, streaming and analysing; the ``Catalog`` reads and writes the study
index. Imports, loads and analyses all run as jobs on job runners off the GUI
thread and report back through the GUI poster, so the window never freezes.
Window geometry and dock layout are kept in ``window.json`` in the config dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QTextBrowser,
    QToolBar,
    QWidget,
)

from inference.errors import WorkstationError
from workstation.document import AutosaveStore, ReportDocument
from workstation.qt.bridge import GuiPoster, stop_at_quit
from workstation.qt.browser import StudyBrowser, local_paths
from workstation.qt.compare import CompareReading
from workstation.qt.frame_steps import when_quiet
from workstation.qt.panels import AnalysisBar, FindingsPanel, NotesPanel
from workstation.qt.reading import ReadingSession
from workstation.qt.report_panel import ReportPanel, offer_recovery
from workstation.qt.viewer import MprViewer, OverlayPanel, SlabToolbar
from workstation.qt.worklist_view import attach as attach_worklist
from workstation.services.catalog import Catalog
from workstation.services.remote_models import remote_models
from workstation.services.report_context import ContextBuilt, ContextOutcome, submit_context
from workstation.services.runner import JobDone, JobRunner
from workstation.settings import Settings, config_dir

logger = logging.getLogger(__name__)

# files that sit beside DICOM on CDs and in exports (viewers, reports, our demo's truth): ignored quietly,
# while a .dcm or suffix-less file that is not DICOM is bad input the user is told about
NOT_DICOM_SUFFIXES = frozenset({".json", ".txt", ".md", ".pdf", ".xml", ".htm", ".html", ".jpg", ".jpeg", ".png",
                                ".gif", ".exe", ".dll", ".inf", ".ini", ".csv", ".nii", ".gz", ".log", ".css", ".js"})
WORKER_WARMUP_MS = 1500  # load the AI stack on the worker once the window has settled, not on the first click



class MainWindow(QMainWindow):
    """Studies on the left, the MPR viewer in the centre, findings/overlay/notes/series on the right."""

    import_finished = Signal(object)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.catalog = Catalog.for_settings(settings)  # the study index, as typed rows: never opened by a widget
        self._poster = GuiPoster(self)
        self.import_runner = JobRunner("import-runner")  # imports: I/O, never queued behind the device
        stop_at_quit(self.import_runner.shutdown)
        self.setWindowTitle("Radiology Workstation")
        self.setObjectName("MainWindow")
        self.resize(1600, 960)
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        self.viewer = MprViewer()
        self.browser = StudyBrowser(self.catalog)
        self.browser.importRequested.connect(self.start_import)
        self.browser.seriesSelected.connect(self._show_series_details)
        self.findings = FindingsPanel()
        self.overlay = OverlayPanel(self.viewer)
        self.notes = NotesPanel(self.catalog)
        self.details = QTextBrowser()
        self.details.setPlaceholderText("Select a series to see its geometry and quality report.")
        self.report_store = AutosaveStore(settings=settings)
        # the one owner of the GPU: analyses and report drafts queue on this runner, never run side by side
        self.device_runner = JobRunner("device-runner")
        stop_at_quit(self.device_runner.shutdown)
        self.report = ReportPanel(self.report_store, llm_dir=settings.llm_dir, device=settings.device,
                                  runner=self.device_runner)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("SidePanels")
        for widget, title in ((self.findings, "Findings"), (self.report, "Report"), (self.overlay, "Overlay"),
                              (self.notes, "Notes"), (self.details, "Series"), (self.viewer.info_pane, "Cursor")):
            self.tabs.addTab(widget, title)
        left = self._dock(self.browser, "Studies", "StudiesDock", Qt.DockWidgetArea.LeftDockWidgetArea)
        right = self._dock(self.tabs, "Findings and notes", "PanelsDock", Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([left, right], [450, 470], Qt.Orientation.Horizontal)
        self.analysis_bar = AnalysisBar(settings.models_path, remote=remote_models(settings),
                                        runner=self.import_runner)
        self.session = ReadingSession(settings, self.browser, self.viewer, self.findings, self.notes,
                                      self.analysis_bar, self, runner=self.device_runner)
        self.session.message.connect(lambda text: self.statusBar().showMessage(text, 15_000))
        self.session.problem.connect(self._show_problem)
        self.session.codeConfirmationNeeded.connect(self._confirm_model_code)
        self.session.resultShown.connect(lambda _sid: self.tabs.setCurrentWidget(self.findings))
        self.session.resultShown.connect(self._report_for_series)
        self.session.seriesOpened.connect(self._report_study_opened)
        # follow-up reading: priors offered, compared on the device runner, read side by side (current | prior)
        self.compare = CompareReading(settings, self.catalog, self.device_runner, self.viewer, self.session,
                                      self.findings, self.browser, self.report, self)
        self.setCentralWidget(self.compare.splitter)
        self.compare.message.connect(lambda text: self.statusBar().showMessage(text, 15_000))
        self.compare.problem.connect(self._show_problem)
        self.report.navigateTo.connect(self.session.show_finding)
        self.report.message.connect(lambda text: self.statusBar().showMessage(text, 15_000))
        self._recovery_offered = False
        self.recovery_dialog: QDialog | None = None  # the (non-modal) offer of unfinished reports, once
        self.device_label = QLabel("AI device: starting…")
        self.device_label.setObjectName("DeviceLabel")
        self.statusBar().addPermanentWidget(self.device_label)
        self.session.worker.deviceDescribed.connect(lambda text: self.device_label.setText(f"AI device: {text}"))
        self.pacs_listener: Any = None  # a PacsListenerBridge when settings ask to listen (pynetdicom loads then)
        self.worklist = attach_worklist(self)  # background analyses on the device runner, after the reader's
        self._build_toolbars()
        self._build_menus()
        self.statusBar().showMessage("Ready")
        self._restore_state()
        self._closed = False
        self._start_pacs_listener()

    # --- layout ----------------------------------------------------------------------
    def _dock(self, widget: QWidget, title: str, name: str, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_toolbars(self) -> None:
        tools = QToolBar("Viewer")
        tools.setObjectName("ViewerToolbar")
        group = QActionGroup(self)
        for text, name, tip in (("W/L", "wl", "Left-drag changes window/level"),
                                ("Cross", "crosshair", "Left-click moves the linked crosshair"),
                                ("Ruler", "ruler", "Left-drag measures a distance in mm"),
                                ("ROI", "roi", "Left-drag draws an ellipse: mean/std HU and area"),
                                ("Pan", "pan", "Left-drag pans"), ("Zoom", "zoom", "Left-drag zooms")):
            action = QAction(text, self, checkable=True)
            action.setToolTip(tip)
            action.setData(name)
            action.triggered.connect(lambda _c=False, n=name: self.viewer.set_tool(n))
            group.addAction(action)
            tools.addAction(action)
            if name == "wl":
                action.setChecked(True)
        tools.addSeparator()
        self.layout_actions: dict[str, QAction] = {}
        layouts = QActionGroup(self)
        for name in ("1x1", "1x3", "2x2"):
            action = QAction(name, self, checkable=True)
            action.setToolTip(f"Layout {name}")
            action.triggered.connect(lambda _c=False, n=name: self.viewer.set_layout(n))
            layouts.addAction(action)
            tools.addAction(action)
            self.layout_actions[name] = action
        self.viewer.layoutChanged.connect(self._layout_changed)
        self._layout_changed(self.viewer.layout_name())
        tools.addSeparator()
        self.slab_control = SlabToolbar(self.viewer)  # MIP/MinIP/Avg slab (keys M, [ and ])
        tools.addWidget(self.slab_control)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tools)
        ai = QToolBar("AI")
        ai.setObjectName("AIToolbar")
        ai.addWidget(self.analysis_bar)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, ai)
        self.addToolBarBreak(Qt.ToolBarArea.TopToolBarArea)  # a second row: the AI bar leaves no room
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.compare.toolbar)

    def _layout_changed(self, name: str) -> None:
        action = self.layout_actions.get(name)
        if action is not None:
            action.setChecked(True)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._add(file_menu, "Import &folder…", self._import_folder, QKeySequence.StandardKey.Open)
        self._add(file_menu, "Import &zip or files…", self._import_files)
        self._add(file_menu, "Open &demo study", self.open_demo)
        self._add(file_menu, "&Query/retrieve from PACS…", self.open_pacs_dialog, "Ctrl+Shift+Q")
        file_menu.addSeparator()
        self._add(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        view_menu = self.menuBar().addMenu("&View")
        for name in ("1x1", "1x3", "2x2"):
            self._add(view_menu, f"Layout {name}", lambda n=name: self.viewer.set_layout(n))
        view_menu.addSeparator()
        self._add(view_menu, "&Reset window/level and zoom", self.viewer.reset)
        self._add(view_menu, "Clear &measurements", self.viewer.clear_measurements)
        ai_menu = self.menuBar().addMenu("&AI")
        self._add(ai_menu, "&Run selected model", self._run_selected, "Ctrl+R")
        self._add(ai_menu, "&Cancel run", self.session.worker.cancel)
        ai_menu.addSeparator()
        for action in (self.compare.compare_action, self.compare.cancel_action, self.compare.close_action):
            ai_menu.addAction(action)

    def _add(self, menu: Any, text: str, slot: Any, key: Any = None) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(lambda _c=False: slot())
        if key is not None:
            action.setShortcut(QKeySequence(key))
        menu.addAction(action)
        return action

    def _run_selected(self) -> None:
        model_id = self.analysis_bar.current_model_id()
        if model_id is not None:
            self.session.run_ai(model_id)

    # --- state --------------------------------------------------------------------
    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Warm the AI worker up once the window is on screen."""
        super().showEvent(event)
        if not self.session.worker.is_running():
            QTimer.singleShot(WORKER_WARMUP_MS, self._warm_worker)
        if not self._recovery_offered:
            QTimer.singleShot(0, self._offer_report_recovery)

    def _report_for_series(self, series_id: int) -> None:
        """An AI result is on screen: draft its study's report (or reopen the saved one).

        Its context (index reads, de-identified notes) is built on the session's I/O runner once the result is
        drawn (``when_quiet``: Python on another thread competes with the drawing for the GIL); the draft
        starts when it arrives.
        """
        when_quiet(lambda: self._build_report_context(series_id))

    def _build_report_context(self, series_id: int) -> None:
        current = self.session.current
        result, volume = self.session.result(series_id), self.session.volume()
        if self._closed or current is None or current.series_id != series_id or result is None or volume is None:
            return
        submit_context(self.session.model.io, self._poster.post, self.catalog, series_id, result, volume,
                       lambda outcome: self._report_context_built(outcome, result))

    def _report_context_built(self, outcome: ContextOutcome, result: Any) -> None:
        current = self.session.current
        if self._closed or current is None or current.series_id != outcome.series_id \
                or self.session.result(outcome.series_id) is not result:
            return  # another series or a newer result since: its own context follows
        if isinstance(outcome, ContextBuilt):
            self.report.set_context(outcome.context)
        else:
            self.statusBar().showMessage(f"The report cannot be drafted: {outcome.message}", 15_000)

    def _report_study_opened(self, series_id: int) -> None:
        """Another series is open: the report panel follows its study (saves and puts away another's)."""
        study = self.catalog.study_of_series(series_id)
        self.report.set_study(study.study_key if study is not None else None)

    def _offer_report_recovery(self) -> None:
        """Once, on start: offer back the reports left unfinished (e.g. after a crash), reopen the first's study."""
        if self._recovery_offered or self._closed:
            return
        self._recovery_offered = True
        self.recovery_dialog = offer_recovery(self, self.report_store, self._restore_reports,
                                              self.catalog.study_title)

    def _restore_reports(self, docs: list[ReportDocument]) -> None:
        """Reports restored from the recovery offer: show the first and open its study."""
        if not docs or self._closed:
            return
        self.report.show_document(docs[0])
        self.tabs.setCurrentWidget(self.report)
        study = self.catalog.study_by_key(docs[0].study_key)
        if study is not None:
            self.open_study(study.id)

    def _warm_worker(self) -> None:
        if not self._closed:  # the device runner may already serve a draft: name the device all the same
            self.session.worker.start()

    def _state_file(self) -> Path:
        return config_dir() / "window.json"

    def _restore_state(self) -> None:
        try:
            data = json.loads(self._state_file().read_text(encoding="utf-8"))
            self.restoreGeometry(QByteArray.fromHex(data["geometry"].encode()))
            self.restoreState(QByteArray.fromHex(data["state"].encode()))
            if data.get("layout") in self.layout_actions:
                self.viewer.set_layout(data["layout"])
        except (OSError, ValueError, KeyError, TypeError):
            logger.debug("no saved window state; using the default layout")

    def _save_state(self) -> None:
        data = {"geometry": bytes(self.saveGeometry().toHex().data()).decode(),
                "state": bytes(self.saveState().toHex().data()).decode(), "layout": self.viewer.layout_name()}
        try:
            path = self._state_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data), encoding="utf-8")
        except OSError as exc:
            logger.warning("window state not saved: %s", exc)

    # --- studies ------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the study browser from the index."""
        self.browser.refresh()

    def open_study(self, study_id: int, analyze: str | None = None) -> bool:
        """Open a study's main series in the viewer (and run ``analyze`` on it once it is loaded)."""
        return self.session.open_study(study_id, analyze=analyze)

    def _show_series_details(self, series_id: int) -> None:
        if series_id < 0:
            return
        self.details.setHtml(_series_html(self.catalog.series_details(int(series_id))))

    def open_pacs_dialog(self) -> Any:
        """The query/retrieve dialog (modeless); retrieved studies appear in the browser."""
        from workstation.qt.pacs_dialog import PacsDialog

        try:
            dialog = PacsDialog.from_settings(self.settings, self)
        except WorkstationError as exc:
            QMessageBox.warning(self, "PACS is not configured", str(exc))
            return None
        dialog.studyRetrieved.connect(lambda _uid, _ids: self.refresh())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def _start_pacs_listener(self) -> None:
        """Listen for pushed studies when settings ask for it (``pacs.listen_on_start``)."""
        if not (self.settings.pacs or {}).get("listen_on_start"):
            return
        from workstation.qt.pacs_listener import PacsListenerBridge

        try:
            bridge = PacsListenerBridge(self.settings, self)
            port = bridge.start()
        except WorkstationError as exc:
            self.statusBar().showMessage(f"PACS listener not started: {exc}", 30_000)
            logger.warning("PACS listener not started: %s", exc)
            return
        bridge.arrived.connect(self._pacs_arrival)
        self.pacs_listener = bridge
        self.statusBar().showMessage(f"Listening for studies from PACS on port {port}", 15_000)

    def _pacs_arrival(self, arrival: Any) -> None:
        """A PACS pushed images: show them, and analyse the study if settings ask and the reader is free."""
        self.refresh()
        if arrival.error:
            self._show_problem("Images from PACS could not all be imported", arrival.error)
            return
        self.statusBar().showMessage(f"Received {arrival.added} images from {arrival.calling_ae}", 15_000)
        if self.worklist.arrived(arrival.study_ids):  # worklist.analyze_incoming: queued, the reader stays put
            return
        busy = self.session.current is not None or self.session.worker.is_busy()
        if self.pacs_listener is not None and self.pacs_listener.analyze_on_arrival and arrival.study_ids:
            if busy:  # never pull the reader away from the study on screen
                self.statusBar().showMessage(f"Received {arrival.added} images from {arrival.calling_ae}: "
                                             "open the study to analyse it", 30_000)
            else:
                self.open_study(arrival.study_ids[0], analyze="builtin.ct")

    def _show_problem(self, title: str, text: str) -> None:
        QMessageBox.warning(self, title, text)

    def _confirm_model_code(self, model_id: str, text: str) -> None:
        """Before a first run of a model whose config runs untrusted code: list it, ask, run only on "Yes"."""
        box = QMessageBox(QMessageBox.Icon.Warning, "This model runs code", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        if box.exec() == QMessageBox.StandardButton.Yes:
            self.session.trust_and_run(model_id)
        else:
            self.statusBar().showMessage(f"{model_id} not run: its code was not trusted", 15_000)

    def start_import(self, paths: list[Path] | None) -> None:
        """Import ``paths`` (or the demo study when None) on the import runner; answered on the GUI thread."""
        if self._closed:  # the window is closing: its import runner takes no more work
            return
        catalog = self.catalog
        self.statusBar().showMessage("Importing…")
        self.import_runner.submit("import", lambda _ctx: catalog.import_paths(paths), supersede=False,
                                  on_done=lambda done: self._poster.post(lambda: self._import_answered(done)))

    def _import_answered(self, done: JobDone[Any]) -> None:
        if self._closed or done.status == "cancelled":
            return
        if done.status == "finished":
            self._import_done(done.value)
        elif isinstance(done.error, (WorkstationError, OSError)):
            self._import_failed(str(done.error))
        else:  # a bug: reported, never lost on the runner's thread
            logger.error("import failed", exc_info=done.error)
            self._import_failed(f"unexpected error: {done.error!r}")

    def open_demo(self) -> None:
        """Generate (if needed) and import the demo study, then open it."""
        self._open_after_import = True
        self.start_import(None)

    def _import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import DICOM folder")
        if folder:
            self.start_import([Path(folder)])

    def _import_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Import DICOM files or zip", "",
                                                "DICOM or zip (*.dcm *.zip DICOMDIR *);;All files (*)")
        if files:
            self.start_import([Path(f) for f in files])

    def _import_done(self, result: Any) -> None:
        problems = [r for r in result.rejected
                    if not (r.reason == "not a DICOM file" and Path(r.file).suffix.lower() in NOT_DICOM_SUFFIXES)]
        ignored = len(result.rejected) - len(problems)
        msg = f"Imported {result.added} new files ({result.already_indexed} already indexed)"
        if problems:
            msg += f", {len(problems)} rejected"
        if ignored:
            msg += f", {ignored} other files ignored"
        self.statusBar().showMessage(msg)
        self.refresh()
        if getattr(self, "_open_after_import", False):
            self._open_after_import = False
            if result.study_ids:  # the newest study (the demo brings its prior along): the one to read
                when = {s.id: (s.date, s.time) for s in self.catalog.listing().studies}
                self.open_study(max(sorted(result.study_ids), key=lambda sid: when.get(sid, ("", ""))))
        if problems:
            lines = "\n".join(f"{r.file}: {r.reason}" for r in problems[:20])
            more = f"\n… and {len(problems) - 20} more" if len(problems) > 20 else ""
            QMessageBox.warning(self, "Some files were not imported", lines + more)
        self.import_finished.emit(result)

    def _import_failed(self, message: str) -> None:
        self.statusBar().showMessage("Import failed")
        QMessageBox.critical(self, "Import failed", message)

    # --- drag and drop anywhere on the window -------------------------------------------------
    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Accept local folders and files."""
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Import what was dropped."""
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.start_import(paths)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Save notes and the layout, cancel and join the AI run and loads, wait for imports."""
        self._closed = True
        self._save_state()
        self.report.shutdown()
        if self.pacs_listener is not None:
            self.pacs_listener.stop()
        self.compare.shutdown()
        self.worklist.shutdown()  # before the device runner: its running analysis is cancelled, not waited for
        self.session.shutdown()
        self.device_runner.shutdown(10.0)  # after the panel and the session: the model is released on it
        self.browser.shutdown()
        self.import_runner.shutdown(600.0)  # a running import is finished (the index is never left half-written)
        super().closeEvent(event)


def _series_html(info: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{q['check']}</td><td><b>{q['status']}</b></td><td>{q['detail']}</td>"
        f"<td>{q['action']}</td></tr>" for q in info.get("qa", []))
    shape = "×".join(str(x) for x in info["shape"]) if info.get("shape") else "—"
    spacing = " × ".join(f"{x:g}" for x in info["spacing_mm"]) if info.get("spacing_mm") else "—"
    return (f"<h3>{info['description'] or '(no description)'}</h3>"
            f"<p>{info['modality']} · {info['kind']} · {info['instances']} instances · "
            f"grid {shape} (slices×rows×cols) · spacing {spacing} mm</p>"
            f"<p>{info.get('reason') or ''}</p>"
            f"<table cellpadding='4'><tr><th>Check</th><th>Status</th><th>Found</th><th>Done</th></tr>"
            f"{rows}</table>")
