"""Where callbacks from worker threads run: the owner's thread, through a ``Post`` function. No Qt.

The job runner calls back on its own thread. State such as "which series is
open" must change on one thread only (the owner's), so every Qt-free service
that reacts to a job takes a ``post`` function: ``post(fn)`` arranges for
``fn()`` to run on the owner's thread, soon, in order. The window passes the
Qt bridge's ``post`` (``workstation.qt.bridge``, which runs ``fn`` on the GUI
thread, like superqt's ``ensure_main_thread``); tests and the command line use
``CallQueue``, which runs posted calls when its owner asks.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]


def run_inline(fn: Callable[[], None]) -> None:
    """A ``Post`` that runs ``fn`` at once on the calling thread (only for single-threaded use)."""
    fn()


class CallQueue:
    """A ``Post`` target without an event loop: calls queue up until the owner runs them.

    ``post`` may be called from any thread; ``run_pending`` and ``wait_until``
    run the queued calls on the calling thread, which is thereby the owner.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def post(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` (any thread)."""
        self._calls.put(fn)

    def run_pending(self, timeout_s: float = 0.0) -> int:
        """Run every queued call, waiting up to ``timeout_s`` for the first; the number run."""
        count = 0
        try:
            fn = self._calls.get(timeout=timeout_s) if timeout_s > 0 else self._calls.get_nowait()
        except queue.Empty:
            return 0
        while True:
            self._run(fn)
            count += 1
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return count

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        """Run queued calls until ``predicate()`` holds (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.run_pending(min(left, 0.05))
        return True

    @staticmethod
    def _run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # one broken callback must not stop the others
            logger.exception("a posted call failed")
