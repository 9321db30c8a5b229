"""The background worklist without Qt: no QApplication is made in this file.

Small demo studies (different seeds: different patients' UIDs) are imported
into the isolated index and queued; the real built-in CT model analyses them on
a real job runner. What a user would check: the studies are analysed in the
order they arrived, a study that cannot be analysed says why and the next one
is still analysed, a reader's own analysis goes first (the background one is
pre-empted and redone afterwards), and the results are in the analysis store
where the reading session and the study browser find them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from workstation.services.dispatch import CallQueue
from workstation.services.runner import JobRunner
from workstation.services.worklist import Worklist, WorkStatusChanged

SHAPE = (40, 96, 96)
BIG = (100, 192, 192)


def _import_demo_studies(tmp_path: Path, seeds: list[int], shape: tuple[int, int, int] = SHAPE) -> list[int]:
    """One small demo study per seed, imported one by one; their study ids in the same order."""
    from workstation.demo import generate_demo_study
    from workstation.index import StudyIndex
    from workstation.index.importer import import_paths
    from workstation.settings import get_settings

    ids = []
    with StudyIndex(get_settings().db_path) as index:
        for seed in seeds:
            folder = tmp_path / f"study{seed}"
            generate_demo_study(folder, shape=shape, seed=seed)
            (study_id,) = import_paths([folder], index, workers=1).study_ids
            ids.append(study_id)
    return ids


class Recorder:
    """The worklist's events as (study id, status, reason), with the time each arrived."""

    def __init__(self, worklist: Worklist) -> None:
        self.events: list[tuple[int, str, str, float]] = []
        worklist.subscribe(self._on)

    def _on(self, event: WorkStatusChanged) -> None:
        self.events.append((event.item.study_id, event.item.status, event.item.reason, time.monotonic()))

    def statuses(self, study_id: int) -> list[str]:
        return [status for sid, status, _, _ in self.events if sid == study_id]

    def started_order(self) -> list[int]:
        order: list[int] = []
        for sid, status, _, _ in self.events:
            if status == "running" and sid not in order:
                order.append(sid)
        return order

    def when(self, study_id: int, status: str) -> float:
        return max(t for sid, s, _, t in self.events if sid == study_id and s == status)


def _stored(series_id: int) -> Any:
    """The analysis the window would show for a series (loaded as the session loads it), or None."""
    from workstation.index import StudyIndex
    from workstation.services.analysis_store import AnalysisStore, find_for_series
    from workstation.services.studies import SeriesSource, load_series_volumes
    from workstation.settings import get_settings

    settings = get_settings()
    with StudyIndex(settings.db_path) as index:
        headers = index.series_headers(series_id)
    volume = load_series_volumes(SeriesSource(f"series {series_id}", headers)).volumes[0]
    return find_for_series(AnalysisStore.for_settings(settings), settings.db_path, series_id, volume,
                           settings.models_path)


def test_studies_are_analysed_in_arrival_order_failures_say_why_and_results_wait_in_the_store(
        tmp_path: Path) -> None:
    from workstation.services.catalog import Catalog
    from workstation.settings import get_settings

    first, broken, removed, last = _import_demo_studies(tmp_path, [0, 1, 2, 3])
    for dcm in (tmp_path / "study1").glob("*.dcm"):  # its images were moved away after the import
        dcm.unlink()
    calls = CallQueue()
    worklist = Worklist(get_settings(), calls.post)
    seen = Recorder(worklist)
    try:
        items = worklist.enqueue_arrival([first, broken, removed, last])
        assert [i.status for i in items] == ["queued"] * 4 and all(i.series_id for i in items)
        assert worklist.enqueue(first).series_id == items[0].series_id and worklist.pending() == 4  # not twice
        assert worklist.remove(removed)
        assert calls.wait_until(lambda: worklist.pending() == 0, 300), seen.events
    finally:
        assert worklist.shutdown(10)
    assert seen.started_order() == [first, broken, last]
    assert seen.statuses(first) == ["queued", "running", "done"]
    assert seen.statuses(removed) == ["queued", "removed"] and worklist.item(removed) is None
    assert seen.statuses(broken) == ["queued", "running", "failed"]
    reason = worklist.item(broken).reason  # type: ignore[union-attr]
    assert "cannot read pixel data" in reason and "no such file" in reason.lower(), reason
    assert seen.statuses(last) == ["queued", "running", "done"]
    by_study = {i.study_id: i.series_id or -1 for i in items}
    for study in (first, last):
        result = _stored(by_study[study])
        assert result is not None and result.labelmap.shape == SHAPE
        assert result.provenance.model_id == "builtin.ct" and result.findings.lesions
    analysed = Catalog.for_settings(get_settings()).listing().analysed
    assert analysed == frozenset({by_study[first], by_study[last]})  # what the browser shows as "Done"


