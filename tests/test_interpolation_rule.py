"""Analysis refuses a series that is mostly interpolated, and records it when the user overrides.

A series with missing slices or a wide gap is resampled onto a regular grid;
when more than the configured share (default 10 %) of that grid is made up
between source slices, ``analyze``, ``report`` and the window's Run AI refuse,
naming the gap. ``--allow-interpolated`` / "Analyse anyway" run it regardless,
and the findings (so the draft report) and the provenance say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QMessageBox
from pytestqt.qtbot import QtBot

from inference.engine import Engine
from inference.errors import GeometryError, InterpolatedSeriesError, WorkstationError
from tests import synth
from tests.gui_steps import import_and_open
from workstation.cli import main
from workstation.dicomio.headers import read_header_path
from workstation.dicomio.volume_builder import load_series
from workstation.qt.main_window import MainWindow
from workstation.services.analysis import analyze_source
from workstation.services.interpolation import InterpolationPolicy
from workstation.services.jobs import Job, ProgressMailbox, run_job
from workstation.services.studies import SeriesSource, resolve_series
from workstation.settings import get_settings

OVER = [2.0] * 20 + [20.0]  # 22 source slices, a 20 mm gap: 9 of 31 grid slices invented (29 %)
UNDER = [2.0] * 30 + [4.0]  # one missing slice: 1 of 33 invented (3 %)
OVERRIDE = "Analysis was run at the user's request although 9 of 31 slices are interpolated"


def _series(folder: Path, gaps: list[float], name: str) -> Path:
    synth.write_series(folder, synth.gapped_stack(gaps), name=name)
    return folder


@pytest.fixture(scope="module")
def over(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _series(tmp_path_factory.mktemp("over") / "gap20", OVER, "gap20")


@pytest.fixture(scope="module")
def under(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _series(tmp_path_factory.mktemp("under") / "gap4", UNDER, "gap4")


def _ct2() -> Path:
    """pydicom's CT2 test series: 4 slices, 3 of them 1.25 mm apart and one 202.5 mm away."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("dicomdirtests/77654033/CT2/17136")
    assert path is not None, "pydicom's test files (dicomdirtests) are part of the pydicom wheel"
    return Path(path).parent


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# ----------------------------------------------------------------------------- the loader's record


def test_loader_records_the_interpolated_share_and_the_gap(over: Path, under: Path) -> None:
    def info(folder: Path) -> dict[str, object] | None:
        (volume,) = load_series([read_header_path(p) for p in sorted(folder.iterdir())]).volumes
        return volume.metadata.get("interpolation")

    big = info(over)
    assert big is not None and (big["interpolated"], big["total"], big["source_slices"]) == (9, 31, 22)
    assert big["max_gap_mm"] == pytest.approx(20.0) and big["axis"] == "z"
    assert big["gaps"] == [{"from_mm": pytest.approx(10.0), "to_mm": pytest.approx(30.0),
                            "width_mm": pytest.approx(20.0), "interpolated": 9}]
    small = info(under)
    assert small is not None and (small["interpolated"], small["total"]) == (1, 33)


def test_uniform_series_records_nothing(tmp_path: Path) -> None:
    folder = _series(tmp_path / "even", [2.0] * 12, "even")
    (volume,) = load_series([read_header_path(p) for p in folder.iterdir()]).volumes
    assert "interpolation" not in volume.metadata


def test_pydicom_ct2_is_refused_naming_the_gap() -> None:
    source = resolve_series(str(_ct2()), None)
    (volume,) = load_series(source.headers).volumes
    assert volume.metadata["interpolation"]["interpolated"] == 161
    assert volume.metadata["interpolation"]["total"] == 165
    with pytest.raises(InterpolatedSeriesError) as refused:
        analyze_source(SeriesSource("CT2", source.headers), Engine(None), model_id="builtin.ct", device="cpu")
    text = str(refused.value)
    assert text.startswith("CT2: 161 of 165 slices would be interpolated (gaps of up to 202.5 mm between "
                           "source slices at z = -99.5..103.0 mm); analysis refused.")
    assert "--allow-interpolated" in text
    assert isinstance(refused.value, GeometryError) and isinstance(refused.value, WorkstationError)
    assert (refused.value.interpolated, refused.value.total) == (161, 165)


# ----------------------------------------------------------------------------- the command line


