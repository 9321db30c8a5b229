"""``FrameSteps`` and ``when_quiet``: GUI work in frame-sized steps, and other threads' work waiting for it.

A template draft started while the GUI thread still drew the analysis result held
the GIL the drawing needed (a 20-30 ms frame in benchmarks/bench_gui_stall.py):
``when_quiet`` is how such work waits until what is being drawn is on screen.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from workstation.qt.frame_steps import FrameSteps, when_quiet


def _slow_step(done: list[float]) -> None:
    time.sleep(0.003)
    done.append(time.perf_counter())


def test_steps_run_one_batch_per_turn_and_all_of_them(qtbot: QtBot) -> None:
    owner = QWidget()
    qtbot.addWidget(owner)
    done: list[float] = []
    steps = FrameSteps(owner, budget_ms=0.0)  # one step per event-loop turn
    steps.start([lambda: _slow_step(done) for _ in range(20)])
    assert len(done) == 1  # the first batch runs at once, the rest in coming turns
    qtbot.waitUntil(lambda: not steps.busy, timeout=5000)
    assert len(done) == 20


def test_when_quiet_waits_until_pending_steps_are_drawn(qtbot: QtBot) -> None:
    owner = QWidget()
    qtbot.addWidget(owner)
    done: list[float] = []
    called: list[float] = []
    steps = FrameSteps(owner, budget_ms=0.0)
    steps.start([lambda: _slow_step(done) for _ in range(40)])
    when_quiet(lambda: called.append(time.perf_counter()), max_wait_ms=10_000)
    qtbot.waitUntil(lambda: bool(called), timeout=10_000)
    assert len(done) == 40, "called while steps were still pending"
    assert called[0] > done[-1]


def test_when_quiet_is_called_soon_when_nothing_is_drawn(qtbot: QtBot) -> None:
    called: list[float] = []
    t0 = time.perf_counter()
    when_quiet(lambda: called.append(time.perf_counter()), max_wait_ms=10_000)
    qtbot.waitUntil(lambda: bool(called), timeout=5000)
    assert called[0] - t0 < 1.0


def test_a_gui_that_never_settles_does_not_starve_the_caller(qtbot: QtBot) -> None:
    """A cine loop keeps the GUI thread busy for good: the waiting work goes on after ``max_wait_ms``."""
    owner = QWidget()
    qtbot.addWidget(owner)
    steps = FrameSteps(owner, budget_ms=0.0)

    def forever() -> None:
        time.sleep(0.001)
        steps.add(forever)

    steps.start([forever])
    called: list[float] = []
    t0 = time.perf_counter()
    try:
        when_quiet(lambda: called.append(time.perf_counter()), max_wait_ms=300)
        qtbot.waitUntil(lambda: bool(called), timeout=5000)
        assert steps.busy
        assert 0.3 <= called[0] - t0 < 3.0
    finally:
        steps.cancel()
