"""Guard against a binding bug that drops references to ``None`` and ``True`` on Qt calls.

PySide6 6.12.0 on CPython 3.11 decrements ``None``'s reference count once per
call of a method returning ``void`` (``QWidget.update``, ``QPainter.setPen``,
``QFont.setPixelSize``...) and ``True``'s once per ``Signal.emit()``. One paint
of a view makes dozens of void calls and ``True`` starts with a count of a few
hundred, so within seconds of use the interpreter aborts with "none_dealloc:
deallocating None" or "bool_dealloc: deallocating True or False". CPython 3.12
made these objects immortal (PEP 683) and is immune.

The guard detects the bug at run time (a few calls, reference counts compared)
and only then raises the counts of ``None``, ``True`` and ``False`` by 2**40,
which is what immortality amounts to; an unaffected interpreter is never
touched. pyproject.toml excludes 6.12.0 (6.11.3 is free of the bug); the guard
covers an installation where IT put the broken release in anyway.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

_PROBE_CALLS = 16
_applied = False


def _drops(target: object, call: Callable[[], object]) -> bool:
    before = sys.getrefcount(target)
    for _ in range(_PROBE_CALLS):
        call()
    return before - sys.getrefcount(target) >= _PROBE_CALLS // 2


def binding_drops_singletons() -> bool:
    """Whether a void Qt call lowers ``None``'s reference count, or ``Signal.emit`` ``True``'s."""
    from PySide6.QtCore import QObject, QPointF, Signal

    class _Probe(QObject):
        ping = Signal()

    point, probe = QPointF(), _Probe()
    return _drops(None, lambda: point.setX(1.0)) or _drops(True, probe.ping.emit)


def guard_none_refcount() -> bool:
    """Make ``None``/``True``/``False`` effectively immortal when the bug is present; whether the guard is on."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or not binding_drops_singletons():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    _applied = True
    logger.warning("this PySide6 build drops references to None/True on Qt calls (CPython %d.%d); their "
                   "reference counts were raised so the process cannot abort", *sys.version_info[:2])
    return True
