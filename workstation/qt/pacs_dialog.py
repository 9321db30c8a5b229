"""Query/retrieve dialog: pick a node, search studies, see their series, retrieve into the local index.

Every network call (search, series listing, retrieve) runs as a job on the
dialog's job runners (``workstation.services.runner``: one for queries, one for
retrieves, so a search answers while a study downloads), never on the GUI
thread; results come back through the GUI poster and are dropped when a newer
request superseded them (the runner's generation number). The
retrieve reports progress and can be cancelled; when a study has arrived,
``studyRetrieved(study_uid, index_study_ids)`` tells the main window to
refresh its browser. Closing the dialog cancels what runs and waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inference.cancel import CancelToken
from inference.errors import WorkstationError
from workstation.dicomio.display import dicom_date
from workstation.pacs.nodes import LocalAE, PacsConfig, PacsNode
from workstation.pacs.query import SeriesResult, StudyQuery, StudyResult
from workstation.qt.bridge import GuiPoster, stop_at_quit
from workstation.services.runner import JobContext, JobDone, JobRunner

logger = logging.getLogger(__name__)

STUDY_COLUMNS = ("Date", "Patient", "Patient ID", "Accession", "Modalities", "Description", "Series", "Images")
SERIES_COLUMNS = ("#", "Modality", "Description", "Images")
MODALITIES = ("", "CT", "MR", "PT", "CR", "DX", "MG", "US", "NM", "XA", "SR", "SEG")


def _name(pn: str) -> str:
    """The name as the PACS sent it, components joined (``Family, Given``): what the reader searched for."""
    parts = [p for p in pn.split("^") if p]
    return f"{parts[0]}, {' '.join(parts[1:])}" if len(parts) > 1 else (parts[0] if parts else "")


class PacsDialog(QDialog):
    """Search a PACS and retrieve studies (or chosen series) into the local index."""

    studyRetrieved = Signal(str, list)  # noqa: N815 - Qt signal naming

    def __init__(self, config: PacsConfig, db_path: Path, storage_dir: Path, parent: QWidget | None = None,
                 *, listener: object | None = None, local: LocalAE | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query / Retrieve")
        self.resize(980, 620)
        self.config = config
        self.local = local or config.local
        self.db_path = db_path
        self.storage_dir = storage_dir
        self.listener = listener
        self._poster = GuiPoster(self)
        self.query_runner = JobRunner("pacs-query-runner")
        self.retrieve_runner = JobRunner("pacs-retrieve-runner")
        for runner in (self.query_runner, self.retrieve_runner):
            stop_at_quit(runner.shutdown)
        self._closed = False
        self._cancel: CancelToken | None = None
        self.studies: list[StudyResult] = []
        self.series: list[SeriesResult] = []
        self._build()

    @classmethod
    def from_settings(cls, settings: Any, parent: QWidget | None = None, listener: object | None = None) -> PacsDialog:
        """The dialog for the application's settings (nodes, our AE, index, storage folder)."""
        config = PacsConfig.from_settings(settings)
        return cls(config, settings.db_path, config.storage_path(settings.data_dir), parent, listener=listener)

    # --- layout ---------------------------------------------------------------------
    def _build(self) -> None:
        self.node_box = QComboBox()
        for n in self.config.nodes:
            self.node_box.addItem(n.describe(), n.name)
        if self.config.default_node:
            self.node_box.setCurrentIndex(max(0, self.node_box.findData(self.config.default_node)))
        self.method_box = QComboBox()
        for label, key in (("C-GET", "get"), ("C-MOVE", "move"), ("WADO-RS", "wado")):
            self.method_box.addItem(label, key)
        self.node_box.currentIndexChanged.connect(self._node_changed)
        self.patient_name, self.patient_id, self.accession = QLineEdit(), QLineEdit(), QLineEdit()
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for w in (self.date_from, self.date_to):
            w.setPlaceholderText("YYYY-MM-DD")
        self.patient_name.setPlaceholderText("name or start of it; * and ? allowed")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(list(MODALITIES))
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)

        form = QFormLayout()
        form.addRow("PACS", self.node_box)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Patient ID", self.patient_id)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addRow("Study date", dates)
        form.addRow("Modality", self.modality)
        form.addRow("Accession", self.accession)

        self.study_table = self._table(STUDY_COLUMNS, QAbstractItemView.SelectionMode.SingleSelection)
        self.study_table.itemSelectionChanged.connect(self._study_selected)
        self.series_table = self._table(SERIES_COLUMNS, QAbstractItemView.SelectionMode.ExtendedSelection)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.study_table)
        split.addWidget(self.series_table)

        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setEnabled(False)
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("by"))
        buttons.addWidget(self.method_box)
        buttons.addWidget(self.retrieve_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(close)

        top = QHBoxLayout()
        top.addLayout(form, 1)
        top.addWidget(self.search_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._node_changed()
        if not self.config.nodes:
            self.search_button.setEnabled(False)
            self.status.setText("No PACS node is configured (settings: 'pacs' → 'nodes').")

    @staticmethod
    def _table(columns: tuple[str, ...], mode: QAbstractItemView.SelectionMode) -> QTableWidget:
        t = QTableWidget(0, len(columns))
        t.setHorizontalHeaderLabels(list(columns))
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(mode)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        t.horizontalHeader().setStretchLastSection(True)
        return t

    # --- state ----------------------------------------------------------------------
    def node(self) -> PacsNode:
        """The node picked in the combo box."""
        return self.config.node(self.node_box.currentData())

    def _node_changed(self) -> None:
        if not self.config.nodes:
            return
        node = self.node()
        usable = {"get": node.has_dimse, "move": node.has_dimse, "wado": node.has_dicomweb}
        for i in range(self.method_box.count()):
            item = self.method_box.model().item(i)  # type: ignore[attr-defined]
            item.setEnabled(usable[self.method_box.itemData(i)])
        wanted = node.retrieve_method if usable[node.retrieve_method] else ("wado" if node.has_dicomweb else "get")
        self.method_box.setCurrentIndex(self.method_box.findData(wanted))

    def query(self) -> StudyQuery:
        """The search fields as a query (raises ValueError on a malformed date)."""
        return StudyQuery(self.patient_name.text(), self.patient_id.text(), self.date_from.text(),
                          self.date_to.text(), self.modality.currentText(), self.accession.text())

    def _runner(self, kind: str) -> JobRunner:
        return self.retrieve_runner if kind == "retrieve" else self.query_runner

    def _start(self, kind: str, fn: Callable[[Callable[[int, int], None]], Any],
               done: Callable[[Any], None]) -> None:
        """Run ``fn(progress)`` as a job of ``kind`` (superseding the earlier one); ``done(value)`` on the GUI."""
        if self._closed:  # the dialog is closing: its runners take no more work
            return
        post = self._poster.post

        def work(ctx: JobContext) -> Any:
            return fn(lambda n, total: post(lambda: self._progress(ctx.generation, n, total)))

        self._runner(kind).submit(kind, work, on_done=lambda d: post(lambda: self._answered(kind, d, done)))

    def _answered(self, kind: str, outcome: JobDone[Any], done: Callable[[Any], None]) -> None:
        if self._closed or outcome.generation != self._runner(kind).generation(kind):
            return  # superseded by a newer request, or the dialog is closing
        if outcome.status == "finished":
            done(outcome.value)
        elif outcome.status == "cancelled":
            self._failed(kind, "cancelled")
        elif isinstance(outcome.error, WorkstationError):
            self._failed(kind, str(outcome.error))
        else:  # a bug: reported, never lost on the runner's thread
            logger.error("PACS task failed", exc_info=outcome.error)
            self._failed(kind, f"unexpected error: {outcome.error!r}")

    # --- actions --------------------------------------------------------------------
    def search(self) -> None:
        """Search studies with the fields (on the query runner)."""
        try:
            query, node = self.query(), self.node()
        except (ValueError, WorkstationError) as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"Searching {node.name}…")
        self.search_button.setEnabled(False)

        def work(_progress: Callable[[int, int], None]) -> list[StudyResult]:
            if node.has_dimse:
                from workstation.pacs.dimse import DimseClient

                return DimseClient(node, self.local).find_studies(query, limit=500)
            from workstation.pacs.dicomweb import DicomWebClient

            return DicomWebClient(node).search_studies(query, limit=500)

        self._start("search", work, self._show_studies)

    def _show_studies(self, studies: list[StudyResult]) -> None:
        self.search_button.setEnabled(True)
        self.studies = studies
        self.study_table.setRowCount(len(studies))
        for row, st in enumerate(studies):
            values = (dicom_date(st.date), _name(st.patient_name), st.patient_id, st.accession,
                      "/".join(st.modalities), st.description, st.series_count, st.instance_count)
            for col, v in enumerate(values):
                self.study_table.setItem(row, col, QTableWidgetItem("" if v is None else str(v)))
        self.series_table.setRowCount(0)
        self.retrieve_button.setEnabled(False)
        self.status.setText(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found")

    def _study_selected(self) -> None:
        study = self.selected_study()
        self.retrieve_button.setEnabled(study is not None and self._cancel is None)
        self.series_table.setRowCount(0)
        if study is None:
            return
        node = self.node()

        def work(_progress: Callable[[int, int], None]) -> list[SeriesResult]:
            if node.has_dimse:
                from workstation.pacs.dimse import DimseClient

                return DimseClient(node, self.local).find_series(study.study_uid)
            from workstation.pacs.dicomweb import DicomWebClient

            return DicomWebClient(node).search_series(study.study_uid)

        self._start("series", work, self._show_series)

    def _show_series(self, series: list[SeriesResult]) -> None:
        self.series = series
        self.series_table.setRowCount(len(series))
        for row, s in enumerate(series):
            for col, v in enumerate((s.number, s.modality, s.description, s.instance_count)):
                self.series_table.setItem(row, col, QTableWidgetItem("" if v is None else str(v)))

    def selected_study(self) -> StudyResult | None:
        """The study selected in the table."""
        rows = {i.row() for i in self.study_table.selectedIndexes()}
        return self.studies[min(rows)] if rows and min(rows) < len(self.studies) else None

    def selected_series(self) -> list[str]:
        """SeriesInstanceUIDs selected (empty: the whole study)."""
        rows = sorted({i.row() for i in self.series_table.selectedIndexes()})
        return [self.series[r].series_uid for r in rows if r < len(self.series)]

    def retrieve(self) -> None:
        """Retrieve the selected study (or selected series) on the retrieve runner, with progress and cancel."""
        study = self.selected_study()
        if study is None or self._cancel is not None:
            return
        node, series, method = self.node(), self.selected_series(), self.method_box.currentData()
        token = self._cancel = CancelToken()
        self.retrieve_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Retrieving from {node.name}…")

        def work(progress: Callable[[int, int], None]) -> Any:
            from workstation.pacs.retrieve import retrieve_study

            return retrieve_study(node, self.local, study.study_uid, db_path=self.db_path,
                                  storage_dir=self.storage_dir, series_uids=series, method=method,
                                  listener=self.listener, progress=progress, cancel=token)

        self._start("retrieve", work, self._retrieved)

    def cancel(self) -> None:
        """Ask the running retrieve to stop (what arrived stays in the index)."""
        if self._cancel is not None:
            self._cancel.cancel()
            self.status.setText("Cancelling…")

    def _progress(self, generation: int, done: int, total: int) -> None:
        if self._closed or generation != self.retrieve_runner.generation("retrieve"):
            return
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))

    def _retrieve_finished(self) -> None:
        self._cancel = None
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.retrieve_button.setEnabled(self.selected_study() is not None)

    def _retrieved(self, result: Any) -> None:
        self._retrieve_finished()
        self.status.setText(f"{result.received} image(s) retrieved, {result.already_present} already here "
                            f"({result.seconds:.1f} s)")
        self.studyRetrieved.emit(result.study_uid, list(result.study_ids))

    def _failed(self, kind: str, message: str) -> None:
        if kind == "retrieve":
            self._retrieve_finished()
            message = "Retrieve cancelled; what arrived is kept." if message == "cancelled" else message
        if kind == "search":
            self.search_button.setEnabled(True)
        self.status.setText(message)

    # --- closing --------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 15000) -> None:
        """Cancel what runs and join the runners (called on close); late results are dropped."""
        self._closed = True
        if self._cancel is not None:
            self._cancel.cancel()
        for runner in (self.query_runner, self.retrieve_runner):
            runner.shutdown(timeout_ms / 1000.0)

    def done(self, result: int) -> None:
        """Close the dialog after its threads have stopped."""
        self.shutdown()
        super().done(result)