def test_a_reader_request_pre_empts_the_background_analysis_which_is_redone_after(tmp_path: Path) -> None:
    from inference.contract import AnalysisRequest
    from workstation.services.analysis_jobs import AnalysisFinished, AnalysisService
    from workstation.services.analysis_store import AnalysisStore, IndexedSeriesSink
    from workstation.services.session import ReadingSession
    from workstation.services.session_events import AnalysisLookedUp, AnalysisStarted, ResultShown
    from workstation.settings import get_settings

    (background,) = _import_demo_studies(tmp_path, [0], BIG)  # runs long enough to be pre-empted mid-way
    (opened,) = _import_demo_studies(tmp_path, [1])
    settings = get_settings()
    calls = CallQueue()
    runner = JobRunner("device-runner")  # the window's one device owner, shared by the reader and the worklist
    reader = AnalysisService(calls.post, runner=runner, device="cpu")
    worklist = Worklist(settings, calls.post, device_runner=runner)
    seen = Recorder(worklist)
    finished: list[float] = []
    reader.subscribe(lambda e: finished.append(time.monotonic()) if isinstance(e, AnalysisFinished) else None)
    session: ReadingSession | None = None
    try:
        (item,) = worklist.enqueue_arrival([background])
        reader_series = worklist.enqueue(opened).series_id
        assert reader_series is not None
        reader_volume = _stored_volume(reader_series)
        assert calls.wait_until(lambda: "running" in seen.statuses(background), 60)
        keep = IndexedSeriesSink(AnalysisStore.for_settings(settings), settings.db_path, reader_series)
        reader.submit(AnalysisRequest(reader_volume, "builtin.ct", "cpu", {}), reader_series, keep=keep)
        assert calls.wait_until(lambda: worklist.pending() == 0 and bool(finished), 300), seen.events
        # the reader's run came first: the background study went back to the queue and was redone after it
        assert seen.statuses(background) == ["queued", "running", "queued", "running", "done"]
        assert finished[0] < seen.when(background, "done")
        assert seen.started_order() == [background, opened]
        assert seen.statuses(opened) == ["queued", "running", "done"]  # the reader's result was in the store
        assert worklist.item(opened).reason == "already in the analysis store"  # type: ignore[union-attr]

        # the reader opens the background study: its analysis is waiting, nothing runs again
        session = ReadingSession(settings, calls.post, analysis=AnalysisService(calls.post, runner=runner))
        events: list[Any] = []
        session.subscribe(events.append)
        assert session.open_series(item.series_id or -1)
        assert calls.wait_until(lambda: any(isinstance(e, AnalysisLookedUp) for e in events), 120)
        shown = [e for e in events if isinstance(e, ResultShown)]
        assert shown and shown[0].result.provenance.model_id == "builtin.ct"
        assert not any(isinstance(e, AnalysisStarted) for e in events)
    finally:
        if session is not None:
            session.shutdown(10)
        reader.shutdown()
        assert worklist.shutdown(10)
        assert runner.shutdown(10)
    assert not runner.is_running()


def _stored_volume(series_id: int) -> Any:
    from workstation.index import StudyIndex
    from workstation.services.studies import SeriesSource, load_series_volumes
    from workstation.settings import get_settings

    with StudyIndex(get_settings().db_path) as index:
        headers = index.series_headers(series_id)
    return load_series_volumes(SeriesSource(f"series {series_id}", headers)).volumes[0]


def test_a_study_without_a_series_the_model_takes_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    from workstation.settings import get_settings

    (study,) = _import_demo_studies(tmp_path, [0])
    calls = CallQueue()
    worklist = Worklist(get_settings(), calls.post, model_id="no.such.model")
    seen = Recorder(worklist)
    try:
        item = worklist.enqueue(study)
    finally:
        assert worklist.shutdown()
    assert item.status == "failed" and item.series_id is None and "no.such.model" in item.reason
    assert seen.statuses(study) == ["failed"] and worklist.pending() == 0


@pytest.mark.parametrize(("raw", "analyze", "model"), [
    ({}, False, "builtin.ct"),
    ({"analyze_incoming": True, "model": "remote:gpu/wholebody"}, True, "remote:gpu/wholebody"),
    ({"analyze_incoming": "yes", "model": ""}, False, "builtin.ct"),
])
def test_the_worklist_settings(raw: dict[str, Any], analyze: bool, model: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from workstation.services.worklist import WorklistConfig
    from workstation.settings import get_settings

    monkeypatch.setenv("WORKSTATION_WORKLIST", json.dumps(raw))
    get_settings.cache_clear()
    config = WorklistConfig.from_settings(get_settings())
    assert (config.analyze_incoming, config.model_id) == (analyze, model)
