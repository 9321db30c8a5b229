"""The audit trail: CLI and window actions land in ``workstation audit --json``; append-only; no patient data.

The PACS events (send, retrieve) are checked against Orthanc in ``test_pacs_messages``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import dicom_factory as f
from workstation import audit
from workstation.cli import main
from workstation.demo import generate_demo_study
from workstation.demo.phantom import PATIENT_ID, PATIENT_NAME
from workstation.document.editing import ReportDocument
from workstation.services.audit_trail import amend_report, sign_report


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _events(capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, Any]]:
    code, out, err = _run(capsys, "audit", "--json", *extra)
    assert code == 0, err
    events: list[dict[str, Any]] = json.loads(out)
    return events


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(60, 128, 128))
    return folder


@pytest.fixture
def evil_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    from tests.test_code_audit import evil_bundle
    from workstation.settings import get_settings

    models, marker = tmp_path / "models", tmp_path / "MARKER"
    evil_bundle(models, marker)  # copied in by hand: not trusted
    monkeypatch.setenv("WORKSTATION_MODELS_DIR", str(models))
    get_settings.cache_clear()
    yield models, marker


def test_analyze_report_and_exports_are_recorded(small_demo: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _events(capsys) == []
    code, _, err = _run(capsys, "analyze", str(small_demo), "--device", "cpu", "--out", str(tmp_path / "ai"))
    assert code == 0, err
    # --no-reuse: the analysis `analyze` kept in the analysis store would be reused, and not run (nor recorded) again
    code, _, err = _run(capsys, "report", str(small_demo), "--device", "cpu", "--out", str(tmp_path / "rep"),
                        "--no-reuse")
    assert code in (0, 1), err  # 1: a DICOM validator finding, not our concern here
    events = _events(capsys)
    kinds = [e["event"] for e in events]
    assert kinds.count("study.opened") >= 2 and kinds.count("model.run") == 2
    assert "report.drafted" in kinds and "export.written" in kinds
    study_uids = {e["study_uid"] for e in events}
    assert len(study_uids) == 1 and next(iter(study_uids)).startswith(("1.", "2."))
    run = next(e for e in events if e["event"] == "model.run")
    assert run["outcome"] == "ok" and run["details"]["model_id"] == "builtin.ct"
    assert run["details"]["device"] == "cpu" and run["details"]["series_uid"]
    export = next(e for e in events if e["event"] == "export.written")
    assert export["details"]["folder"] == str(tmp_path / "rep") and "report.txt" in export["details"]["files"]
    assert export["details"]["signed"] is False
    for e in events:
        assert e["user"] == audit.os_user()
        assert datetime.fromisoformat(e["time"]).utcoffset() == timedelta(0)
    text = json.dumps(events)
    for identifier in (PATIENT_NAME, PATIENT_ID, str(PATIENT_NAME).replace("^", " ")):
        assert identifier not in text

    later = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert _events(capsys, "--since", later) == []
    assert len(_events(capsys, "--since", "2000-01-01")) == len(events)
    code, out, _ = _run(capsys, "audit")
    assert code == 0 and "model.run" in out and "export.written" in out
    code, _, err = _run(capsys, "audit", "--since", "yesterday")
    assert code == 2 and "not a date" in err


def test_a_refused_run_is_recorded_with_its_outcome(tmp_path: Path, evil_models: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    f.ct_series(tmp_path / "ct", 6)
    code, _, err = _run(capsys, "analyze", str(tmp_path / "ct"), "--model", "bundle.evil", "--out", str(tmp_path / "o"))
    assert code == 2 and "outside the allow-list" in err and not evil_models[1].exists()
    (run,) = [e for e in _events(capsys) if e["event"] == "model.run"]
    assert run["outcome"] == "refused" and run["details"]["model_id"] == "bundle.evil"
    assert "outside the allow-list" in run["details"]["error"]


def test_sign_off_and_addendum_name_the_radiologist(capsys: pytest.CaptureFixture[str]) -> None:
    doc = ReportDocument.from_draft("1.2.826.0.1.99", {"Findings": "The lungs are clear.",
                                                       "Impression": "No acute finding."})
    sign_report(doc, "Dr  Ada   Lovelace")
    amend_report(doc, "Compared with the prior study.", "Dr Grace Hopper")
    events = _events(capsys)
    assert [(e["event"], e["radiologist"], e["study_uid"]) for e in events] == [
        ("report.signed", "Dr Ada Lovelace", "1.2.826.0.1.99"),
        ("report.amended", "Dr Grace Hopper", "1.2.826.0.1.99")]
    assert "Compared with the prior" not in json.dumps(events)  # the text stays in the report, not the log


def test_appends_from_many_threads_stay_whole_and_damage_is_skipped(isolated_settings: Path) -> None:
    def write(n: int) -> None:
        for i in range(100):
            audit.record("study.opened", study_uid=f"1.2.{n}.{i}", how="test")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = audit.audit_path()
    assert len(audit.read_events()) == 400
    with path.open("a", encoding="utf-8") as fh:
        fh.write("{torn line\n")
    audit.record("study.opened", study_uid="1.2.3", how="test")
    events = audit.read_events()
    assert len(events) == 401 and events[-1].study_uid == "1.2.3"
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(ValueError, match="unknown audit event"):
        audit.record("study.deleted")


def test_window_asks_before_running_untrusted_code_and_records_it(qtbot: Any, tmp_path: Path,
                                                                  evil_models: tuple[Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from PySide6.QtWidgets import QMessageBox

    from workstation.qt.app import create_main_window
    from workstation.settings import get_settings

    _models, marker = evil_models
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    asked: list[str] = []

    def exec_(box: QMessageBox) -> QMessageBox.StandardButton:
        asked.append(box.text())
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "exec", exec_)
    study_uid, _ = f.ct_series(tmp_path / "ct", 6)
    win = create_main_window(get_settings())
    qtbot.addWidget(win)
    try:
        with qtbot.waitSignal(win.import_finished, timeout=60_000) as blocker:
            win.start_import([tmp_path / "ct"])
        (study_id,) = blocker.args[0].study_ids
        with qtbot.waitSignal(win.session.seriesOpened, timeout=60_000):
            assert win.open_study(study_id)
        assert win.session.run_ai("bundle.evil") is None  # "No": nothing runs
        assert len(asked) == 1 and "__import__('os').system" in asked[0] and not marker.exists()
        with qtbot.waitSignal(win.session.worker.finished, timeout=60_000):
            win.session.run_ai("bundle.evil")  # "Yes": trusted, then run
        assert len(asked) == 2 and marker.exists()
        assert win.session.run_ai("bundle.evil") is not None and len(asked) == 2  # asked once only
        qtbot.waitUntil(lambda: not win.session.worker.is_busy(), timeout=60_000)
    finally:
        win.close()
    events = _events(capsys)
    opened = [e for e in events if e["event"] == "study.opened"]
    assert opened and opened[0]["study_uid"] == study_uid and opened[0]["details"]["how"] == "viewer"
    assert [e["details"]["how"] for e in events if e["event"] == "model.trusted"] == ["confirmed in the window"]
    runs = [e for e in events if e["event"] == "model.run" and e["outcome"] == "ok"]
    assert runs and runs[0]["details"]["model_id"] == "bundle.evil" and "trusted_code" in runs[0]["details"]
