"""The one bridge from worker threads to the GUI thread: ``GuiPoster.post(fn)`` runs ``fn`` there.

The Qt-free services (``workstation.services``) call back on the job runner's
thread and hand their reactions to a ``post`` function
(``workstation.services.dispatch.Post``). ``GuiPoster`` is that function for
the window, in the spirit of superqt's ``ensure_main_thread``: a queued signal
carries the callable to a slot on the thread the poster lives on (create it on
the GUI thread). Nothing else in the Qt layer needs its own worker-to-GUI signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

logger = logging.getLogger(__name__)


class GuiPoster(QObject):
    """Runs posted callables on its own (the GUI) thread, in the order they were posted."""

    _posted = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._alive = True
        self._posted.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def post(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` for the GUI thread (any thread); dropped once the poster is gone."""
        if not self._alive:
            return
        try:
            self._posted.emit(fn)
        except RuntimeError:  # the C++ object was deleted while a worker still reported
            self._alive = False

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # the exception hook would show it; one failed callback must not stop the rest
            logger.exception("a callback posted to the GUI thread failed")


def stop_at_quit(stop: Callable[[], object]) -> None:
    """Call ``stop`` (a runner's ``shutdown``) when the application quits.

    A last safety net: job runner threads are not daemons, so one left running
    (a dialog destroyed with its window, never closed) would keep the process alive.
    """
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(stop)
