"""The one error dialog for exceptions nobody caught (``workstation.logs.install_excepthook``).

The hook logs the exception with its traceback; this module then tells the person at the screen,
with one non-modal dialog: what went wrong in one line and where the details are ("details in the log
file: PATH"). The hook may run on any thread (a ``threading`` worker, a ``QThread``), so it only emits
a signal; the dialog is built on the GUI thread by a queued connection. A second error while the dialog
is open updates it ("N more errors") instead of stacking dialogs, and the application keeps running.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox

from workstation.logs import install_excepthook, log_file

logger = logging.getLogger(__name__)

NOTIFIER = "qt-dialog"
TITLE = "Unexpected error"


class ErrorReporter(QObject):
    """Lives on the GUI thread; ``notify`` may be called from any thread."""

    raised = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.dialog: QMessageBox | None = None
        self.more = 0
        self.raised.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def notify(self, line: str) -> None:
        """Ask for the dialog (thread-safe: queued to the GUI thread)."""
        self.raised.emit(line)

    def _details(self) -> str:
        path = log_file()
        where = f"Details in the log file: {path}" if path is not None else "Details were logged."
        return where if not self.more else f"{self.more} more error(s) since.\n{where}"

    @Slot(str)
    def _show(self, line: str) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.more += 1
            self.dialog.setInformativeText(self._details())
            return
        self.more = 0
        box = QMessageBox(QMessageBox.Icon.Critical, TITLE, line, QMessageBox.StandardButton.Close)
        box.setInformativeText(self._details())
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.destroyed.connect(self._forget)
        self.dialog = box
        box.show()  # never exec(): the event loop, and the work in it, go on

    @Slot()
    def _forget(self) -> None:
        self.dialog = None


_reporter: ErrorReporter | None = None


def install_error_dialog(app: QApplication) -> ErrorReporter:
    """Install the exception hook with the dialog as its notifier (once per QApplication)."""
    global _reporter
    if _reporter is None or _reporter.parent() is not app:
        _reporter = ErrorReporter(app)
    install_excepthook(NOTIFIER, _reporter.notify)
    return _reporter
