"""The clock of cine: a QTimer on the GUI thread that ticks the viewer model's cine.

The model (``workstation.viewing.cine``) says which plane loops and how fast;
this timer runs while it says so, and each tick moves the cursor by one image,
so a cine loop costs one cached-slice render per frame.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer

from workstation.viewing.cine import CineControl

logger = logging.getLogger(__name__)


class CineTimer(QObject):
    """Runs ``cine.tick`` every ``cine.interval_ms()`` while the model's cine has a plane."""

    def __init__(self, cine: CineControl, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cine = cine
        self.timer = QTimer(self)
        self.timer.timeout.connect(cine.tick)

    def follow(self) -> None:
        """Start, retime or stop the timer to match the model (call on its ``CineChanged``)."""
        if self.cine.plane() is None:
            self.timer.stop()
        else:
            self.timer.start(self.cine.interval_ms())
