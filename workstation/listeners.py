"""The one way a Qt-free model or service tells its views what changed: a list of listeners and ``emit``.

The reading session, the analysis and follow-up services, the worklist, the thumbnail service and the
viewer model each hold a ``Listeners`` and publish plain event objects through it. A listener is
called on the thread that emits (a Qt view re-posts to its GUI thread through ``qt/bridge.py``).
One listener that raises is logged and does not stop the others: a broken view must not hide a
result from the rest of the window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

E = TypeVar("E")


class Listeners(Generic[E]):
    """Subscribers to one model's events, in subscription order."""

    def __init__(self, owner: str) -> None:
        self._owner = owner  # named in the log when a listener fails
        self._listeners: list[Callable[[E], None]] = []

    def subscribe(self, listener: Callable[[E], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, event: E) -> None:
        """Give ``event`` to every listener; one that raises is logged and the others still get it."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("a %s listener failed on %s", self._owner, type(event).__name__)

    def clear(self) -> None:
        """Forget every listener (the owner is shutting down)."""
        self._listeners.clear()

    def __len__(self) -> int:
        return len(self._listeners)
