"""The sentence a user sees when something fails: one rule for the command line, the window and its workers.

``inference.errors`` promises that every failure a user can meet is a
``WorkstationError`` whose text names the file or series and the reason; this
module turns that hierarchy (and the few foreign exceptions a user can cause,
such as running out of memory or a folder that cannot be written) into one
sentence. Anything else is a bug: the sentence says so, names the exception, and
points to the log, where the caller has written the traceback.

Qt-free, so the analysis worker, the report draft worker, the export runner and
``workstation`` on the command line say the same thing about the same failure.
"""

from __future__ import annotations

from inference.errors import GeometryError, InterpolatedSeriesError, ModelError, NotAVolumeError, WorkstationError

OUT_OF_MEMORY_ADVICE = "Close other programs or analyse on the CPU."


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine (or the GPU) running out of memory (``torch.OutOfMemoryError`` included)."""
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "out of memory" in str(exc).lower())


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure a user can meet (our hierarchy, memory, a file system refusal), not a bug."""
    return isinstance(exc, WorkstationError | OSError) or is_out_of_memory(exc)


def user_message(exc: BaseException, doing: str) -> str:
    """The sentence a user sees for ``exc``, raised while ``doing`` ("running 'builtin.ct'", "exporting the report").

    Model, geometry and not-a-volume errors get a short prefix that names the
    kind of problem; memory errors a piece of advice; other ``WorkstationError``
    and ``OSError`` their own text (it names the file); anything else is an
    unexpected error whose details are in the log.
    """
    if isinstance(exc, ModelError):
        text = str(exc)
        if "out of memory" in text.lower():
            return f"Out of memory: {text}. {OUT_OF_MEMORY_ADVICE}"
        return f"Model problem: {text}"
    if isinstance(exc, InterpolatedSeriesError):
        return str(exc)
    if isinstance(exc, GeometryError):
        return f"Geometry problem: {exc}"
    if isinstance(exc, NotAVolumeError):
        return f"Not an image volume: {exc}"
    if is_out_of_memory(exc):
        return f"Out of memory while {doing}: the data is too large for the free memory. {OUT_OF_MEMORY_ADVICE}"
    if isinstance(exc, WorkstationError | OSError):
        return str(exc)
    return f"Unexpected error while {doing} ({type(exc).__name__}: {exc}). The details are in the log."
