"""The GUI's handle on analyses: Qt signals over the Qt-free ``AnalysisService`` and its device runner.

All the threading lives in ``workstation.services`` (``runner.JobRunner``: one
thread, newest request wins, generation numbers, cancel tokens, coalesced
progress; ``analysis_jobs.AnalysisService``: the engine on that thread, the
current-generation filter). This adapter only turns the service's events into
signals, delivered on the GUI thread through ``workstation.qt.bridge.GuiPoster``:

``progress(gen, fraction, stage)``, ``finished(gen, AnalysisResult)``,
``failed(gen, message)``, ``cancelled(gen)`` and ``deviceDescribed(text)``.

Nothing on the GUI thread waits for the runner, except ``shutdown`` (on quit):
it cancels the running job, stops the thread and joins it.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

from inference.contract import AnalysisRequest
from workstation.qt.bridge import GuiPoster
from workstation.services.analysis_jobs import (
    AnalysisCancelled,
    AnalysisFailed,
    AnalysisFinished,
    AnalysisProgress,
    AnalysisService,
    DeviceDescribed,
    EngineFactory,
)
from workstation.services.interpolation import InterpolationPolicy
from workstation.services.jobs import ResultSink
from workstation.services.runner import JobRunner

logger = logging.getLogger(__name__)


class AnalysisWorker(QObject):
    """Signals for one ``AnalysisService``. Create it on the GUI thread; call ``shutdown`` on quit.

    Pass ``service`` to wrap one that the reading session already uses;
    otherwise one is made (with its own device runner unless ``runner`` is given).
    """

    progress = Signal(int, float, str)
    finished = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)
    deviceDescribed = Signal(str)  # noqa: N815 - Qt signal naming

    def __init__(self, models_dir: Path | None = None, *, device: str = "auto",
                 engine_factory: EngineFactory | None = None, runner: JobRunner | None = None,
                 service: AnalysisService | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._poster = GuiPoster(self)
        self.service = service or AnalysisService(self._poster.post, models_dir=models_dir, device=device,
                                                  engine_factory=engine_factory, runner=runner)
        self.device = self.service.device
        self._unsubscribe = self.service.subscribe(self._on_event)
        app = QCoreApplication.instance()
        if app is not None:  # a last safety net: never leave the thread running at exit
            app.aboutToQuit.connect(self.shutdown)

    @property
    def device_text(self) -> str:
        """How the device was named ("" until the runner has looked)."""
        return self.service.device_text

    def start(self) -> None:
        """Start the runner (it names the device first). ``submit`` starts it too."""
        self.service.start()

    def submit(self, request: AnalysisRequest, series_id: int, *, policy: InterpolationPolicy | None = None,
               label: str = "", keep: ResultSink | None = None) -> int:
        """Run ``request`` (cancelling any earlier one); its generation number. See ``AnalysisService.submit``."""
        return self.service.submit(request, series_id, policy=policy, label=label, keep=keep)

    @Slot()
    def cancel(self) -> None:
        """Ask the current run to stop; ``cancelled`` follows when it has stopped."""
        self.service.cancel()

    def is_busy(self) -> bool:
        """True from ``submit`` until the current generation's outcome arrives."""
        return self.service.is_busy()

    @property
    def generation(self) -> int:
        """The generation number of the newest submitted request (0 before any)."""
        return self.service.generation

    @property
    def series_id(self) -> int | None:
        """The series of the newest submitted request."""
        return self.service.series_id

    def is_running(self) -> bool:
        """True while the runner's thread is alive."""
        return self.service.is_running()

    @Slot()
    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel, stop the runner and join it (the only wait on the GUI thread). True if it stopped."""
        app = QCoreApplication.instance()
        if app is not None and not self.service.closed:
            with contextlib.suppress(RuntimeError, TypeError):  # already disconnected
                app.aboutToQuit.disconnect(self.shutdown)
        return self.service.shutdown(timeout_ms / 1000.0)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, AnalysisProgress):
            self.progress.emit(event.generation, event.fraction, event.stage)
        elif isinstance(event, AnalysisFinished):
            self.finished.emit(event.generation, event.result)
        elif isinstance(event, AnalysisFailed):
            self.failed.emit(event.generation, event.message)
        elif isinstance(event, AnalysisCancelled):
            self.cancelled.emit(event.generation)
        elif isinstance(event, DeviceDescribed):
            self.deviceDescribed.emit(event.text)
