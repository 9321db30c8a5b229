"""``workstation report`` end to end on a small demo study: analysis (run, then reused), template and tiny-LLM
drafting, the grounding check carried into the document, exports that validate, de-identification, errors."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pypdf import PdfReader
from pytestqt.qtbot import QtBot

from inference.cancel import CancelledError, CancelToken
from inference.drafting import SECTIONS, ReportDraft, TemplateDrafter, check_draft
from inference.drafting.quantities import find_quantities
from tests.requirements import SYSTEM_TOOLS_FIX, requires
from workstation.cli import main
from workstation.demo import generate_demo_study
from workstation.demo.phantom import PATIENT_ID, PATIENT_NAME
from workstation.document import AutosaveStore, ReportDocument, SentenceOrigin
from workstation.export.validate import dciodvfy_path, validate_file
from workstation.index import StudyIndex
from workstation.services.analysis_record import RECORD_FILE, load_recorded_analysis
from workstation.services.analysis_store import AnalysisStore
from workstation.services.drafting import build_document
from workstation.services.reporting import report_inputs, run_report
from workstation.services.studies import SeriesSource, load_series_volumes, resolve_for_analysis
from workstation.settings import Settings, get_settings

pytestmark = pytest.mark.slow

BIRTH_DATES = ("19560210", "1956-02-10", "10/02/1956")
NAME_PARTS = (PATIENT_NAME, PATIENT_NAME.upper(), "Phantom, Demo")
ANALYSIS_FILES = ("labels.nii.gz", "findings.json", "montage.png", RECORD_FILE)
NEEDS_DCIODVFY = requires(dciodvfy_path() is not None, "dciodvfy (Debian package dicom3tools) is not installed",
                          SYSTEM_TOOLS_FIX)


@dataclass
class Study:
    """The demo study imported into its own index, and the first template report run on it."""

    root: Path
    folder: Path
    db: Path
    hashes: dict[str, str]
    out: Path
    code: int
    stdout: str
    stderr: str

    def settings(self) -> Settings:
        return get_settings().model_copy(update={"db": self.db})


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the per-test settings isolation is not active yet
        mp.setenv("WORKSTATION_CONFIG_DIR", str(root / "config"))
        mp.setenv("WORKSTATION_DATA_DIR", str(root / "data"))
        get_settings.cache_clear()
        folder = root / "study"
        generate_demo_study(folder, shape=(60, 128, 128))
        db = root / "index.sqlite"
        code, _, err = _cli("--db", str(db), "import", str(folder))
        assert code == 0, err
        hashes = _hashes(folder)
        out = root / "template"
        code, stdout, stderr = _cli("--db", str(db), "report", "study:1", "--out", str(out), "--device", "cpu")
        yield Study(root, folder, db, hashes, out, code, stdout, stderr)
    get_settings.cache_clear()


def _copy_analysis(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ANALYSIS_FILES:
        shutil.copy2(src / name, dst / name)
    return dst


def _source(study: Study) -> SeriesSource:
    with StudyIndex(study.db) as index:
        return resolve_for_analysis("study:1", index, ("CT",))


def _assert_no_identifiers(text: str, where: str) -> None:
    for ident in (PATIENT_ID, *NAME_PARTS, *BIRTH_DATES):
        assert ident.lower() not in text.lower(), f"{ident!r} in {where}"


# ----------------------------------------------------------------------------- template drafter


def test_template_report_writes_text_json_pdf_and_dicom(study: Study) -> None:
    assert study.code == 0, study.stderr
    assert "drafting (template)" in study.stderr and "%]" in study.stderr  # progress on stderr
    assert study.stdout.count("DRAFT - not signed") == 2  # before and after the report
    assert "grounding check: all" in study.stdout
    out = study.out
    for name in ("report.txt", "report.json", "report.pdf", "seg.dcm", "measurements_sr.dcm", "report_sr.dcm",
                 *ANALYSIS_FILES):
        assert (out / name).is_file(), name
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert "DRAFT - NOT SIGNED" in text
    for section in SECTIONS:
        assert f"{section.upper()}:" in text
    findings = text.split("FINDINGS:", 1)[1].split("IMPRESSION:", 1)[0]
    assert re.search(r"right \d+ mL, left \d+ mL", findings)  # lung volumes with units and sides
    assert re.search(r"\d+ x \d+ mm", findings)  # nodule axes
    assert re.search(r"\d+(\.\d)?%", findings) and re.search(r"-?\d+ HU", findings)
    assert "left lung" in findings and "right lung" in findings
    # the report itself (what the drafter wrote, printed on the terminal) never holds the patient's identity
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    doc = ReportDocument.from_dict(report["document"])
    _assert_no_identifiers(doc.text(), "the report sections")
    _assert_no_identifiers(study.stdout, "the terminal output")
    assert report["status"] == "DRAFT - not signed" and doc.sign_off is None
    assert report["analysis"]["reused"] is False


def test_template_draft_passes_its_grounding_and_the_document_keeps_links(study: Study) -> None:
    report = json.loads((study.out / "report.json").read_text(encoding="utf-8"))
    grounding = report["grounding"]
    assert grounding["ok"] is True and grounding["sentences"]
    doc = ReportDocument.from_dict(report["document"])
    sentences = [s for _, s in doc.sentences()]
    assert len(sentences) == len(grounding["sentences"])
    assert all(s.provenance is SentenceOrigin.AI and s.ai_text == s.text and not s.flags for s in sentences)
    linked = [s for s in sentences if s.links]
    assert any(k.startswith("lesion:") for s in linked for k in s.links)  # nodule sentences navigate
    assert any(k.startswith("measurement:lung volume") for s in linked for k in s.links)
    assert doc.source.drafter == "template" and doc.source.analysis_model == "builtin.ct"
    # the unsigned draft is autosaved for the editor under the study's key
    saved = AutosaveStore(study.root / "data" / "report_drafts").load(doc.study_key)
    assert saved is not None and saved.text() == doc.text()


def test_pdf_is_marked_draft(study: Study) -> None:
    pdf = "\n".join(page.extract_text() or "" for page in PdfReader(study.out / "report.pdf").pages)
    assert "DRAFT" in pdf and "NOT SIGNED" in pdf
    assert "FINDINGS" in pdf.upper()


@NEEDS_DCIODVFY
def test_seg_and_srs_pass_dciodvfy(study: Study) -> None:
    for name in ("seg.dcm", "measurements_sr.dcm", "report_sr.dcm"):
        result = validate_file(study.out / name)
        assert result.available and not result.errors, (name, result.errors)
    report = json.loads((study.out / "report.json").read_text(encoding="utf-8"))
    assert {"seg", "sr", "report_sr"} <= set(report["validation"])
    sr = pydicom.dcmread(study.out / "report_sr.dcm")
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "PARTIAL"


def test_source_files_are_never_changed(study: Study) -> None:
    assert _hashes(study.folder) == study.hashes


# ----------------------------------------------------------------------------- reusing the analysis


def test_recorded_analysis_is_reused_only_for_the_same_series_model_and_files(study: Study, tmp_path: Path) -> None:
    settings = study.settings()
    out = _copy_analysis(study.out, tmp_path / "again")
    first = json.loads((study.out / "report.json").read_text(encoding="utf-8"))
    run = run_report(settings, "study:1", out, device="cpu", export_formats={"txt"})
    assert run.reused_analysis and run.reused_from == "the output folder"
    assert run.document.text() == ReportDocument.from_dict(first["document"]).text()  # same findings, same draft
    assert (out / "report.txt").is_file() and not (out / "seg.dcm").exists()

    source = _source(study)
    volume = load_series_volumes(source).volumes[0]
    record = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    assert load_recorded_analysis(out, source, "builtin.ct", record["model_version"], volume) is not None
    # another model version, another series (one image fewer), or a changed label map: not reused
    assert load_recorded_analysis(out, source, "builtin.ct", "0.0.1", volume) is None
    fewer = SeriesSource(source.label, source.headers[1:])
    assert load_recorded_analysis(out, fewer, "builtin.ct", record["model_version"], volume) is None
    labels = out / "labels.nii.gz"
    labels.write_bytes(labels.read_bytes() + b"\0")
    assert load_recorded_analysis(out, source, "builtin.ct", record["model_version"], volume) is None
    # the analysis store (shared with the window, filled by the first run) is looked at first, and the
    # output folder gets its files back; without it, the changed label map is not reused
    again = run_report(settings, "study:1", out, device="cpu", export_formats={"txt"})
    assert again.reused_analysis and again.reused_from == "the analysis store"
    assert load_recorded_analysis(out, source, "builtin.ct", record["model_version"], volume) is not None
    shutil.rmtree(AnalysisStore.for_settings(settings).root)
    labels.write_bytes(labels.read_bytes() + b"\0")
    rerun = run_report(settings, "study:1", out, device="cpu", export_formats={"txt"})
    assert not rerun.reused_analysis
    assert run_report(settings, "study:1", out, device="cpu", export_formats={"txt"}).reused_analysis
    assert not run_report(settings, "study:1", out, device="cpu", reuse=False, export_formats={"txt"}).reused_analysis


# ----------------------------------------------------------------------------- a language model


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.llm_factory import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access during a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_llm_report_runs_offline_streams_and_grounds_every_sentence(study: Study, tiny_llm: Path, tmp_path: Path,
                                                                    no_network: None) -> None:
    out = _copy_analysis(study.out, tmp_path / "llm")
    code, stdout, stderr = _cli("--db", str(study.db), "report", "study:1", "--out", str(out), "--llm",
                                str(tiny_llm), "--device", "cpu", "--max-new-tokens", "64")
    assert code == 0, stderr
    assert "drafting (language model tiny-llama)" in stderr and "DRAFT - not signed" in stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    meta = report["draft"]
    assert meta["drafter"] == "transformers" and meta["new_tokens"] == 64 and report["analysis"]["reused"]
    streamed = "".join(meta["raw_text"].split())[:12]
    assert streamed and streamed in "".join(stderr.split())  # the tokens reached the terminal
    doc = ReportDocument.from_dict(report["document"])
    assert "transformers" in doc.source.drafter and doc.sign_off is None
    checks = report["grounding"]["sentences"]
    sentences = [(sec.title, s) for sec, s in doc.sentences()]
    assert len(sentences) == len(checks) > 0
    for (title, sentence), check in zip(sentences, checks, strict=True):
        assert sentence.provenance is SentenceOrigin.AI and sentence.text == check["text"] and title == check["section"]
        assert sentence.flags == check["reasons"]
        assert sentence.links == [ln["key"] for ln in check["links"]]
        if find_quantities(sentence.text):  # a number with a unit is either grounded (linked) or flagged
            assert sentence.flags or sentence.links, sentence.text
    assert all(ord(c) >= 32 for s in doc.sentences() for c in s[1].text)  # no control characters in the report
    assert _hashes(study.folder) == study.hashes


def test_invented_numbers_are_flagged_in_the_document(study: Study) -> None:
    source = _source(study)
    volume = load_series_volumes(source).volumes[0]
    record = json.loads((study.out / RECORD_FILE).read_text(encoding="utf-8"))
    result = load_recorded_analysis(study.out, source, "builtin.ct", record["model_version"], volume)
    assert result is not None
    with StudyIndex(study.db) as index:
        inputs = report_inputs(index, 1, result, volume)
    lesion = max(result.findings.lesions, key=lambda x: x.long_axis_mm)
    side = "left" if "left" in lesion.location else "right"
    draft = ReportDraft({"Findings": [f"Nodule 1 in the {side} lung measures {lesion.long_axis_mm:.0f} mm.",
                                      "A 48 mm mass in the liver.", "Nodule 1 is in the "
                                      f"{'right' if side == 'left' else 'left'} lung."],
                         "Impression": ["Stable appearances."]}, {"drafter": "test"})
    grounding = check_draft(draft, inputs)
    doc = build_document("study-key", draft, grounding, result)
    good, invented, wrong_side = doc.section("Findings").sentences
    assert not good.flags and any(k.startswith("lesion:") for k in good.links)
    assert invented.flags and invented.unresolved and wrong_side.flags
    assert all(s.provenance is SentenceOrigin.AI for _, s in doc.sentences())
    assert len(doc.unresolved()) == len(grounding.flagged) >= 2


def test_notes_reach_the_drafter_without_patient_identity(study: Study, tmp_path: Path) -> None:
    source = _source(study)
    volume = load_series_volumes(source).volumes[0]
    record = json.loads((study.out / RECORD_FILE).read_text(encoding="utf-8"))
    result = load_recorded_analysis(study.out, source, "builtin.ct", record["model_version"], volume)
    assert result is not None
    db = shutil.copy(study.db, tmp_path / "index.sqlite")  # the shared index keeps its notes
    with StudyIndex(db) as index:
        index.add_typed_note(1, "Demo Phantom (DEMO0001), DOB 1956-02-10: cough since March.")
        inputs = report_inputs(index, 1, result, volume)
    texts = " ".join(n.text for n in inputs.notes)
    assert "cough since March" in texts and "Follow-up right upper lobe nodule" in texts
    assert "synthetic demo patient" in texts  # lower-case words that merely equal a name part are kept
    for ident in ("Phantom", PATIENT_ID, *BIRTH_DATES):
        assert ident not in texts
    assert all("/" not in n.source and "\\" not in n.source for n in inputs.notes)  # no file paths
    assert any(n.source == "DICOM AdditionalPatientHistory" for n in inputs.notes)
    assert inputs.technique.modality == "CT" and inputs.technique.study_description


def test_a_folder_outside_the_index_takes_its_notes_from_the_files(study: Study, tmp_path: Path) -> None:
    settings = study.settings().model_copy(update={"db": tmp_path / "empty.sqlite"})
    out = _copy_analysis(study.out, tmp_path / "folder")
    run = run_report(settings, str(study.folder), out, device="cpu", export_formats={"txt"})
    assert run.reused_analysis  # the record names the series by its DICOM keys, not by an index id
    sources = {n.source for n in run.inputs.notes}
    assert "DICOM ReasonForTheRequestedProcedure" in sources and any(s.startswith("text file ") for s in sources)
    assert all(str(study.folder) not in n.source for n in run.inputs.notes)
    assert "Follow-up right upper lobe nodule" in run.document.section("Clinical information").text()


def _sentences(doc: ReportDocument) -> list[tuple[str, str, list[str], list[str]]]:
    return [(sec.title, s.text, list(s.flags), list(s.links)) for sec, s in doc.sentences()]


def test_window_and_command_line_draft_through_one_pipeline(study: Study, tmp_path: Path, qtbot: QtBot) -> None:
    """The window's draft worker and ``workstation report`` draft, clean, check and flag alike: a note with
    control characters and U+FFFD comes out clean in both, and the two documents are the same."""
    from workstation.qt.report_panel import DraftWorker
    from workstation.services.catalog import Catalog
    from workstation.services.report_context import context_for_series

    db = Path(shutil.copy(study.db, tmp_path / "index.sqlite"))
    source = _source(study)
    with StudyIndex(db) as index:
        index.add_typed_note(1, "Cough\x07 since March \ufffd with fever;\x1b follow-up of the nodule.")
        row = index.find_series(source.headers[0].series_uid)
    assert row is not None
    run = run_report(study.settings().model_copy(update={"db": db}), "study:1", _copy_analysis(study.out, tmp_path),
                     device="cpu", export_formats={"txt"})
    volume = load_series_volumes(source).volumes[0]
    record = json.loads((study.out / RECORD_FILE).read_text(encoding="utf-8"))
    result = load_recorded_analysis(study.out, source, "builtin.ct", record["model_version"], volume)
    assert result is not None
    ctx = context_for_series(Catalog(db), row.id, result, volume)  # what the window drafts for
    raw = TemplateDrafter().draft(ctx.inputs)  # the drafter quotes the note as it is: cleaning is the pipeline's
    assert any(not c.isprintable() for _, _, text in raw.sentences() for c in text)
    worker = DraftWorker(stream_interval_ms=0)
    try:
        with qtbot.waitSignal(worker.finished, timeout=30_000) as done:
            worker.submit(ctx.subject)
    finally:
        assert worker.shutdown()
    window = done.args[1].document
    assert "Cough since March with fever" in run.document.text()  # the note is quoted, cleaned
    assert all(c.isprintable() for _, s in window.sentences() for c in s.text)
    assert _sentences(window) == _sentences(run.document)
    assert [s.text for s in window.unresolved()] == [s.text for s in run.document.unresolved()]
    assert (window.study_key, window.series_uid, window.source) == (run.document.study_key,
                                                                    run.document.series_uid, run.document.source)


# ----------------------------------------------------------------------------- de-identification, errors, cancel


def test_deidentified_report_holds_no_patient_identity(study: Study, tmp_path: Path) -> None:
    out = _copy_analysis(study.out, tmp_path / "deid")
    code, stdout, stderr = _cli("--db", str(study.db), "report", "study:1", "--out", str(out), "--deidentify",
                                "--device", "cpu", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert "study_key" not in summary and summary["status"] == "DRAFT - not signed"
    text = (out / "report.txt").read_text(encoding="utf-8")
    assert "ANON-" in text
    pdf = "\n".join(page.extract_text() or "" for page in PdfReader(out / "report.pdf").pages)
    report = (out / "report.json").read_text(encoding="utf-8")
    for where, content in (("report.txt", text), ("report.pdf", pdf), ("report.json", report)):
        _assert_no_identifiers(content, where)
        assert "Phantom" not in content, where
    study_uid = pydicom.dcmread(next(study.folder.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    assert study_uid not in report
    for name in ("seg.dcm", "measurements_sr.dcm", "report_sr.dcm"):
        ds = pydicom.dcmread(out / name)
        assert str(ds.PatientID).startswith("ANON-") and ds.PatientIdentityRemoved == "YES"
        assert not ds.get("PatientBirthDate") and ds.StudyInstanceUID != study_uid
    assert _hashes(study.folder) == study.hashes


def test_bad_llm_folder_fails_fast_with_a_clear_message(study: Study, tmp_path: Path) -> None:
    bad = tmp_path / "my-model"
    bad.mkdir()
    (bad / "pytorch_model.bin").write_bytes(b"\0")
    out = tmp_path / "out"
    code, _, stderr = _cli("--db", str(study.db), "report", "study:1", "--out", str(out), "--llm", str(bad))
    assert code == 2
    assert str(bad) in stderr and "config.json" in stderr and "safetensors" in stderr
    assert not out.exists()  # refused before any analysis ran
    code, _, stderr = _cli("--db", str(study.db), "report", "study:1", "--out", str(out), "--llm",
                           str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in stderr
    code, _, stderr = _cli("--db", str(study.db), "report", "study:99", "--out", str(out))
    assert code == 2 and "study:99" in stderr


def test_report_into_the_source_folder_is_refused(study: Study) -> None:
    for out in (study.folder, study.root):  # the folder of the files, or one above it
        code, _, stderr = _cli("--db", str(study.db), "report", "study:1", "--out", str(out))
        assert code == 2 and "source files" in stderr
    assert _hashes(study.folder) == study.hashes


def test_cancel_while_drafting_writes_no_report(study: Study, tmp_path: Path) -> None:
    out = _copy_analysis(study.out, tmp_path / "cancel")
    token = CancelToken()

    def progress(fraction: float, stage: str) -> None:
        if stage.startswith("drafting"):
            token.cancel()

    with pytest.raises(CancelledError):
        run_report(study.settings(), "study:1", out, device="cpu", progress=progress, cancel=token)
    assert not (out / "report.txt").exists() and not (out / "report.json").exists()
