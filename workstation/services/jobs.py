"""Analysis jobs without Qt: the job record, the latest-progress mailbox, device naming, one run.

``workstation.services.analysis_jobs`` runs these on the device runner
(``workstation.services.runner``), and the Qt worker (``workstation.qt.worker``)
only turns its events into signals, so the rules that matter (which outcome a run
has, what message a failure shows, how progress is coalesced) can be read and
tested without an event loop.

Nothing here imports torch: ``describe_device`` and ``run_job`` reach it only
through the engine, and they are called on the device runner's thread.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from inference.cancel import CancelledError, CancelToken
from inference.contract import AnalysisRequest, AnalysisResult, DeviceChoice
from inference.engine import Engine
from inference.errors import WorkstationError
from workstation.services.failures import user_message
from workstation.services.interpolation import InterpolationPolicy, run_checked

logger = logging.getLogger(__name__)

OutcomeKind = Literal["finished", "failed", "cancelled"]
ResultSink = Callable[[AnalysisResult], object]


@dataclass(frozen=True)
class Job:
    """One submitted analysis: its generation number, the immutable request, the series and its cancel token."""

    generation: int
    request: AnalysisRequest
    series_id: int
    token: CancelToken = field(default_factory=CancelToken, compare=False)
    policy: InterpolationPolicy = field(default_factory=lambda: InterpolationPolicy(hint=""))
    label: str = ""
    keep: ResultSink | None = field(default=None, compare=False)  # e.g. the analysis store; see ``keep_result``


@dataclass(frozen=True)
class Outcome:
    """How a job ended: exactly one of a result, an error message, or a cancel."""

    kind: OutcomeKind
    generation: int
    result: AnalysisResult | None = None
    message: str = ""


@dataclass(frozen=True)
class ProgressReport:
    """The latest progress of one job."""

    generation: int
    fraction: float
    stage: str


class ProgressMailbox:
    """Holds only the newest progress report; written by the worker thread, read by the GUI thread.

    A model may report progress thousands of times (per sliding-window batch, per
    generated token). Posting each report as an event would flood the GUI's event
    queue; instead the worker overwrites one slot and the GUI reads it on a timer,
    so the GUI sees at most one report per tick and never a stale one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: ProgressReport | None = None

    def put(self, generation: int, fraction: float, stage: str) -> None:
        """Replace the stored report (any thread)."""
        report = ProgressReport(generation, max(0.0, min(1.0, float(fraction))), stage)
        with self._lock:
            self._report = report

    def take(self) -> ProgressReport | None:
        """The newest report since the last ``take``, or None (any thread)."""
        with self._lock:
            report, self._report = self._report, None
        return report


def device_label(choice: DeviceChoice) -> str:
    """How the status bar names a device: ``NVIDIA H100 80GB HBM3 (CUDA)``, ``CPU (2 threads)``."""
    if choice.device.startswith("cuda"):
        return f"{choice.name.removeprefix('GPU ').strip()} (CUDA)"
    return choice.name


def describe_device(preference: str = "auto") -> str:
    """Name the device ``preference`` resolves to. Imports torch: call it on the worker thread only."""
    from inference.device import choose_device

    try:
        return device_label(choose_device(preference))
    except WorkstationError as exc:
        return f"no usable device: {exc}"
    except Exception as exc:  # a broken torch install must not kill the worker thread
        logger.exception("could not query the compute device")
        return f"device unknown ({type(exc).__name__}: {exc})"


WARM_MODULES = ("inference.builtin_ct.model", "inference.findings.measure", "scipy.ndimage", "inference.bundles",
                "inference.drafting", "workstation.services.reporting",  # the report context the window builds next
                "PIL.ImageDraw")  # the soft-tissue step draws with it; its FreeType library loads holding the GIL


def warm_up() -> None:
    """Import the analysis pipeline now, on the idle worker thread, rather than inside the first run.

    Executing a module's code holds the GIL, so first-run imports on the worker
    stalled the GUI thread by ~150 ms (measured by benchmarks/bench_gui_stall.py);
    done right after launch, while the reader is still choosing a study, nobody notices.
    """
    import importlib

    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # a broken optional stack shows up, with its reason, when a model needs it
            logger.warning("could not preload %s", name, exc_info=True)
    _freeze_start_up_objects()


