"""Cooperative cancellation: a token checked between stages, per sliding-window batch, per token."""

from __future__ import annotations

import logging
import threading

from inference.errors import WorkstationError

logger = logging.getLogger(__name__)


class CancelledError(WorkstationError):
    """The user cancelled the run."""


class CancelToken:
    """Set from any thread; checked by the worker at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once ``cancel`` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``CancelledError`` if cancelled."""
        if self._event.is_set():
            raise CancelledError("analysis cancelled")
