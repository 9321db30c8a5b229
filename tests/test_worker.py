"""The inference worker thread: real built-in analysis, progress, cancel, superseded requests, errors, shutdown.

Every test runs the real ``AnalysisWorker`` thread; most run the real built-in CT
model on the demo phantom (small grid: about 0.3 s per run; the full demo grid
where a run must last long enough to be cancelled or interrupted).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from inference import AnalysisRequest, GeometryError, LabelTable, ModelOutput, RunContext, Volume
from inference.contract import AnalysisResult, ProgressCallback
from inference.engine import Engine
from workstation.qt.worker import AnalysisWorker
from workstation.services.jobs import ProgressMailbox, describe_device, failure_message

SMALL = (40, 96, 96)
LARGE = (120, 256, 256)


def phantom_volume(shape: tuple[int, int, int], flip: bool = False) -> Volume:
    """The demo chest phantom (CT, HU) on an axial grid of ``shape``."""
    from workstation.demo import build_phantom

    ph = build_phantom(shape)
    hu = ph.hu[:, :, ::-1].copy() if flip else ph.hu
    return Volume(hu, ph.grid.affine, modality="CT", units="HU")


@pytest.fixture(scope="module")
def small() -> Volume:
    return phantom_volume(SMALL)


@pytest.fixture(scope="module")
def large() -> Volume:
    return phantom_volume(LARGE)


class Recorder:
    """Collects every signal of a worker, with the thread each slot ran on."""

    def __init__(self, worker: AnalysisWorker) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        for name in ("progress", "finished", "failed", "cancelled", "deviceDescribed"):
            getattr(worker, name).connect(self._make(name))

    def _make(self, name: str) -> Callable[..., None]:
        def slot(*args: Any) -> None:
            self.threads.add(threading.get_ident())
            self.events.append((name, args))
        return slot

    def of(self, name: str) -> list[Any]:
        return [args for n, args in self.events if n == name]


@pytest.fixture
def make_worker(qtbot: QtBot) -> Iterator[Callable[..., AnalysisWorker]]:
    """Workers that are always shut down, and checked to leave no running thread."""
    made: list[AnalysisWorker] = []

    def make(**kwargs: Any) -> AnalysisWorker:
        worker = AnalysisWorker(None, **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        assert worker.shutdown(10_000), "the inference thread did not stop"
        assert not worker.is_running()


class ThreadRecordingEngine(Engine):
    """The real engine, noting which thread each run happens on."""

    def __init__(self) -> None:
        super().__init__(None)
        self.run_threads: list[int] = []

    def run(self, request: AnalysisRequest, progress: ProgressCallback = lambda f, s: None,
            cancel: Any = None) -> AnalysisResult:
        self.run_threads.append(threading.get_ident())
        return super().run(request, progress, cancel)


def test_builtin_analysis_runs_on_the_worker_thread(qtbot: QtBot, make_worker: Any, small: Volume) -> None:
    engines: list[ThreadRecordingEngine] = []

    def factory() -> Engine:
        engines.append(ThreadRecordingEngine())
        return engines[-1]

    worker = make_worker(engine_factory=factory)
    rec = Recorder(worker)
    request = AnalysisRequest(small, "builtin.ct", "cpu")
    with qtbot.waitSignal(worker.finished, timeout=120_000) as blocker:
        gen = worker.submit(request, series_id=7)
        assert worker.is_busy()
    assert blocker.args[0] == gen == worker.generation and worker.series_id == 7
    result = blocker.args[1]
    assert result.request is request and result.labelmap.shape == small.shape
    assert {s.name for s in result.findings.structures} >= {"lung_right", "lung_left", "body"}
    assert result.findings.lesions, "the phantom's nodules are found"
    assert not worker.is_busy()
    # progress arrived, for this generation, in order, within [0, 1], with stage text
    progress = rec.of("progress")
    assert progress, "no progress reached the GUI"
    assert all(g == gen and 0.0 <= f <= 1.0 and s for g, f, s in progress)
    assert [f for _, f, _ in progress] == sorted(f for _, f, _ in progress)
    # the device was named before the result, on the worker thread; every signal arrived on the GUI thread
    qtbot.waitUntil(lambda: bool(rec.of("deviceDescribed")), timeout=10_000)
    assert "CPU" in worker.device_text or "CUDA" in worker.device_text or "MPS" in worker.device_text
    assert rec.threads == {threading.get_ident()}
    (engine,) = engines
    assert engine.run_threads and threading.get_ident() not in engine.run_threads
    assert not rec.of("failed") and not rec.of("cancelled")


class ChattyModel:
    """Reports progress thousands of times (like per-batch or per-token reports), then a threshold map."""

    id = "test.chatty"
    version = "1"
    title = "Chatty"
    modalities = ("CT",)

    def __init__(self, seconds: float = 0.8, reports: int = 20_000) -> None:
        self.seconds, self.reports = seconds, reports

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        for i in range(self.reports):
            ctx.stage(i / self.reports, f"batch {i}")
            time.sleep(self.seconds / self.reports)
        return ModelOutput((volume.array > 0).astype(np.uint8), LabelTable.from_names(["positive"]))


class SlowModel(ChattyModel):
    """Runs for a long time, checking the cancel token every 10 ms."""

    id = "test.slow"

    def __init__(self) -> None:
        super().__init__(seconds=60.0, reports=6000)


class TestEngine(Engine):
    """The engine with extra test models; ``raise_on_run`` makes ``run`` itself fail."""

    __test__ = False

    def __init__(self, raise_on_run: BaseException | None = None) -> None:
        super().__init__(None)
        self.raise_on_run = raise_on_run

    def _builtin(self) -> list[Any]:
        return [*super()._builtin(), ChattyModel(), SlowModel()]

    def run(self, request: AnalysisRequest, progress: ProgressCallback = lambda f, s: None,
            cancel: Any = None) -> AnalysisResult:
        if self.raise_on_run is not None and request.model_id == "test.raise":
            raise self.raise_on_run
        return super().run(request, progress, cancel)


def test_progress_is_throttled(qtbot: QtBot, make_worker: Any, small: Volume) -> None:
    worker = make_worker(engine_factory=TestEngine)
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.deviceDescribed, timeout=60_000):
        worker.start()
    start = time.perf_counter()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.submit(AnalysisRequest(small, "test.chatty", "cpu"), 1)
    elapsed = time.perf_counter() - start
    n = len(rec.of("progress"))
    assert 3 <= n <= elapsed * 20 + 2, f"{n} progress signals in {elapsed:.2f} s (at most ~20/s)"
    stages = [s for _, _, s in rec.of("progress")]
    assert len(set(stages)) == n, "only changed reports are sent"


def test_cancel_stops_a_builtin_run_promptly(qtbot: QtBot, make_worker: Any, large: Volume) -> None:
    worker = make_worker()
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.progress, timeout=120_000,
                          check_params_cb=lambda g, f, s: f >= 0.1):
        gen = worker.submit(AnalysisRequest(large, "builtin.ct", "cpu"), 1)
    t0 = time.perf_counter()
    with qtbot.waitSignal(worker.cancelled, timeout=10_000) as blocker:
        worker.cancel()
        assert worker.is_busy(), "busy until the thread has really stopped"
    assert blocker.args == [gen]
    assert time.perf_counter() - t0 < 5.0
    qtbot.wait(300)
    assert not rec.of("finished") and not rec.of("failed")
    assert not worker.is_busy()


def test_only_the_latest_request_is_answered(qtbot: QtBot, make_worker: Any, small: Volume) -> None:
    worker = make_worker()
    rec = Recorder(worker)
    first = AnalysisRequest(small, "builtin.ct", "cpu")
    second = AnalysisRequest(phantom_volume(SMALL, flip=True), "builtin.ct", "cpu")
    third = AnalysisRequest(small, "builtin.ct", "cpu")
    # two submits in a row: the first never starts
    with qtbot.waitSignal(worker.finished, timeout=120_000) as blocker:
        worker.submit(first, 1)
        gen2 = worker.submit(second, 2)
    assert blocker.args[0] == gen2 and blocker.args[1].request is second
    # a submit while a run is going: the running one is cancelled and dropped
    with qtbot.waitSignal(worker.finished, timeout=120_000) as blocker:
        with qtbot.waitSignal(worker.progress, timeout=60_000):
            gen3 = worker.submit(AnalysisRequest(phantom_volume(LARGE), "builtin.ct", "cpu"), 3)
        gen4 = worker.submit(third, 4)
    assert blocker.args[0] == gen4 and blocker.args[1].request is third
    qtbot.wait(500)
    assert [a[0] for a in rec.of("finished")] == [gen2, gen4]
    assert not rec.of("cancelled") and not rec.of("failed"), "superseded runs are dropped silently"
    assert {g for g, _, _ in rec.of("progress")} <= {gen2, gen3, gen4}


def test_failures_are_reported_and_the_thread_survives(qtbot: QtBot, make_worker: Any, small: Volume,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    worker = make_worker()
    with qtbot.waitSignal(worker.failed, timeout=60_000) as blocker:
        gen = worker.submit(AnalysisRequest(small, "no.such.model", "cpu"), 1)
    assert blocker.args[0] == gen
    assert "Model problem" in blocker.args[1] and "unknown model 'no.such.model'" in blocker.args[1]
    mr = Volume(small.array, small.affine, modality="MR")
    with qtbot.waitSignal(worker.failed, timeout=60_000) as blocker:
        worker.submit(AnalysisRequest(mr, "builtin.ct", "cpu"), 1)
    assert "for CT images, not MR" in blocker.args[1]
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.submit(AnalysisRequest(small, "builtin.ct", "cpu"), 1)


@pytest.mark.parametrize(("error", "expected", "traceback_logged"), [
    (GeometryError("slices are not parallel"), "Geometry problem: slices are not parallel", False),
    (MemoryError(), "Out of memory", False),
    (ValueError("boom"), "Unexpected error while running 'test.raise' (ValueError: boom)", True),
])
def test_errors_name_the_problem(qtbot: QtBot, make_worker: Any, small: Volume, caplog: pytest.LogCaptureFixture,
                                 error: BaseException, expected: str, traceback_logged: bool) -> None:
    worker = make_worker(engine_factory=lambda: TestEngine(raise_on_run=error))
    caplog.set_level(logging.INFO, logger="workstation")
    with qtbot.waitSignal(worker.failed, timeout=60_000) as blocker:
        worker.submit(AnalysisRequest(small, "test.raise", "cpu"), 1)
    assert expected in blocker.args[1]
    logged = [r for r in caplog.records if r.exc_info and r.name.startswith("workstation")]
    assert bool(logged) == traceback_logged
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.submit(AnalysisRequest(small, "test.chatty", "cpu"), 1)


def test_an_engine_that_cannot_start_is_reported(qtbot: QtBot, make_worker: Any, small: Volume) -> None:
    def factory() -> Engine:
        raise OSError("models folder unreadable")

    worker = make_worker(engine_factory=factory)
    with qtbot.waitSignal(worker.failed, timeout=60_000) as blocker:
        worker.submit(AnalysisRequest(small, "builtin.ct", "cpu"), 1)
    assert "engine could not start" in blocker.args[1] and "models folder unreadable" in blocker.args[1]


def test_shutdown_during_a_run_returns_quickly_and_emits_nothing(qtbot: QtBot, make_worker: Any,
                                                                 large: Volume) -> None:
    worker = make_worker()
    rec = Recorder(worker)
    with qtbot.waitSignal(worker.progress, timeout=120_000, check_params_cb=lambda g, f, s: f >= 0.1):
        worker.submit(AnalysisRequest(large, "builtin.ct", "cpu"), 1)
    t0 = time.perf_counter()
    assert worker.shutdown(10_000)
    assert time.perf_counter() - t0 < 5.0
    assert not worker.is_running() and not worker.is_busy()
    n = len(rec.events)
    qtbot.wait(300)
    assert len(rec.events) == n, "nothing is emitted after shutdown"
    assert not rec.of("finished")
    with pytest.raises(RuntimeError, match="shut down"):
        worker.submit(AnalysisRequest(large, "builtin.ct", "cpu"), 1)


def test_shutdown_before_start_and_twice_is_safe(make_worker: Any) -> None:
    worker = make_worker()
    assert worker.shutdown(1000) and worker.shutdown(1000)
    assert not worker.is_running()


def test_mailbox_keeps_only_the_newest_report() -> None:
    box = ProgressMailbox()
    assert box.take() is None
    for i in range(100):
        box.put(3, i / 100, f"step {i}")
    report = box.take()
    assert report is not None and (report.generation, report.stage) == (3, "step 99")
    assert box.take() is None
    box.put(1, 7.0, "clamped")
    report = box.take()
    assert report is not None and report.fraction == 1.0


def test_failure_messages() -> None:
    from inference import ModelError, NotAVolumeError

    assert failure_message(ModelError("model 'x' ran out of memory on GPU A"), "x").startswith("Out of memory")
    assert failure_message(NotAVolumeError("series 3: a document"), "x") == "Not an image volume: series 3: a document"

    class OutOfMemoryError(RuntimeError):
        pass

    assert failure_message(OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "m").startswith(
        "Out of memory while running 'm'")


def test_one_user_message_for_every_worker() -> None:
    """The analysis worker, the draft worker, the export runner and the CLI share ``user_message``."""
    from inference import GeometryError
    from workstation.services.failures import is_expected, user_message

    assert user_message(GeometryError("gaps"), "exporting the report") == "Geometry problem: gaps"
    assert user_message(PermissionError("/out: permission denied"), "exporting the report") == (
        "/out: permission denied")
    bug = user_message(ValueError("boom"), "drafting the report")
    assert bug.startswith("Unexpected error while drafting the report (ValueError: boom)") and "log" in bug
    assert is_expected(OSError("disk full")) and not is_expected(ValueError("boom"))


def test_describe_device_reports_an_unavailable_device() -> None:
    assert describe_device("tpu").startswith("no usable device: unknown device 'tpu'")


GUI_THREAD_SCRIPT = textwrap.dedent("""
    import json, os, sys, threading, importlib.abc
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    seen = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "monai", "transformers"):
                seen.append((name, threading.current_thread() is threading.main_thread()))
            return None

    sys.meta_path.insert(0, Spy())
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication
    from workstation.qt.worker import AnalysisWorker
    from workstation.qt.panels import AnalysisBar, FindingsPanel, NotesPanel
    from workstation.demo import build_phantom
    from inference import AnalysisRequest, Volume

    app = QApplication([])
    bar = AnalysisBar(None)
    bar.set_modality("CT")
    worker = AnalysisWorker(None)
    bar.attach(worker)
    before = "torch" in sys.modules
    ph = build_phantom((24, 64, 64))
    out = {}
    loop = QEventLoop()
    worker.finished.connect(lambda g, r: (out.update(labels=int(r.labelmap.max())), loop.quit()))
    worker.failed.connect(lambda g, m: (out.update(failed=m), loop.quit()))
    worker.submit(AnalysisRequest(Volume(ph.hu, ph.grid.affine, modality="CT", units="HU"), "builtin.ct", "cpu"), 1)
    QTimer.singleShot(120000, loop.quit)
    loop.exec()
    app.processEvents()
    worker.shutdown(10000)
    out.update(before=before, after="torch" in sys.modules, device=worker.device_text, bar=bar.device.text(),
               main_thread_imports=sorted({n for n, main in seen if main}), worker_imports=len(seen))
    print(json.dumps(out))
""")


def test_the_gui_thread_never_imports_torch() -> None:
    res = subprocess.run([sys.executable, "-c", GUI_THREAD_SCRIPT], capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "failed" not in out and out["labels"] > 0
    assert out["before"] is False, "creating the worker and the panels imported torch"
    assert out["after"] is True and out["worker_imports"] > 0, "torch was loaded, by the worker thread"
    assert out["main_thread_imports"] == [], f"the GUI thread imported {out['main_thread_imports']}"
    assert out["device"] and out["bar"] == out["device"]