def test_analyze_refuses_over_the_threshold_and_says_why(over: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = _run(capsys, "analyze", str(over), "--device", "cpu", "--out", str(out))
    assert code == 2
    assert "9 of 31 slices would be interpolated (gaps of up to 20 mm between source slices at z = 10.0..30.0 mm)" \
        in err
    assert "analysis refused. Override with --allow-interpolated." in err
    assert not (out / "findings.json").exists()


def test_analyze_runs_under_the_threshold(under: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "analyze", str(under), "--device", "cpu", "--out", str(tmp_path / "o"))
    assert code == 0, err
    findings = json.loads((tmp_path / "o" / "findings.json").read_text())
    assert findings["volume"]["interpolation"]["interpolated"] == 1
    assert not any("user's request" in c for c in findings["findings"]["cautions"])


def test_the_threshold_is_a_setting(over: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKSTATION_MAX_INTERPOLATED_SHARE", "0.3")  # 29 % is now acceptable
    get_settings.cache_clear()
    code, _, err = _run(capsys, "analyze", str(over), "--device", "cpu", "--out", str(tmp_path / "o"))
    assert code == 0, err
    monkeypatch.setenv("WORKSTATION_MAX_INTERPOLATED_SHARE", "0.0")  # any interpolation refused
    get_settings.cache_clear()
    code, _, err = _run(capsys, "analyze", str(_ct2()), "--device", "cpu", "--out", str(tmp_path / "p"))
    assert code == 2 and "161 of 165" in err


def test_analyze_override_is_recorded_in_findings_and_provenance(over: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "analyze", str(over), "--device", "cpu", "--out", str(out),
                             "--allow-interpolated")
    assert code == 0, err
    assert f"caution: {OVERRIDE}" in stdout
    data = json.loads((out / "findings.json").read_text())
    assert any(c.startswith(OVERRIDE) and "z = 10.0..30.0 mm" in c for c in data["findings"]["cautions"])
    assert any(n.startswith(OVERRIDE) for n in data["provenance"]["notes"])


def test_report_refuses_and_its_override_is_quoted_by_the_draft(over: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    code, _, err = _run(capsys, "report", str(over), "--device", "cpu", "--out", str(out))
    assert code == 2 and "9 of 31 slices would be interpolated" in err and "--allow-interpolated" in err
    assert not (out / "report.txt").exists()
    code, stdout, err = _run(capsys, "report", str(over), "--device", "cpu", "--out", str(out),
                             "--allow-interpolated")
    assert code == 0, err
    report = (out / "report.txt").read_text(encoding="utf-8")
    assert f"Caution: {OVERRIDE}" in report
    assert "grounding check: all" in stdout  # the quoted numbers are grounded in the findings' cautions
    # the analysis recorded in the folder does not let a later run skip the rule
    code, _, err = _run(capsys, "report", str(over), "--device", "cpu", "--out", str(out))
    assert code == 2 and "analysis refused" in err


# ----------------------------------------------------------------------------- the worker's job (Qt-free)


def test_the_window_worker_job_obeys_the_rule(over: Path) -> None:
    from inference.contract import AnalysisRequest

    (volume,) = load_series([read_header_path(p) for p in over.iterdir()]).volumes
    engine, mailbox = Engine(None), ProgressMailbox()
    refused = run_job(engine, Job(1, AnalysisRequest(volume, "builtin.ct", "cpu"), 7, label="Series 7"), mailbox)
    assert refused.kind == "failed" and refused.message.startswith("Series 7: 9 of 31 slices would be interpolated")
    allowed = run_job(engine, Job(2, AnalysisRequest(volume, "builtin.ct", "cpu"), 7,
                                  policy=InterpolationPolicy(allow=True), label="Series 7"), mailbox)
    assert allowed.kind == "finished" and allowed.result is not None
    assert any(c.startswith(OVERRIDE) for c in allowed.result.findings.cautions)
    assert any(n.startswith(OVERRIDE) for n in allowed.result.provenance.notes)


# ----------------------------------------------------------------------------- the window


@pytest.fixture
def window(make_window: Callable[..., MainWindow]) -> MainWindow:
    """The shared window factory (tests/conftest.py): closed, workers joined and leaks checked at teardown."""
    return make_window(size=(1400, 900))



def _button(box: QMessageBox | None, text: str) -> QAbstractButton:
    assert box is not None
    return next(b for b in box.buttons() if b.text().replace("&", "") == text)


def test_window_refuses_then_analyses_anyway_and_the_draft_quotes_it(qtbot: QtBot, window: MainWindow,
                                                                      over: Path) -> None:
    win = window
    series_id = import_and_open(qtbot, win, over)
    bar = win.analysis_bar
    with qtbot.waitSignal(win.session.analysisRefused, timeout=5000) as refused:
        qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    text = refused.args[1]
    assert text == (f"Series {series_id} (gap20): 9 of 31 slices would be interpolated (gaps of up to 20 mm "
                    "between source slices at z = 10.0..30.0 mm); analysis refused.")
    box = bar.refusal_box
    assert box is not None and box.isVisible() and box.text() == text
    assert bar.message_text == text and not win.session.worker.is_busy()
    # Cancel: nothing runs
    qtbot.mouseClick(_button(box, "Cancel"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bar.refusal_box is None, timeout=2000)
    assert not win.session.worker.is_busy() and win.session.result(series_id) is None
    # Analyse anyway: the run goes through the worker and the result says so
    with qtbot.waitSignal(win.session.analysisRefused, timeout=5000):
        qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(win.session.resultShown, timeout=120_000):
        qtbot.mouseClick(_button(bar.refusal_box, "Analyse anyway"), Qt.MouseButton.LeftButton)
    result = win.session.result(series_id)
    assert any(c.startswith(OVERRIDE) for c in result.findings.cautions)
    assert any(n.startswith(OVERRIDE) for n in result.provenance.notes)
    qtbot.waitUntil(lambda: win.report.state == "editing", timeout=60_000)
    assert win.report.document is not None and OVERRIDE in win.report.document.text()
