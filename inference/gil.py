"""Handing the GIL to a waiting thread at the step boundaries of long pure-Python work.

Pure-Python work on a background thread (the grounding check of a draft, ~15 ms)
keeps the GIL until the interpreter's switch interval (5 ms) forces it away, each
time another thread asks for it; the GUI thread asks many times a frame (every Qt
virtual a Python class overrides), so a frame drawn meanwhile took 15-25 ms
(benchmarks/bench_gui_stall.py). ``share_gil`` at a natural step boundary sleeps
a moment, so a thread that waits takes the GIL at once; on the main thread (the
command line, where nothing waits) it does nothing.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)

PAUSE_S = 0.0002
"""Long enough for a waiting thread to wake and take the GIL; ~0.25 ms per step when none waits."""


def share_gil() -> None:
    """Let a thread waiting for the GIL (a GUI thread drawing) run now; call between steps of long Python work."""
    if threading.current_thread() is not threading.main_thread():
        time.sleep(PAUSE_S)