_frozen = threading.Event()


def _freeze_start_up_objects() -> None:
    """Once per process: collect, then move every live object out of the cyclic collector's view.

    What start-up and the warm-up imports made lives as long as the process; left in view, each full
    collection walks all of it (~230k objects, ~120 ms holding the GIL: benchmarks/bench_gui_stall.py)
    in whatever frame it lands. Garbage is collected first, so nothing dead is kept; objects made later
    are collected as usual.
    """
    if _frozen.is_set():
        return
    _frozen.set()
    gc.collect()
    gc.freeze()


class _HasToken(Protocol):
    @property
    def token(self) -> CancelToken: ...


def supersede(active: _HasToken | None, generation: int) -> int:
    """Cancel the running job, if any, and return the next generation number.

    The workers run the newest request only: a new submission cancels the one
    before, and outcomes of older generations are dropped when they arrive.
    """
    if active is not None:
        active.token.cancel()
    return generation + 1


def failure_message(exc: BaseException, model_id: str) -> str:
    """The user's sentence for an analysis failure (``workstation.services.failures.user_message``)."""
    return user_message(exc, f"running '{model_id}'")


class ProgressSink(Protocol):
    """Where ``run_job`` reports progress: a ``ProgressMailbox``, or the job runner's coalescing context."""

    def put(self, generation: int, fraction: float, stage: str) -> None: ...


def run_job(engine: Engine, job: Job, mailbox: ProgressSink) -> Outcome:
    """Run ``job`` on ``engine`` (on the calling thread) and classify how it ended.

    The interpolation rule applies (``job.policy``): a mostly interpolated
    volume fails with the refusal's message unless the policy allows it.

    A job cancelled before it starts is not run. A run whose token was set while
    it was finishing counts as cancelled: after ``cancel`` the user never gets a
    result. Unexpected exceptions are logged with their traceback. Nothing about
    the patient or the notes is logged, only the model, the grid shape and timings.
    """
    gen = job.generation
    model_id = job.request.model_id
    if job.token.cancelled:
        return Outcome("cancelled", gen)
    t0 = time.perf_counter()
    logger.info("analysis %d: %s on a %s grid", gen, model_id, "x".join(map(str, job.request.volume.shape)))
    try:
        result = run_checked(engine, job.request, label=job.label or f"series {job.series_id}", policy=job.policy,
                             progress=lambda f, s: mailbox.put(gen, f, s), cancel=job.token)
        job.token.raise_if_cancelled()  # cancelled while finishing: the user asked for no result
    except CancelledError:
        logger.info("analysis %d cancelled after %.2f s", gen, time.perf_counter() - t0)
        return Outcome("cancelled", gen)
    except (WorkstationError, MemoryError) as exc:
        logger.warning("analysis %d failed: %s", gen, exc)
        return Outcome("failed", gen, message=failure_message(exc, model_id))
    except Exception as exc:
        logger.exception("analysis %d: unexpected error in %s", gen, model_id)
        return Outcome("failed", gen, message=failure_message(exc, model_id))
    logger.info("analysis %d finished in %.2f s", gen, time.perf_counter() - t0)
    return Outcome("finished", gen, result=result)


def keep_result(job: Job, outcome: Outcome) -> bool:
    """Hand a finished job's result to its sink (``job.keep``: the analysis store); True if it was kept.

    Called on the worker thread just before the result goes to the GUI: the
    write (the label map gzip-compressed, ~65 ms for the demo) then never
    competes with the frames that draw the result (done concurrently, it made
    them 12-28 ms late instead of 2-7 ms: benchmarks/bench_gui_stall.py), and
    the store holds the analysis by the time the reader sees it. A sink that
    fails is logged and reported as False, never raised: the result stays valid.
    """
    if job.keep is None or outcome.kind != "finished" or outcome.result is None:
        return False
    try:
        job.keep(outcome.result)
    except Exception:  # a full disk or a vanished index must not kill the worker thread
        logger.warning("analysis %d: the result could not be kept", job.generation, exc_info=True)
        return False
    return True
