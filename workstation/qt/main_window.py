"""The main window: study browser and series details (the MPR viewer comes later).

Imports run on a worker thread; the GUI thread only receives the finished
result as a signal, so the window never freezes on a large folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
)

from workstation.settings import Settings

logger = logging.getLogger(__name__)

SERIES_ROLE = Qt.ItemDataRole.UserRole + 1


class _ImportSignals(QObject):
    finished = Signal(object)
    failed = Signal(str)


class _ImportTask(QRunnable):
    """Import paths (or the demo study) into the index on a pool thread."""

    def __init__(self, settings: Settings, paths: list[Path] | None) -> None:
        super().__init__()
        self.settings = settings
        self.paths = paths
        self.signals = _ImportSignals()

    def run(self) -> None:
        from inference.errors import WorkstationError
        from workstation.index import StudyIndex, import_paths
        from workstation.services.studies import demo_study

        try:
            with StudyIndex(self.settings.db_path) as index:
                if self.paths is None:
                    _, result = demo_study(self.settings, index)
                else:
                    result = import_paths(self.paths, index, workers=self.settings.import_workers)
            self.signals.finished.emit(result)
        except (WorkstationError, OSError) as exc:
            self.signals.failed.emit(str(exc))


class MainWindow(QMainWindow):
    """Study browser on the left, details of the selected series on the right."""

    import_finished = Signal(object)

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.pool = QThreadPool(self)
        self.setWindowTitle("Radiology Workstation")
        self.resize(1280, 800)
        self.browser = QTreeWidget()
        self.browser.setHeaderLabels(["Study / series", "Modality", "Kind", "Images"])
        header = self.browser.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, header.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, header.ResizeMode.ResizeToContents)
        self.browser.itemSelectionChanged.connect(self._show_selected)
        self.details = QTextBrowser()
        self.details.setPlaceholderText("Select a series to see its geometry and quality report.")
        split = QSplitter()
        split.addWidget(self.browser)
        split.addWidget(self.details)
        split.setSizes([520, 760])
        self.setCentralWidget(split)
        self._build_menus()
        self.statusBar().showMessage("Ready")
        self.refresh()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, key in (
            ("Import &folder…", self._import_folder, QKeySequence.StandardKey.Open),
            ("Import &zip or files…", self._import_files, None),
            ("Open &demo study", self.open_demo, None),
        ):
            action = QAction(text, self)
            action.triggered.connect(slot)
            if key is not None:
                action.setShortcut(key)
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

    def refresh(self) -> None:
        """Reload the study browser from the index."""
        from workstation.index import StudyIndex

        self.browser.clear()
        with StudyIndex(self.settings.db_path) as index:
            for study in index.studies():
                label = f"{display_name(study['patient_name'])} — {display_date(study['date'])} " \
                        f"{study['description'] or ''}".strip()
                top = QTreeWidgetItem([label, "", "", ""])
                for row in index.series(study["id"]):
                    n = str(row.summary.get("instances", ""))
                    child = QTreeWidgetItem([f"#{row.number if row.number is not None else '-'} "
                                             f"{row.description}", row.modality, row.kind, n])
                    child.setData(0, SERIES_ROLE, row.id)
                    top.addChild(child)
                self.browser.addTopLevelItem(top)
                top.setExpanded(True)

    def _show_selected(self) -> None:
        items = self.browser.selectedItems()
        series_id = items[0].data(0, SERIES_ROLE) if items else None
        if series_id is None:
            return
        from workstation.index import StudyIndex
        from workstation.services.studies import series_json

        with StudyIndex(self.settings.db_path) as index:
            info = series_json(index, int(series_id))
        self.details.setHtml(_series_html(info))

    def start_import(self, paths: list[Path] | None) -> None:
        """Import ``paths`` (or the demo study when None) on the worker pool."""
        task = _ImportTask(self.settings, paths)
        task.signals.finished.connect(self._import_done)
        task.signals.failed.connect(self._import_failed)
        self.statusBar().showMessage("Importing…")
        self.pool.start(task)

    def open_demo(self) -> None:
        """Generate (if needed) and import the demo study."""
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
        msg = f"Imported {result.added} new files ({result.already_indexed} already indexed)"
        if result.rejected:
            msg += f", {len(result.rejected)} rejected"
        self.statusBar().showMessage(msg)
        self.refresh()
        if result.rejected:
            lines = "\n".join(f"{r.file}: {r.reason}" for r in result.rejected[:20])
            QMessageBox.warning(self, "Some files were not imported", lines)
        self.import_finished.emit(result)

    def _import_failed(self, message: str) -> None:
        self.statusBar().showMessage("Import failed")
        QMessageBox.critical(self, "Import failed", message)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Wait for running imports so no thread outlives the window."""
        self.pool.waitForDone()
        super().closeEvent(event)


def display_name(pn: str | None) -> str:
    """A DICOM person name (``Family^Given^Middle``) as readers expect it: ``FAMILY, Given Middle``."""
    if not pn:
        return "Anonymous"
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family.upper()}, {rest}" if rest else family.upper()


def display_date(da: str | None) -> str:
    """A DICOM date (``YYYYMMDD``) as ``YYYY-MM-DD``."""
    if da and len(da) == 8 and da.isdigit():
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return da or ""


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
