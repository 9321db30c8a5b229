"""The background worklist with a remote model: a real MONAI Label server on 127.0.0.1 analyses the study.

The server runs from its own virtualenv (``tests/monailabel_fixtures.py``) and
serves a tiny bundle the test builds. The worklist sends the study there, not
to the device runner (a reader's local work never waits for it); the result is
in the analysis store where the reading session and the browser find it, with
the same labels as the local run of the same bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.monailabel_fixtures import MODEL, MonaiLabelServer
from workstation.services.dispatch import CallQueue
from workstation.services.runner import JobRunner
from workstation.services.worklist import Worklist
from workstation.settings import SETTINGS_VERSION, config_dir, get_settings

SHAPE = (24, 64, 64)


@pytest.fixture(scope="module")
def models_dir(monailabel_models: Path) -> Path:
    return monailabel_models


@pytest.fixture(scope="module")
def server(monailabel: MonaiLabelServer) -> MonaiLabelServer:
    return monailabel


def test_a_remote_worklist_model_runs_on_the_node_and_its_result_waits_in_the_store(
        server: MonaiLabelServer, models_dir: Path, tmp_path: Path) -> None:
    from inference.contract import AnalysisRequest
    from inference.engine import Engine
    from workstation.demo import generate_demo_study
    from workstation.index import StudyIndex
    from workstation.index.importer import import_paths
    from workstation.services.analysis_store import AnalysisStore, find_for_series
    from workstation.services.catalog import Catalog
    from workstation.services.studies import SeriesSource, load_series_volumes

    settings_file = config_dir() / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps({
        "version": SETTINGS_VERSION, "models_dir": str(models_dir), "inference": {"remote": {"lab": server.url}},
        "worklist": {"model": f"remote:lab/{MODEL}"}}))
    get_settings.cache_clear()
    settings = get_settings()
    generate_demo_study(tmp_path / "study", shape=SHAPE)
    with StudyIndex(settings.db_path) as index:
        (study_id,) = import_paths([tmp_path / "study"], index, workers=1).study_ids
    calls = CallQueue()
    device = JobRunner("device-runner")
    worklist = Worklist(settings, calls.post, device_runner=device)
    statuses: list[str] = []
    worklist.subscribe(lambda e: statuses.append(e.item.status))
    try:
        item = worklist.enqueue(study_id)
        assert calls.wait_until(lambda: worklist.pending() == 0, 300), statuses
    finally:
        assert worklist.shutdown(10)
        device.shutdown(5)
    assert statuses == ["queued", "running", "done"], worklist.item(study_id)
    assert device.generation("worklist") == 0  # the local device was never asked
    series_id = item.series_id or -1
    with StudyIndex(settings.db_path) as index:
        headers = index.series_headers(series_id)
    volume = load_series_volumes(SeriesSource("series", headers)).volumes[0]
    stored: Any = find_for_series(AnalysisStore.for_settings(settings), settings.db_path, series_id, volume,
                                  settings.models_path, remote_nodes=["lab"])
    assert stored is not None and stored.provenance.model_id == f"remote:lab/{MODEL}"
    local = Engine(models_dir).run(AnalysisRequest(volume, f"bundle.{MODEL}", "cpu"))
    assert len(np.unique(local.labelmap)) > 1
    np.testing.assert_array_equal(stored.labelmap, local.labelmap)
    analysed = Catalog.for_settings(settings).listing().analysed
    assert analysed is not None and series_id in analysed  # the browser shows "Done"
