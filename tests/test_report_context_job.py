"""The report's context built as a job on a runner (``report_context.submit_context``), answered on the owner's thread.

No ``QApplication``: the answer comes through a ``CallQueue`` the way the window's
bridge delivers it, so the index is read and the notes de-identified on the
runner's thread, never on the thread that shows the report. The demo study is
imported into a real index and analysed by the built-in model; the comparison
record comes from the follow-up engine's own matching (``tests.comparison_factory``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from inference.contract import AnalysisRequest
from inference.engine import Engine
from tests.comparison_factory import sample_comparison
from workstation.services.catalog import Catalog
from workstation.services.dispatch import CallQueue
from workstation.services.report_context import ContextBuilt, ContextFailed, ContextOutcome, submit_context
from workstation.services.runner import JobRunner
from workstation.services.studies import load_series_volumes, resolve_series
from workstation.settings import get_settings


def test_the_context_is_built_on_the_runner_and_answered_on_the_owners_thread(demo_folder: Path) -> None:
    catalog = Catalog.for_settings(get_settings())
    (series_id,) = catalog.import_paths([demo_folder]).series_ids
    volume = load_series_volumes(resolve_series(str(demo_folder), None)).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    comparison = sample_comparison(result.findings.lesions)
    study = catalog.study_of_series(series_id)
    assert study is not None
    runner, owner = JobRunner("test-io"), CallQueue()
    answers: list[tuple[ContextOutcome, threading.Thread]] = []
    try:
        submit_context(runner, owner.post, catalog, series_id, result, volume,
                       lambda outcome: answers.append((outcome, threading.current_thread())), comparison=comparison)
        assert answers == [], "nothing is answered before the owner runs what was posted to it"
        assert owner.wait_until(lambda: bool(answers), timeout_s=60.0)
        (outcome, thread), = answers
        assert thread is threading.current_thread()  # the owner's thread, not the runner's
        assert isinstance(outcome, ContextBuilt) and outcome.series_id == series_id
        ctx = outcome.context
        assert ctx.study_key == study.study_key and ctx.series_id == series_id
        assert ctx.inputs.comparison == comparison  # the draft's Comparison section is written from it
        assert ctx.inputs.notes, "the study's request and history reach the report"
        # an index that cannot be read is answered as a failure the reader can be told, not lost
        broken = Catalog(demo_folder)  # a folder, not a database
        submit_context(runner, owner.post, broken, series_id, result, volume,
                       lambda outcome: answers.append((outcome, threading.current_thread())))
        assert owner.wait_until(lambda: len(answers) == 2, timeout_s=60.0)
        failed = answers[1][0]
        assert isinstance(failed, ContextFailed) and failed.series_id == series_id and failed.message
    finally:
        assert runner.shutdown()
