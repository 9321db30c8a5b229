"""The comparison with a prior study in the signed outputs: the PDF's change table and the TID 1500 SR.

The current study is the demo phantom, analysed by the built-in model; the
comparison is made by the follow-up engine's matching from its lesions
(``tests.comparison_factory``). The last test runs the whole ``workstation
report`` on the demo study and its real prior (``workstation.demo.prior``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pypdf import PdfReader

from inference.contract import AnalysisRequest, AnalysisResult
from inference.engine import Engine
from inference.followup.model import ChangeStatus, Comparison
from tests.comparison_factory import sample_comparison
from tests.requirements import SYSTEM_TOOLS_FIX, requires
from workstation.demo import generate_demo_study
from workstation.dicomio.headers import InstanceHeader
from workstation.document import DraftSource, ReportDocument
from workstation.export import ExportOptions, export_study, render_pdf
from workstation.export.pdf_comparison import change_rows
from workstation.export.sr_comparison import (
    DOUBLING_TIME,
    PROCEDURE_STUDY_UID,
    QUALITATIVE_DIFFERENCE,
    STATUS_CODES,
    VOLUME_CHANGE,
)
from workstation.export.validate import dciodvfy_path
from workstation.services.studies import load_series_volumes, resolve_series

NEEDS_DCIODVFY = requires(dciodvfy_path() is not None, "dciodvfy (Debian package dicom3tools) is not installed",
                          SYSTEM_TOOLS_FIX)
TRACKING_UID = ("112040", "DCM", "Tracking Unique Identifier")
TIME_POINT = ("C2348792", "UMLS", "Time Point")


@dataclass
class Demo:
    headers: list[InstanceHeader]
    result: AnalysisResult
    comparison: Comparison


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(40, 96, 96))
    source = resolve_series(str(folder), None)
    volume = load_series_volumes(source).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    assert len(result.findings.lesions) >= 3
    return Demo(list(source.headers), result, sample_comparison(result.findings.lesions))


def _doc() -> ReportDocument:
    sections = {"Comparison": "See the change table.", "Impression": ["1. Growing nodule."]}
    return ReportDocument.from_draft("study", sections, DraftSource("template", "1", "builtin.ct", "1.0.0"))


def _pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(str(path)).pages)


def test_pdf_names_the_prior_and_tabulates_each_change(demo: Demo, tmp_path: Path) -> None:
    c = demo.comparison
    text = _pdf_text(render_pdf(_doc(), demo.result, comparison=c, key_images=0), tmp_path)
    assert "Comparison with the prior study" in text
    assert f"Prior study: {c.prior_study_description} of {c.prior_study_date.isoformat()}, series " \
           f"{c.prior_series_number}; interval {c.interval_days} days" in text
    for heading in ("Prior size", "Current size", "Volume change", "VDT (days)", "Status"):
        assert heading in text
    rows = change_rows(c)
    assert len(rows) == len(c.changes)
    for row, ch in zip(rows, c.changes, strict=True):
        assert row[6] == ch.status.value and ch.status.value in text
        assert row[5] == (f"{ch.doubling_time_days:.0f}" if ch.doubling_time_days is not None else "-")
        assert (row[2] == "-") == (ch.prior is None) and (row[3] == "-") == (ch.current is None)
    grown = c.by_status(ChangeStatus.GROWN)[0]
    assert grown.doubling_time_days is not None and f"{grown.doubling_time_days:.0f}" in text
    assert c.recommendation is not None and c.recommendation.rule in text


def test_pdf_of_a_failed_registration_says_so_and_has_no_table(demo: Demo, tmp_path: Path) -> None:
    c = sample_comparison(demo.result.findings.lesions, passed=False)
    text = _pdf_text(render_pdf(_doc(), demo.result, comparison=c, key_images=0), tmp_path)
    assert "FAILED" in text and c.registration.reason in text and "Comparison not made" in text
    assert "VDT (days)" not in text


def _concept(item: Any) -> tuple[str, str, str]:
    code = item.ConceptNameCodeSequence[0]
    return (str(code.CodeValue), str(code.CodingSchemeDesignator), str(code.CodeMeaning))


def _groups(path: Path) -> list[dict[str, Any]]:
    """Each measurement group of a TID 1500 SR: tracking UID, time point, status code, prior study UID, NUMs."""
    ds = pydicom.dcmread(path)
    container = next(i for i in ds.ContentSequence if _concept(i)[0] == "126010")  # Imaging Measurements
    out = []
    for group in container.ContentSequence:
        found: dict[str, Any] = {"nums": {}}
        for item in group.ContentSequence:
            name = _concept(item)
            if name[:2] == TRACKING_UID[:2]:
                found["tracking"] = str(item.UID)
            elif name[:2] == TIME_POINT[:2]:
                found["time_point"] = str(item.TextValue)
            elif name[:2] == QUALITATIVE_DIFFERENCE[:2]:
                found["status"] = str(item.ConceptCodeSequence[0].CodeValue)
            elif name[:2] == PROCEDURE_STUDY_UID[:2]:
                found["prior_study"] = str(item.UID)
            elif item.ValueType == "NUM":
                found["nums"][name[0]] = float(item.MeasuredValueSequence[0].NumericValue)
        out.append(found)
    return out


def _export(demo: Demo, out: Path, deidentify: bool = False, comparison: Comparison | None = None) -> Path:
    res = export_study(demo.result, demo.headers, out, _doc(),
                       ExportOptions(formats=frozenset({"seg", "sr"}), deidentify=deidentify),
                       comparison=comparison or demo.comparison)
    if dciodvfy_path() is not None:
        assert res.validation["sr"].errors == [], res.validation["sr"].errors
    return res.files["sr"]


def test_measurement_sr_holds_the_prior_as_a_second_time_point(demo: Demo, tmp_path: Path) -> None:
    c = demo.comparison
    groups = _groups(_export(demo, tmp_path / "out"))
    prior = [g for g in groups if g.get("time_point") == "prior study"]
    current = [g for g in groups if g.get("time_point") == "current study"]
    assert len(prior) == sum(ch.prior is not None for ch in c.changes)
    assert len(current) == len(demo.result.findings.lesions)
    assert all(g["prior_study"] == c.prior_study_uid for g in prior)
    by_tracking = {g["tracking"]: g for g in current}
    for ch in c.changes:
        code = STATUS_CODES[ch.status][0]
        if ch.prior is not None:
            then = next(g for g in prior if g["nums"]["118565006"] == pytest.approx(ch.prior.volume_ml))
            assert then["status"] == code
            assert then["nums"]["103339001"] == pytest.approx(ch.prior.long_axis_mm)
            if ch.current is not None:  # the same lesion, tracked: the current group carries the same UID
                now = by_tracking[then["tracking"]]
                assert now["status"] == code
                assert now["nums"]["118565006"] == pytest.approx(ch.current.volume_ml)
                assert now["nums"][VOLUME_CHANGE[0]] == pytest.approx(ch.volume_change_percent)
                if ch.doubling_time_days is not None:
                    assert now["nums"][DOUBLING_TIME[0]] == pytest.approx(ch.doubling_time_days)
                else:
                    assert DOUBLING_TIME[0] not in now["nums"]
        else:
            assert ch.current is not None
            tracked = {p["tracking"] for p in prior}
            news = [g for g in current if g.get("status") == code and g["tracking"] not in tracked]
            assert any(g["nums"]["118565006"] == pytest.approx(ch.current.volume_ml) for g in news)


@pytest.mark.needs_tool
@NEEDS_DCIODVFY
@pytest.mark.parametrize("passed", [True, False])
def test_measurement_sr_with_a_comparison_passes_dciodvfy_and_deidentifies_the_prior(
        demo: Demo, tmp_path: Path, passed: bool) -> None:
    c = sample_comparison(demo.result.findings.lesions, passed=passed)
    path = _export(demo, tmp_path / "deid", deidentify=True, comparison=c)
    groups = _groups(path)
    prior = [g for g in groups if g.get("time_point") == "prior study"]
    if not passed:  # nothing was matched: no prior measurements, no change statuses
        assert prior == [] and not any("status" in g for g in groups)
        return
    assert prior and all(g["prior_study"] != c.prior_study_uid for g in prior)  # remapped like every UID
    assert len({g["prior_study"] for g in prior}) == 1


# --- end to end: the demo study and its real prior, through ``workstation report`` ------------------------


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workstation.cli import main
    from workstation.demo import ensure_demo_study

    root = tmp_path_factory.mktemp("followup_report")
    study = ensure_demo_study(root / "cache")
    db = root / "index.sqlite"
    assert main(["--db", str(db), "import", str(study)]) == 0
    out = root / "report"
    assert main(["--db", str(db), "report", "study:2", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_report_of_the_demo_pair_quotes_the_comparison_everywhere(demo_report: Path, tmp_path: Path) -> None:
    out = demo_report
    c = Comparison.from_dict(json.loads((out / "findings.json").read_text(encoding="utf-8"))["comparison"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["grounding"]["ok"], [s for s in report["grounding"]["sentences"] if s["status"] != "ok"]
    text = (out / "report.txt").read_text(encoding="utf-8")
    comparison = text.split("COMPARISON:\n", 1)[1].split("\n\n", 1)[0]
    assert f"Prior study: {c.prior_study_description} of {c.prior_study_date.isoformat()}" in comparison
    assert len(comparison.splitlines()) == 3 + len(c.changes)  # prior, registration, criteria, one per lesion
    grown = c.by_status(ChangeStatus.GROWN)
    assert len(grown) == 1 and grown[0].doubling_time_days is not None
    impression = text.split("IMPRESSION:\n", 1)[1]
    first = impression.splitlines()[0]
    assert first.startswith('1. Request "Follow-up right upper lobe nodule"')
    assert f"grown since {c.prior_study_date.isoformat()}" in first
    assert f"volume doubling time {grown[0].doubling_time_days:.0f} days" in first
    assert c.recommendation is not None and f"({c.recommendation.rule})" in impression
    pdf = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(str(out / "report.pdf")).pages)
    assert "Comparison with the prior study" in pdf and "VDT (days)" in pdf
    groups = _groups(out / "measurements_sr.dcm")
    assert sum(g.get("time_point") == "prior study" for g in groups) == sum(ch.prior is not None for ch in c.changes)
    if dciodvfy_path() is not None:
        assert report["validation"]["sr"]["errors"] == []
