"""The reading session and the job runner without Qt: no QApplication is made in this file.

A small demo study is imported into the isolated index; the Qt-free
``ReadingSession`` opens it (streaming load on the I/O runner), runs the
built-in CT model on the device runner, shows the result, and gives the
drafter's inputs, which the template drafter turns into a grounded draft.
The runner's rules (newest wins, generation numbers, cancel, coalesced
progress, one thread for every job) are tested on plain callables.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from workstation.services.dispatch import CallQueue
from workstation.services.runner import JobContext, JobDone, JobProgress, JobRunner

SHAPE = (40, 96, 96)

REPO = Path(__file__).resolve().parents[1]


def test_the_runner_runs_only_the_newest_job_and_coalesces_progress() -> None:
    runner = JobRunner("test-runner", progress_interval_s=0.05)
    done: list[JobDone[Any]] = []
    progress: list[JobProgress] = []
    gate = threading.Event()
    threads: set[int] = set()

    def blocker(ctx: JobContext) -> str:
        threads.add(threading.get_ident())
        gate.wait(5)
        ctx.token.raise_if_cancelled()
        return "blocker"

    def chatty(ctx: JobContext) -> int:
        threads.add(threading.get_ident())
        for i in range(2000):
            ctx.progress(i / 2000, f"step {i}")
            time.sleep(0.0002)
        return 42

    try:
        first = runner.submit("a", blocker, on_done=done.append)
        second = runner.submit("b", lambda ctx: "superseded", on_done=done.append)
        third = runner.submit("b", chatty, on_done=done.append, on_progress=progress.append)
        assert (first.generation, second.generation, third.generation) == (1, 1, 2)
        runner.cancel("a")
        gate.set()
        deadline = time.monotonic() + 10
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        by = {(d.kind, d.generation): d for d in done}
        assert by[("a", 1)].status == "cancelled"
        assert by[("b", 1)].status == "cancelled", "superseded before it started: never run"
        assert by[("b", 2)].status == "finished" and by[("b", 2)].value == 42
        assert progress and len(progress) <= 2000 * 0.0002 * 20 * 3 + 5, f"{len(progress)} reports"
        assert progress[-1].stage == "step 1999", "the held-back report arrives before the outcome"
        assert len(threads) == 1 and threading.get_ident() not in threads, "one worker thread runs every job"
    finally:
        assert runner.shutdown(5)
    assert not runner.is_running()
    with pytest.raises(RuntimeError, match="shut down"):
        runner.submit("a", lambda ctx: None)


def test_a_failing_job_is_reported_and_the_runner_keeps_serving() -> None:
    runner = JobRunner("test-runner")
    calls = CallQueue()
    done: list[JobDone[Any]] = []

    def boom(ctx: JobContext) -> None:
        raise ValueError("boom")

    try:
        runner.submit("x", boom, on_done=lambda d: calls.post(lambda: done.append(d)))
        runner.submit("y", lambda ctx: 1, on_done=lambda d: calls.post(lambda: done.append(d)))
        assert calls.wait_until(lambda: len(done) == 2, 10)
    finally:
        runner.shutdown(5)
    assert done[0].status == "failed" and isinstance(done[0].error, ValueError)
    assert done[1].status == "finished" and done[1].value == 1


@pytest.fixture
def demo_index(tmp_path: Path) -> Any:
    """The isolated settings with a small demo study imported; the study's id."""
    from workstation.demo import generate_demo_study
    from workstation.index import StudyIndex
    from workstation.index.importer import import_paths
    from workstation.settings import get_settings

    settings = get_settings()
    folder = tmp_path / "demo"
    generate_demo_study(folder, shape=SHAPE)
    with StudyIndex(settings.db_path) as index:
        import_paths([folder], index, workers=1)
        (study,) = index.studies()
    return settings, study.id


def test_a_headless_session_opens_analyses_and_drafts_the_demo_study(demo_index: Any) -> None:
    from workstation.services import session_events as s
    from workstation.services.session import ReadingSession

    settings, study_id = demo_index
    calls = CallQueue()
    session = ReadingSession(settings, calls.post)
    events: list[Any] = []
    session.subscribe(events.append)

    def kinds() -> list[str]:
        return [type(e).__name__ for e in events]

    try:
        assert session.open_study(study_id, analyze="builtin.ct")
        assert isinstance(events[0], s.SeriesOpening) and session.loading
        assert calls.wait_until(lambda: "ResultShown" in kinds(), 180), kinds()
        series_id = session.current.series_id if session.current else -1
        names = kinds()
        assert names.index("VolumeReady") < names.index("SeriesOpened") < names.index("AnalysisLookedUp")
        assert names.index("AnalysisLookedUp") < names.index("AnalysisStarted") < names.index("ResultShown")
        assert any(isinstance(e, s.SlicesLoaded) for e in events)
        assert [e.status for e in events if isinstance(e, s.AiStatusChanged)] == ["running", "done"]
        volume, result = session.volume(), session.result(series_id)
        assert volume is not None and volume.shape == SHAPE and result.labelmap.shape == SHAPE
        assert result.findings.lesions, "the phantom's nodules are found"
        assert not session.analysis.is_busy() and session.analysis.generation == 1

        from inference.drafting import check_draft, make_drafter

        inputs = session.report_inputs(series_id)
        assert inputs is not None and inputs.findings is result.findings
        draft = make_drafter(None, "cpu", None).draft(inputs)
        grounding = check_draft(draft, inputs)
        assert any(draft.sections.values()) and grounding.sentences, "the template drafter wrote a checked report"
    finally:
        assert session.shutdown(10)
    assert not session.analysis.is_running() and not session.io.is_running()
    # what this test drove pulls in no Qt: checked in a fresh interpreter (earlier tests of a run may load Qt)
    probe = ("import sys, workstation.services.session, workstation.services.runner, workstation.services.dispatch;"
             "sys.exit(1 if any(m.startswith('PySide6') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=False).returncode == 0, \
        "the session imports Qt"


def test_reopening_a_series_shows_its_result_without_running_again(demo_index: Any) -> None:
    from workstation.services import session_events as s
    from workstation.services.session import ReadingSession

    settings, study_id = demo_index
    calls = CallQueue()
    session = ReadingSession(settings, calls.post)
    events: list[Any] = []
    session.subscribe(events.append)
    try:
        session.open_study(study_id, analyze="builtin.ct")
        assert calls.wait_until(lambda: any(isinstance(e, s.ResultShown) for e in events), 180)
        assert session.current is not None
        series_id = session.current.series_id
        events.clear()
        assert session.open_series(series_id)
        assert calls.wait_until(lambda: any(isinstance(e, s.AnalysisLookedUp) for e in events), 60)
        assert any(isinstance(e, s.ResultShown) for e in events)
        assert session.analysis.generation == 1, "the remembered result is shown, nothing runs again"
        assert not session.open_series(999_999)
        assert isinstance(events[-1], s.Problem)
    finally:
        session.shutdown(10)
