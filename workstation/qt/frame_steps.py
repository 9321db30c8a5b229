"""GUI work cut into small steps, run a batch per event-loop turn so that no frame stalls.

Filling a panel (the report's sentence rows, the findings table) or repainting
the four MPR views at once can take longer than a frame (16 ms) on the GUI
thread, the more so while a job runner's thread holds the GIL. ``FrameSteps``
holds such work as a queue of small callables and runs them a batch at a time,
each batch within ``budget_ms``; the next batch runs from a short timer, so the
paints and timers that came due in between (a cine loop, the cursor) run first,
and the GUI thread's owners of such work take turns: one batch per turn in all.
The first batch runs at once, so what the user asked for starts showing without
delay. A caller that needs everything done now (a test, a selection that needs
every row) calls ``finish``; starting again replaces what was still pending.

``when_quiet`` is the other side of the same rule: work of another thread
that would compete with the drawing for the GIL (the template draft, pure
Python) waits until the GUI thread has drawn what it was drawing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QTimer

logger = logging.getLogger(__name__)

FRAME_BUDGET_MS = 4.0
"""Work in one event-loop turn: well inside a 16 ms frame, the rest is layout and painting."""
QUIET_TICK_MS = 8
"""How often ``when_quiet`` looks at the GUI thread."""
QUIET_TICKS = 3
"""Consecutive on-time looks with no steps pending that make the GUI thread quiet: the layout and paint
requests the last steps posted have been handled by then."""
QUIET_LATE_MS = 4.0
"""A look this much later than asked for means the event loop was busy in between (a layout, a paint)."""
YIELD_MS = 1
"""The pause before the next batch: a real timer, so due timers and paints run in between (a zero-time
single shot is a posted event, delivered in the same pass as the paint it follows)."""

Step = Callable[[], object]


class _Turns:
    """The GUI thread's turns: one owner's batch per event-loop turn, the owners with work taking turns.

    Two owners with work at once (the findings table filling, the views
    repainting after the overlay arrived) would otherwise both run in the same
    timer pass and their changes be painted in one frame.
    """

    def __init__(self) -> None:
        self._owners: deque[FrameSteps] = deque()
        self._scheduled = False

    @property
    def busy(self) -> bool:
        """True while some owner still has steps pending."""
        return any(shiboken6.isValid(o) and o.busy for o in self._owners)

    def want(self, owner: FrameSteps) -> None:
        if owner not in self._owners:
            self._owners.append(owner)
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(YIELD_MS, self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        while self._owners:
            owner = self._owners.popleft()
            if not shiboken6.isValid(owner) or not owner.busy:
                continue  # deleted with its widget, or finished or cancelled since it asked
            try:
                owner._run_batch()
            finally:
                if shiboken6.isValid(owner) and owner.busy:
                    self.want(owner)
            break
        if self._owners and not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(YIELD_MS, self._turn)


_TURNS = _Turns()


class FrameSteps(QObject):
    """A queue of GUI-thread steps, run a batch per event-loop turn, each batch within ``budget_ms``.

    A batch always runs at least one step, so ``budget_ms=0`` runs exactly one
    step per turn (e.g. one view repainted per frame). ``after_batch`` is called
    after every batch (e.g. to refit a scroll area to the rows made so far).
    Every ``FrameSteps`` of the GUI thread shares the turns: one batch per turn in all.
    """

    def __init__(self, parent: QObject, budget_ms: float = FRAME_BUDGET_MS, *,
                 after_batch: Callable[[], object] | None = None) -> None:
        super().__init__(parent)
        self.budget_ms = budget_ms
        self._after_batch = after_batch
        self._pending: deque[Step] = deque()
        self._generation = 0

    @property
    def busy(self) -> bool:
        """True while steps are still pending."""
        return bool(self._pending)

    def start(self, steps: Iterable[Step], *, now: bool = True) -> None:
        """Replace whatever is pending with ``steps``; run the first batch now (``now``) or in a coming turn."""
        self._pending = deque(steps)
        self._generation += 1
        if now:
            self._run_batch()
        if self._pending:
            _TURNS.want(self)

    def add(self, step: Step) -> None:
        """Queue one more step after those pending (run in a coming turn)."""
        self._pending.append(step)
        _TURNS.want(self)

    def cancel(self) -> None:
        """Drop every pending step."""
        self._pending.clear()
        self._generation += 1

    def finish(self) -> None:
        """Run every pending step now (a caller needs all of them done)."""
        self._generation += 1
        ran = bool(self._pending)
        while self._pending:
            self._pending.popleft()()
        if ran and self._after_batch is not None:
            self._after_batch()

    def _run_batch(self) -> None:
        """Run steps until the budget is spent (at least one); a step that restarts or cancels ends the batch."""
        generation = self._generation
        t0 = time.perf_counter()
        while self._pending:
            self._pending.popleft()()
            if generation != self._generation or (time.perf_counter() - t0) * 1000.0 >= self.budget_ms:
                break
        if self._after_batch is not None:
            self._after_batch()


class _QuietWatch(QObject):
    """Calls ``callback`` once the GUI thread is quiet (see ``when_quiet``); deletes itself after."""

    def __init__(self, callback: Callable[[], object], max_wait_ms: int) -> None:
        super().__init__(QCoreApplication.instance())
        self._callback = callback
        self._deadline = time.perf_counter() + max_wait_ms / 1000.0
        self._quiet = 0
        self._last = time.perf_counter()
        self._timer = QTimer(self)
        self._timer.setInterval(QUIET_TICK_MS)
        self._timer.timeout.connect(self._look)
        self._timer.start()

    def _look(self) -> None:
        now = time.perf_counter()
        late = (now - self._last) * 1000.0 - QUIET_TICK_MS
        self._last = now
        self._quiet = self._quiet + 1 if late <= QUIET_LATE_MS and not _TURNS.busy else 0
        if self._quiet >= QUIET_TICKS or now >= self._deadline:
            self._timer.stop()
            self.deleteLater()
            self._callback()


def when_quiet(callback: Callable[[], object], max_wait_ms: int = 500) -> None:
    """Call ``callback`` on the GUI thread once it has no frame steps pending and its event loop keeps time.

    Quiet means ``QUIET_TICKS`` looks in a row, ``QUIET_TICK_MS`` apart, each on
    time and with no ``FrameSteps`` work left: what was being drawn (a result's
    table and overlays, their layout) is on screen. A busy GUI (a cine loop)
    never starves the caller: after ``max_wait_ms`` it is called all the same.
    Call from the GUI thread (post it there from another one).
    """
    _QuietWatch(callback, max_wait_ms)
