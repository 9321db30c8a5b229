"""The AI run bar: model picker (filtered by the open series' modality), Run AI, progress, Cancel.

The bar does not run anything: it asks (``runRequested(model_id)``,
``cancelRequested()``, ``runAnywayRequested(model_id)`` after a refusal the
user overrides) and shows what the worker reports (``show_*`` slots,
which take the worker's signal arguments, so ``attach(worker)`` can connect them
directly). The model list comes from ``list_models``, which reads the models
folder's JSON only and never imports torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import Qt, Signal, SignalInstance, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QPushButton, QWidget

if TYPE_CHECKING:
    from inference.remote import RemoteModels
    from workstation.services.runner import JobDone, JobRunner

logger = logging.getLogger(__name__)

MODEL_ROLE = Qt.ItemDataRole.UserRole + 1
ERROR_STYLE = "QLabel { color: #ff8a80; }"
OK_STYLE = "QLabel { color: #a5d6a7; }"
MUTED_STYLE = "QLabel { color: #9aa0a6; }"
MESSAGE_WIDTH = 360
BAR_STYLE = ("QPushButton:disabled, QComboBox:disabled { color: #6b6f75; }"
             " QProgressBar { border: 1px solid #3a3d42; border-radius: 3px; background: #141517; text-align: center; }"
             " QProgressBar::chunk { background: #2f5d8a; }")


class _WorkerSignals(Protocol):
    progress: SignalInstance
    finished: SignalInstance
    failed: SignalInstance
    cancelled: SignalInstance
    deviceDescribed: SignalInstance  # noqa: N815


def models_for(rows: list[dict[str, Any]], modality: str) -> list[dict[str, Any]]:
    """The ``list_models`` rows that take ``modality`` (unusable bundles included, to explain them)."""
    want = modality.upper()
    out = []
    for row in rows:
        mods = [str(m).upper() for m in row.get("modalities") or []]
        if "*" in mods or want in mods or (row.get("problem") and not mods):
            out.append(row)
    return out


class AnalysisBar(QWidget):
    """Model picker, Run AI and Cancel buttons, and the progress of the current run."""

    runRequested = Signal(str)  # noqa: N815 - Qt signal naming
    cancelRequested = Signal()  # noqa: N815
    runAnywayRequested = Signal(str)  # noqa: N815 - the user overrode a refusal (mostly interpolated series)
    remoteListed = Signal(object)  # noqa: N815 - the remote nodes' rows, emitted from the runner's thread

    def __init__(self, models_dir: Path | None, parent: QWidget | None = None, *,
                 remote: RemoteModels | None = None, runner: JobRunner | None = None) -> None:
        super().__init__(parent)
        self.models_dir = models_dir
        self.remote = remote
        self._runner = runner  # an I/O runner for listing the remote nodes' models (they may be slow or down)
        self._remote_rows: list[dict[str, Any]] = []
        self.remoteListed.connect(self._on_remote_listed)
        self.modality: str | None = None
        self.running = False
        self._rows: list[dict[str, Any]] = []
        self._loaded = False
        self.picker = QComboBox()
        self.picker.setMinimumContentsLength(22)
        self.picker.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setToolTip("AI model for the open series (only models for its modality are listed)")
        self._items = QStandardItemModel(self)
        self.picker.setModel(self._items)
        self.picker.currentIndexChanged.connect(self._update_buttons)
        self.run_button = QPushButton("Run AI")
        self.run_button.setToolTip("Analyse the open series with the chosen model")
        self.run_button.clicked.connect(self._run_clicked)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMinimumWidth(260)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel_clicked)
        self.message = QLabel()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setMaximumWidth(MESSAGE_WIDTH)
        self.device = QLabel()
        self.device.setStyleSheet(MUTED_STYLE)
        self.setStyleSheet(BAR_STYLE)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.picker)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress, 1)
        layout.addWidget(self.cancel_button)
        layout.addWidget(self.message)
        layout.addWidget(self.device)
        self.message_text = ""
        self.refusal_box: QMessageBox | None = None
        self.progress.setFormat("No analysis running")
        self._set_idle("")
        self.set_modality(None)

    # --- models --------------------------------------------------------------------
    def reload_models(self) -> None:
        """Re-read the installed models (after installing or removing a bundle)."""
        from workstation.services.models import list_models

        self._loaded = True
        try:
            self._rows = list_models(self.models_dir)
        except Exception:  # a broken models folder must not break the window
            logger.exception("could not list the models in %s", self.models_dir)
            self._rows = []
        self._list_remote()
        self.set_modality(self.modality)

    def _list_remote(self) -> None:
        """Ask the configured remote nodes for their models as a job on the I/O runner (never on this thread)."""
        remote, runner = self.remote, self._runner
        if not remote or runner is None:
            return
        from workstation.services.remote_models import remote_rows

        def done(outcome: JobDone[list[dict[str, Any]]]) -> None:
            if outcome.status == "failed":  # a broken node must not break the window
                logger.warning("could not list the remote models: %s", outcome.error)
            try:
                self.remoteListed.emit(outcome.value or [])
            except RuntimeError:  # the bar was closed meanwhile
                logger.debug("remote models listed after the bar was closed")

        runner.submit("remote-models", lambda _ctx: remote_rows(remote), on_done=done)

    @Slot(object)
    def _on_remote_listed(self, rows: list[dict[str, Any]]) -> None:
        self._remote_rows = list(rows)
        self.set_modality(self.modality)

    def set_modality(self, modality: str | None) -> None:
        """Offer the models for ``modality`` (None: no series open, nothing to run)."""
        if not self._loaded and modality is not None:
            self.modality = modality
            self.reload_models()
            return
        previous = self.current_model_id()
        self.modality = modality
        self._items.clear()
        rows = models_for(self._rows + self._remote_rows, modality) if modality else []
        for row in rows:
            problem = row.get("problem")
            title = str(row.get("title") or row["id"]).split(" (unusable")[0]
            item = QStandardItem(f"{title} (unusable)" if problem else title)
            item.setData(row["id"], MODEL_ROLE)
            mods = "/".join(row.get("modalities") or []) or "?"
            source = {"built-in": "built-in", "remote": f"MONAI Label node {row.get('node')} ({row.get('url')})"}.get(
                str(row.get("source")), f"bundle in {row.get('path')}")
            item.setToolTip(f"Cannot be used: {problem}" if problem
                            else f"{row['id']} {row.get('version', '')} · {mods} · {source}")
            item.setEnabled(not problem)
            self._items.appendRow(item)
        if not rows:
            text = "Open a series first" if not modality else f"No model for {modality} images"
            item = QStandardItem(text)
            item.setEnabled(False)
            item.setToolTip("" if not modality else "Install a MONAI bundle for this modality (workstation models "
                                                    "install ZIP) to analyse it")
            self._items.appendRow(item)
        usable = [i for i in range(self._items.rowCount()) if self._items.item(i).isEnabled()]
        keep = next((i for i in usable if self._items.item(i).data(MODEL_ROLE) == previous), None)
        self.picker.setCurrentIndex(keep if keep is not None else (usable[0] if usable else 0))
        self._update_buttons()

    def model_ids(self) -> list[str]:
        """Ids listed in the picker, usable or not."""
        return [str(d) for i in range(self._items.rowCount())
                if (d := self._items.item(i).data(MODEL_ROLE)) is not None]

    def enabled_model_ids(self) -> list[str]:
        """Ids the user can pick."""
        return [str(self._items.item(i).data(MODEL_ROLE)) for i in range(self._items.rowCount())
                if self._items.item(i).isEnabled() and self._items.item(i).data(MODEL_ROLE) is not None]

    def current_model_id(self) -> str | None:
        """The chosen model's id, if a usable one is chosen."""
        item = self._items.item(self.picker.currentIndex()) if self.picker.currentIndex() >= 0 else None
        if item is None or not item.isEnabled():
            return None
        value = item.data(MODEL_ROLE)
        return str(value) if value is not None else None

    # --- buttons -------------------------------------------------------------------
    @Slot()
    def _update_buttons(self) -> None:
        self.run_button.setEnabled(not self.running and self.current_model_id() is not None)
        self.picker.setEnabled(not self.running)

    @Slot()
    def _run_clicked(self) -> None:
        model_id = self.current_model_id()
        if model_id is not None and not self.running:
            self.runRequested.emit(model_id)

    @Slot()
    def _cancel_clicked(self) -> None:
        if self.running:
            self.cancel_button.setEnabled(False)
            self.progress.setFormat("Cancelling…")
            self.cancelRequested.emit()

    # --- states --------------------------------------------------------------------
    def attach(self, worker: _WorkerSignals) -> None:
        """Show what ``worker`` (an ``AnalysisWorker``) reports."""
        worker.progress.connect(self.show_progress)
        worker.finished.connect(self.show_finished)
        worker.failed.connect(self.show_failed)
        worker.cancelled.connect(self.show_cancelled)
        worker.deviceDescribed.connect(self.show_device)

    def _set_idle(self, text: str, style: str = MUTED_STYLE) -> None:
        self.running = False
        self.cancel_button.setEnabled(False)
        self._set_message(text, style)
        self._update_buttons()

    def _set_message(self, text: str, style: str) -> None:
        """One line beside the bar (elided; the whole text is the tooltip)."""
        self.message_text = text
        metrics = self.message.fontMetrics()
        self.message.setText(metrics.elidedText(text, Qt.TextElideMode.ElideRight, MESSAGE_WIDTH))
        self.message.setToolTip(text)
        self.message.setStyleSheet(style)

    @Slot()
    def show_running(self) -> None:
        """A run was submitted: show it starting (call after ``worker.submit``)."""
        self.running = True
        self.progress.setValue(0)
        self.progress.setFormat("Starting… %p%")
        self.cancel_button.setEnabled(True)
        self._set_message("", MUTED_STYLE)
        self._update_buttons()

    @Slot(int, float, str)
    def show_progress(self, generation: int, fraction: float, stage: str) -> None:
        """Stage text and percent of the current run."""
        if not self.running:
            return
        self.progress.setValue(round(max(0.0, min(1.0, fraction)) * 1000))
        if self.cancel_button.isEnabled():  # keep "Cancelling…" once asked
            text = (stage[:1].upper() + stage[1:]).replace("%", "%%")
            self.progress.setFormat(f"{text} · %p%")

    @Slot(int, object)
    def show_finished(self, generation: int, result: Any) -> None:
        """The run ended with a result."""
        self.progress.setValue(1000)
        self.progress.setFormat("Done · %p%")
        seconds = getattr(getattr(result, "provenance", None), "timings_s", {}).get("total")
        self._set_idle(f"Finished in {seconds:.1f} s" if seconds is not None else "Finished", OK_STYLE)

    @Slot(int, str)
    def show_failed(self, generation: int, message: str) -> None:
        """The run (or the request) failed: say why."""
        self.progress.setValue(0)
        self.progress.setFormat("Failed")
        self._set_idle(message, ERROR_STYLE)

    def show_refused(self, model_id: str, text: str) -> QMessageBox:
        """The analysis was refused before it ran: say why, and offer "Analyse anyway" in a dialog.

        The dialog is window-modal but does not block (``open``); choosing
        "Analyse anyway" emits ``runAnywayRequested(model_id)``.
        """
        self.progress.setValue(0)
        self.progress.setFormat("Refused")
        self._set_idle(text, ERROR_STYLE)
        if self.refusal_box is not None:
            self.refusal_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "Analysis refused", text, QMessageBox.StandardButton.NoButton,
                          self.window())
        box.setObjectName("RefusalBox")
        box.setInformativeText("Most of this series' slices would be made up between the acquired ones, so "
                               "measurements on them would not be reliable. You may analyse it anyway: the "
                               "findings and the draft report will then say so.")
        anyway = box.addButton("Analyse anyway", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen() -> None:
            self.refusal_box = None
            if box.clickedButton() is anyway:
                self.runAnywayRequested.emit(model_id)

        box.finished.connect(chosen)
        self.refusal_box = box
        box.open()
        return box

    @Slot(int)
    def show_cancelled(self, generation: int) -> None:
        """The run stopped on the user's request."""
        self.progress.setValue(0)
        self.progress.setFormat("Cancelled")
        self._set_idle("Cancelled")

    @Slot(str)
    def show_device(self, text: str) -> None:
        """Name the device the worker runs on."""
        self.device.setText(text)
        self.device.setToolTip(f"AI runs on {text}")
