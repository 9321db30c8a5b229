"""The window's storage listener: studies a PACS pushes appear in the browser (and may be analysed).

The listener itself (``workstation.pacs.StorageListener``) runs on pynetdicom's
threads and imports what arrives into the index there; this bridge only turns
its arrival callback into a queued Qt signal, so the GUI thread learns about a
new study without ever waiting on the network.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal

from workstation.pacs.listener import Arrival, StorageListener
from workstation.pacs.nodes import PacsConfig
from workstation.settings import Settings

logger = logging.getLogger(__name__)


class PacsListenerBridge(QObject):
    """Owns a ``StorageListener`` configured from settings; ``arrived(Arrival)`` on the GUI thread."""

    arrived = Signal(object)
    _fromListener = Signal(object)  # noqa: N815 - emitted on the listener's thread, delivered queued

    def __init__(self, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.config = PacsConfig.from_settings(settings)
        local = self.config.local
        callers = self.config.known_callers() if local.require_known_callers else None
        self.listener = StorageListener(local, self.config.storage_path(settings.data_dir), settings.db_path,
                                        allowed_callers=callers, on_arrival=self._on_arrival)
        self._fromListener.connect(self.arrived, Qt.ConnectionType.QueuedConnection)

    @property
    def analyze_on_arrival(self) -> bool:
        """Whether arriving studies should be analysed with the default model."""
        return bool(self.config.analyze_on_arrival)

    def start(self) -> int:
        """Start listening; the bound port (raises ``PacsError`` with the reason if the port is taken)."""
        return self.listener.start()

    def stop(self) -> None:
        """Stop listening (associations in progress are aborted)."""
        self.listener.stop()

    @property
    def running(self) -> bool:
        """True while listening."""
        return self.listener.running

    def _on_arrival(self, arrival: Arrival) -> None:
        logger.info("PACS push from %s: %d added, %d rejected", arrival.calling_ae, arrival.added, arrival.rejected)
        self._fromListener.emit(arrival)
