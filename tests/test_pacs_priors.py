"""Priors on a PACS: the demo prior stored in a real Orthanc, only the current demo study in the index.

The prior is found by C-FIND for the current study's patient, offered in the
window's prior chooser "on PACS orthanc", retrieved when compared and compared
as a local prior would be; ``workstation report`` retrieves it when
``pacs.query_priors`` is on. Expected dates, UIDs and statuses come from the
demo files and their truth (``followup_truth.json``), not from the code under
test. A PACS that does not answer leaves the local priors working.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pytestqt.qtbot import QtBot

from tests.pacs_fixtures import PacsEnv, free_port, have_orthanc, orthanc_env
from tests.requirements import PACS_TOOLS_FIX, requires
from workstation.cli import main
from workstation.demo import ensure_demo_study
from workstation.demo.phantom import PRIOR_FOLDER_NAME
from workstation.demo.prior import FollowupTruth, load_followup_truth
from workstation.index import StudyIndex, import_paths
from workstation.pacs.nodes import PacsConfig
from workstation.qt.main_window import MainWindow
from workstation.services.followup import find_priors
from workstation.services.followup_jobs import FollowupFinished
from workstation.services.pacs_priors import remote_priors_of_series, retrieve_remote_prior
from workstation.services.studies import SeriesSource
from workstation.settings import config_dir, get_settings

pytestmark = [
    pytest.mark.needs_tool,
    requires(have_orthanc(), "Orthanc + DICOMweb plugin not installed", PACS_TOOLS_FIX),
]

PRIOR_DATE = "2023-03-15"


@dataclass(frozen=True)
class Demo:
    """The demo pair: the current study's files (to import), the prior's UIDs (stored in Orthanc), the truth."""

    current_files: list[Path]
    prior_files: list[Path]
    prior_study_uid: str
    prior_series_uid: str
    truth: FollowupTruth


@pytest.fixture(scope="module")
def env(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PacsEnv, Demo]]:
    """Orthanc holding the real CT of another patient and the demo prior (stored over REST)."""
    study = ensure_demo_study(tmp_path_factory.mktemp("demo"))
    prior_files = sorted((study / PRIOR_FOLDER_NAME).glob("*.dcm"))
    head = pydicom.dcmread(prior_files[0], stop_before_pixels=True)
    demo = Demo(sorted(study.glob("*.dcm")), prior_files, str(head.StudyInstanceUID), str(head.SeriesInstanceUID),
                load_followup_truth(study / PRIOR_FOLDER_NAME))
    with orthanc_env(shared_data, tmp_path_factory.mktemp("pacs")) as e:
        e.orthanc.upload(prior_files)
        yield e, demo


def use_pacs(env: PacsEnv, *, query_priors: bool = False, down: bool = False, web_only: bool = False) -> None:
    """Write settings naming the Orthanc node (or, ``down``, a node nothing answers on; ``web_only``, the node
    by DICOMweb alone) and reload them."""
    node = env.node_with(port=free_port(), dicomweb_url="", timeout_s=3) if down else env.node
    if web_only:
        node = env.node_with(ae_title="", host="", retrieve_method="wado")
    config = PacsConfig(nodes=[node], default_node=node.name, local=env.local, query_priors=query_priors)
    path = config_dir() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "pacs": config.to_settings_value()}), encoding="utf-8")
    get_settings.cache_clear()


def import_current(db: Path, demo: Demo) -> int:
    """Only the current demo study into the index at ``db``; its series id."""
    with StudyIndex(db) as index:
        result = import_paths(demo.current_files, index)
        assert len(result.series_ids) == 1
        return result.series_ids[0]


@pytest.mark.parametrize("protocol", ["C-FIND and C-GET", "QIDO-RS and WADO-RS"])
def test_the_prior_only_the_pacs_holds_is_found_and_retrieved(env: tuple[PacsEnv, Demo], tmp_path: Path,
                                                              protocol: str) -> None:
    pacs, demo = env
    use_pacs(pacs, web_only=protocol.startswith("QIDO"))
    settings = get_settings()
    db = tmp_path / "index.sqlite"
    series_id = import_current(db, demo)
    with StudyIndex(db) as index:
        current = SeriesSource("current", index.series_headers(series_id))
        assert find_priors(index, current) == []  # nothing local
    search = remote_priors_of_series(settings, db, series_id)
    assert search.failures == ()
    assert len(search.priors) == 1, "the other patient's CT on the same PACS is not this patient's prior"
    prior = search.priors[0]
    assert (prior.node, prior.study_uid, prior.modality) == ("orthanc", demo.prior_study_uid, "CT")
    assert prior.study_date is not None and prior.study_date.isoformat() == PRIOR_DATE == \
        f"{demo.truth.prior_study_date[:4]}-{demo.truth.prior_study_date[4:6]}-{demo.truth.prior_study_date[6:]}"
    assert prior.series_uid == demo.prior_series_uid and prior.instance_count == len(demo.prior_files)
    assert "on PACS orthanc" in prior.text and prior.text.startswith(PRIOR_DATE)
    seen: list[tuple[int, int]] = []
    candidate = retrieve_remote_prior(settings, db, current, prior, progress=lambda n, t: seen.append((n, t)))
    assert candidate.study.study_uid == demo.prior_study_uid and candidate.study_date is not None
    assert seen[-1] == (len(demo.prior_files), len(demo.prior_files))
    with StudyIndex(db) as index:
        assert len(index.series_headers(candidate.series.id)) == len(demo.prior_files)
        assert [c.study.study_uid for c in find_priors(index, current)] == [demo.prior_study_uid]
    assert remote_priors_of_series(settings, db, series_id).priors == (), "now in the index: no longer remote"


def test_a_pacs_that_is_down_is_a_failure_line_not_an_error(env: tuple[PacsEnv, Demo], tmp_path: Path) -> None:
    pacs, demo = env
    use_pacs(pacs, down=True)
    db = tmp_path / "index.sqlite"
    series_id = import_current(db, demo)
    search = remote_priors_of_series(get_settings(), db, series_id)
    assert search.priors == () and len(search.failures) == 1 and search.failures[0].startswith("PACS orthanc")


def _statuses(lesions: list[dict[str, object]], truth: FollowupTruth) -> None:
    for nodule in truth.nodules:
        here = np.asarray(nodule.center_current_lps_mm)
        change = min(lesions, key=lambda c: float(np.linalg.norm(np.asarray(c["current"]["centroid_lps"]) - here)))  # type: ignore[index]
        assert change["status"] == nodule.status, nodule


def test_report_retrieves_the_pacs_prior_only_when_asked(env: tuple[PacsEnv, Demo], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pacs, demo = env
    db = tmp_path / "index.sqlite"
    import_current(db, demo)
    use_pacs(pacs, query_priors=False)  # the default: the report never asks the PACS
    off = tmp_path / "off"
    assert main(["--db", str(db), "report", "study:1", "--out", str(off), "--device", "cpu"]) == 0
    assert "comparison" not in json.loads((off / "findings.json").read_text(encoding="utf-8"))
    with StudyIndex(db) as index:
        assert index.study_by_uid(demo.prior_study_uid) is None
    use_pacs(pacs, query_priors=True)
    on = tmp_path / "on"
    assert main(["--db", str(db), "report", "study:1", "--out", str(on), "--device", "cpu"]) == 0
    assert "comparison with prior of 2023-03-15" in capsys.readouterr().out
    comparison = json.loads((on / "findings.json").read_text(encoding="utf-8"))["comparison"]
    assert comparison["prior"]["study_date"] == PRIOR_DATE and comparison["registration"]["passed"] is True
    assert len(comparison["lesions"]) == len(demo.truth.nodules)
    _statuses(comparison["lesions"], demo.truth)


def _open_current(qtbot: QtBot, make_window: Callable[..., MainWindow], demo: Demo,
                  messages: list[str]) -> MainWindow:
    study_id = import_current(get_settings().db_path, demo)
    win = make_window(size=(1700, 1000))
    win.compare.message.connect(messages.append)
    win.refresh()
    with StudyIndex(get_settings().db_path) as index:
        study = index.find_series(str(study_id))
        assert study is not None
    with qtbot.waitSignal(win.compare.pacs.found, timeout=120_000):
        assert win.open_study(study.study_id)
    return win


def test_the_window_offers_retrieves_and_compares_the_pacs_prior(
        env: tuple[PacsEnv, Demo], qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    pacs, demo = env
    use_pacs(pacs)
    messages: list[str] = []
    win = _open_current(qtbot, make_window, demo, messages)
    compare = win.compare
    assert compare.priors == [] and len(compare.pacs.priors) == 1  # nothing local; one on the PACS
    assert compare.chooser.count() == 1
    assert compare.chooser.itemText(0).startswith(PRIOR_DATE) and "on PACS orthanc" in compare.chooser.itemText(0)
    assert compare.compare_action.isEnabled()
    assert any("on PACS" in m for m in messages)
    with qtbot.waitSignal(win.session.resultShown, timeout=180_000):
        win.session.run_ai("builtin.ct")
    progress: list[int] = []
    arrived: list[object] = []
    compare.progress.valueChanged.connect(progress.append)
    compare.pacs.retrieved.connect(arrived.append)
    with qtbot.waitSignal(compare.comparisonShown, timeout=400_000) as shown:
        compare.compare_action.trigger()
        assert compare.cancel_action.isEnabled() and compare.is_busy()  # the retrieve can be cancelled
    assert [c.study.study_uid for c in arrived] == [demo.prior_study_uid]  # type: ignore[attr-defined]
    assert 100 in progress, "the retrieve's progress reached the end"
    finished: FollowupFinished = shown.args[0]
    assert finished.registration.passed and finished.comparison is not None
    assert finished.candidate.study.study_uid == demo.prior_study_uid
    assert compare.prior_pane.isVisible() and PRIOR_DATE in compare.prior_header.text()
    rows = win.findings.comparison.changes()
    for nodule in demo.truth.nodules:
        row = next(r for r, ch in enumerate(rows) if ch.current is not None and np.linalg.norm(
            np.subtract(ch.current.centroid_lps, nodule.center_current_lps_mm)) < 5.0)
        assert win.findings.comparison.cell_text(row, 1) == nodule.status
    assert len(win.catalog.listing().studies) == 2, "the retrieved prior is in the index (and the browser)"


def test_a_pacs_that_is_down_leaves_the_local_prior_working(
        env: tuple[PacsEnv, Demo], qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    pacs, demo = env
    use_pacs(pacs, down=True)
    with StudyIndex(get_settings().db_path) as index:  # this time the prior is local too
        import_paths(demo.prior_files, index)
    messages: list[str] = []
    win = _open_current(qtbot, make_window, demo, messages)
    compare = win.compare
    assert len(compare.priors) == 1 and compare.pacs.priors == [] and compare.chooser.count() == 1
    assert any("Priors not looked up on the PACS" in m and "can still be compared" in m for m in messages)
    with qtbot.waitSignal(compare.comparisonShown, timeout=120_000) as shown:
        assert compare.compare() is not None  # the local prior: alignment only (no analysis run)
    finished: FollowupFinished = shown.args[0]
    assert finished.registration.passed and finished.candidate.study.study_uid == demo.prior_study_uid


def test_cancelling_the_retrieve_keeps_the_pacs_prior_offered_and_a_retry_compares(
        env: tuple[PacsEnv, Demo], qtbot: QtBot, make_window: Callable[..., MainWindow]) -> None:
    pacs, demo = env
    use_pacs(pacs)
    messages: list[str] = []
    win = _open_current(qtbot, make_window, demo, messages)
    compare = win.compare
    qtbot.waitUntil(lambda: win.session.volume() is not None, timeout=60_000)
    compare.compare_action.trigger()
    compare.cancel_action.trigger()
    qtbot.waitUntil(lambda: any("Retrieve of the prior cancelled" in m for m in messages), timeout=60_000)
    assert not compare.is_busy() and not compare.prior_pane.isVisible()
    assert compare.chooser.count() == 1 and compare.compare_action.isEnabled()  # still offered
    with qtbot.waitSignal(compare.comparisonShown, timeout=300_000) as shown:
        compare.compare_action.trigger()  # the retry asks only for what is still missing
    finished: FollowupFinished = shown.args[0]
    assert finished.registration.passed and finished.candidate.study.study_uid == demo.prior_study_uid
    with StudyIndex(get_settings().db_path) as index:
        assert len(index.series_headers(finished.candidate.series.id)) == len(demo.prior_files)
