"""Report drafting: inputs without identifiers, the draft's sections, the template drafter, and the transformers
drafter run for real (loading, streaming, cancelling, determinism) on a tiny random model built here."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from inference.cancel import CancelToken
from inference.drafting import (
    SECTIONS,
    ClinicalNote,
    ReportDraft,
    ReportInputs,
    TechniqueFacts,
    TemplateDrafter,
    TransformersDrafter,
    build_messages,
    check_draft,
    check_model_folder,
    make_drafter,
    scrub_identifiers,
    split_sentences,
)
from inference.drafting.llm import offline_environment
from inference.drafting.prompt import plain_prompt, user_prompt
from inference.drafting.template import fleischner_note
from inference.errors import ModelError
from inference.findings import Findings, Lesion
from tests.comparison_factory import sample_comparison
from tests.llm_factory import build_tiny_llm, sample_inputs

REPO = Path(__file__).resolve().parents[1]
IDENTIFIERS = ("DOE", "JOHN", "Doe", "12345678", "1950", "19500201", "Smith")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a chat template, saved as safetensors (built once per session)."""
    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_llm_plain(tiny_llm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model and tokenizer without a chat template."""
    folder = tmp_path_factory.mktemp("llm-plain") / "tiny-llama-plain"
    shutil.copytree(tiny_llm, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = folder / "tokenizer_config.json"
    import json

    data = json.loads(config.read_text(encoding="utf-8"))
    data.pop("chat_template", None)
    config.write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def drafter(tiny_llm: Path) -> TransformersDrafter:
    d = TransformersDrafter(tiny_llm, device="cpu", max_new_tokens=48, stream_interval_s=0.0)
    d.load()
    return d


@pytest.fixture
def inputs() -> ReportInputs:
    return sample_inputs()


def _identified_inputs() -> ReportInputs:
    """Inputs built the way a careless caller might: identifiers in a path, in note text, in header metadata."""
    base = sample_inputs()
    metadata = {"patient_name": "DOE^JOHN", "patient_id": "12345678", "patient_birth_date": "19500201",
                "slice_thickness": "2.5", "kernel": "B30f", "body_part": "CHEST", "manufacturer": "Acme",
                "series_description": "Thorax 2.5 B30f"}
    notes = (("/data/DOE^JOHN_12345678/notes.txt", "Patient: DOE^JOHN, DOB 01/02/1950, MRN: 12345678. "
                                                   "Referred for a right upper lobe nodule."),
             ("DICOM PatientComments", "Patient name: John Smith. Date of birth: 1 Feb 1950. Smoker."))
    return ReportInputs(base.findings, TechniqueFacts.from_metadata("CT", metadata, "CT CHEST"),
                        tuple(ClinicalNote(s, t) for s, t in notes),
                        sample_comparison(base.findings.lesions, description="Prior CT of DOE^JOHN"), base.label_table)


# ---------------------------------------------------------------- inputs and identifiers


def test_importing_the_report_package_stays_light() -> None:
    code = ("import sys, inference.drafting, inference; "
            "bad = [m for m in ('torch', 'transformers', 'monai', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_inputs_have_no_field_for_patient_identifiers() -> None:
    for cls in (ReportInputs, TechniqueFacts):
        names = " ".join(f.name for f in dataclasses.fields(cls)).lower()
        for word in ("patient", "name", "birth", "dob", "mrn", "accession"):
            assert word not in names, (cls.__name__, word)


@pytest.mark.parametrize(("text", "gone"), [
    ("Seen DOE^JOHN today.", "DOE^JOHN"),
    ("Seen DOE^JOHN^^MR today.", "JOHN"),
    ("DOB: 01/02/1950.", "1950"),
    ("date of birth 1 February 1950", "1950"),
    ("born 1950-02-01", "1950"),
    ("MRN: 12345678, smoker", "12345678"),
    ("Patient ID 12345678", "12345678"),
    ("Patient name: John Smith, 68 years", "Smith"),
])
def test_scrub_removes_obvious_identifiers(text: str, gone: str) -> None:
    assert gone not in scrub_identifiers(text)


def test_scrub_keeps_clinical_text() -> None:
    text = "68-year-old former smoker, 40 pack-years, stopped 2015. FEV1/FVC 0.62. Nodule 9 mm on 2023-04-01."
    assert scrub_identifiers(text) == text


def test_identifiers_never_reach_the_prompt_or_the_template(drafter: TransformersDrafter) -> None:
    inputs = _identified_inputs()
    texts = [drafter.prompt(inputs)[0], plain_prompt(build_messages(inputs)), TemplateDrafter().draft(inputs).text()]
    for text in texts:
        for ident in IDENTIFIERS:
            assert ident not in text, ident
    assert "right upper lobe nodule" in user_prompt(inputs)  # the clinical content itself is kept
    assert "[note 1]" in user_prompt(inputs)  # a file note is named by number, never by its path


def test_technique_facts_from_headers() -> None:
    meta = {"slice_thickness": "2.5", "kernel": "B30f", "contrast_agent": "", "body_part": "CHEST",
            "manufacturer": "Acme", "model": "Scan 64", "series_description": "Thorax"}
    t = TechniqueFacts.from_metadata("CT", meta, "CT CHEST WITHOUT CONTRAST")
    assert (t.slice_thickness_mm, t.kernel, t.contrast, t.scanner_model) == (2.5, "B30f", "no", "Scan 64")
    assert TechniqueFacts.from_metadata("CT", {**meta, "contrast_agent": "IOMEPROL"}).contrast == "yes"
    assert TechniqueFacts.from_metadata("CT", meta, "CT CHEST").contrast == "unknown"
    assert TechniqueFacts.from_metadata("CT", {**meta, "slice_thickness": "junk"}).slice_thickness_mm is None


# ---------------------------------------------------------------- the draft


def test_sentence_splitting_keeps_decimals_and_abbreviations() -> None:
    assert split_sentences("Volume 2.5 mL, e.g. small. Next one. Dr. Who saw 2.2 L. Done") == [
        "Volume 2.5 mL, e.g. small.", "Next one.", "Dr. Who saw 2.2 L.", "Done"]


def test_draft_text_round_trips() -> None:
    draft = ReportDraft({"Clinical information": ["Follow-up."], "Findings": ["A.", "B 2.5 mm."],
                         "Impression": ["One.", "Two, with detail."]})
    again = ReportDraft.from_text(draft.text())
    assert again.sections == draft.sections
    assert "1. One.\n2. Two, with detail." in draft.text()
    assert list(draft.sections) == list(SECTIONS)
    assert ReportDraft.from_dict(draft.to_dict()).sections == draft.sections


def test_from_text_tolerates_how_models_write_headings() -> None:
    text = ("Sure, here is the draft report:\n"
            "**CLINICAL HISTORY:** Follow-up of a nodule. Smoker.\n"
            "## Technique\nCT chest, 2.5 mm slices.\n"
            "FINDINGS\n- The right lung measures 2170 mL.\n- Nodule 1: left lung, 22 x 22 mm.\n"
            "Findings suggest nothing more.\n\n"
            "**Conclusion**\n1. Four nodules,\n   the largest 22 mm.\n2) Emphysema index 13.5%.\n")
    d = ReportDraft.from_text(text)
    assert d["Clinical information"] == ["Follow-up of a nodule.", "Smoker."]
    assert d["Technique"] == ["CT chest, 2.5 mm slices."]
    assert d["Comparison"] == []
    assert d["Findings"] == ["The right lung measures 2170 mL.", "Nodule 1: left lung, 22 x 22 mm.",
                             "Findings suggest nothing more."]
    assert d["Impression"] == ["Four nodules, the largest 22 mm.", "Emphysema index 13.5%."]


def test_from_text_without_headings_keeps_the_text_as_findings() -> None:
    assert ReportDraft.from_text("Lungs are measured. Two nodules.")["Findings"] == [
        "Lungs are measured.", "Two nodules."]
    assert ReportDraft.from_text("")["Findings"] == []


# ---------------------------------------------------------------- template drafter


def test_template_draft_is_deterministic_and_complete(inputs: ReportInputs) -> None:
    chunks: list[str] = []
    first = TemplateDrafter().draft(inputs, on_token=chunks.append)
    second = TemplateDrafter().draft(inputs)
    assert first.text() == second.text()
    assert len(chunks) == len(SECTIONS)
    text = first.text()
    for phrase in ("right 2170 mL", "left 1772 mL", "right lung 13.5%", "Nodule 1 (left lung): 22 x 22 mm",
                   "Nodule 3 (right lung): 10 x 8 mm", "94.3 cm²", "250 HU", "Fleischner Society 2017",
                   "over 8 mm", "2.5 mm slice thickness", "without intravenous contrast"):
        assert phrase in text, phrase
    for caution in inputs.cautions():
        assert caution in text
    assert first["Impression"] and first.metadata["ai_generated"] is True
    assert first.metadata["drafter"] == "template" and first.metadata["reviewed"] is False


def test_template_without_lesions_or_notes(inputs: ReportInputs) -> None:
    bare = ReportInputs(Findings(structures=inputs.findings.structures, measurements=[]),
                        label_table=inputs.label_table)
    d = TemplateDrafter().draft(bare)
    assert d["Clinical information"] == ["No clinical information was provided."]
    assert "No nodule candidates were detected." in d["Findings"]
    assert any(s.startswith("Right lung: volume 2170 mL") for s in d["Findings"])


def test_template_cancel_stops_between_sections(inputs: ReportInputs) -> None:
    token = CancelToken()
    d = TemplateDrafter().draft(inputs, on_token=lambda _: token.cancel(), cancel=token)
    assert d.metadata["cancelled"] is True and d["Clinical information"] and not d["Technique"]


def _nodule(long_mm: float, short_mm: float) -> Lesion:
    return Lesion(10, "lung_nodule", 1, 10, 0.1, 30.0, "HU", (0.0, 0.0, 0.0), (-50.0, 0.0, 0.0), long_mm,
                  short_mm, long_mm, short_mm, 0, "right", "right lung")


@pytest.mark.parametrize(("long_mm", "short_mm", "phrase"), [
    (5.0, 4.0, "under 6 mm"), (7.0, 6.0, "6-8 mm"), (12.0, 9.0, "over 8 mm"), (35.0, 30.0, "do not apply"),
])
def test_fleischner_note_names_only_the_size_category(long_mm: float, short_mm: float, phrase: str) -> None:
    note = fleischner_note(_nodule(long_mm, short_mm))
    assert phrase in note
    assert "months" not in note  # no follow-up interval: it depends on risk factors the analysis does not know


# ---------------------------------------------------------------- transformers drafter: folder checks


def test_missing_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TransformersDrafter(tmp_path / "nowhere")


def test_folder_without_weights_names_what_is_missing(tiny_llm: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_llm, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError) as err:
        TransformersDrafter(folder)
    assert str(folder) in str(err.value) and "safetensors" in str(err.value)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="pickle weights are not loaded"):
        check_model_folder(folder)


def test_folder_without_tokenizer_or_config(tiny_llm: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_llm, folder)
    (folder / "tokenizer.json").unlink()
    (folder / "config.json").unlink()
    with pytest.raises(ModelError, match=r"config\.json.*tokenizer"):
        check_model_folder(folder)


def test_loading_is_local_offline_and_safe(tiny_llm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    seen: list[tuple[str, dict[str, Any], str | None]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained

        def spy(path: str, *args: Any, _orig: Any = original, _name: str = cls.__name__, **kwargs: Any) -> Any:
            seen.append((_name, dict(kwargs), os.environ.get("HF_HUB_OFFLINE")))
            return _orig(path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    TransformersDrafter(tiny_llm, device="cpu").load()
    assert [s[0] for s in seen] == ["AutoTokenizer", "AutoModelForCausalLM"]
    for _, kwargs, offline in seen:
        assert kwargs["local_files_only"] is True and kwargs["trust_remote_code"] is False
        assert offline == "1"
    assert seen[1][1]["use_safetensors"] is True
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after the call


def test_offline_environment_restores_previous_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with offline_environment():
        assert os.environ["TRANSFORMERS_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0" and "HF_HUB_OFFLINE" not in os.environ


# ---------------------------------------------------------------- transformers drafter: generation


def test_draft_streams_chunks_and_records_provenance(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    chunks: list[str] = []
    draft = drafter.draft(inputs, on_token=chunks.append)
    meta = draft.metadata
    assert len(chunks) >= 3 and all(chunks)
    assert "".join(chunks) == meta["raw_text"]
    assert meta["drafter"] == "transformers" and meta["ai_generated"] is True and meta["cancelled"] is False
    assert meta["model"] == "tiny-llama" and meta["architecture"] == "LlamaForCausalLM"
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["chat_template"] is True
    assert meta["new_tokens"] == 48 and meta["prompt_tokens"] > 100
    assert 0 < meta["time_to_first_token_s"] <= meta["generate_s"] <= meta["total_s"]
    assert isinstance(draft, ReportDraft)
    report = check_draft(draft, inputs)  # a random model's text is checked without error (and mostly flagged)
    assert len(report.sentences) == len(list(draft.sentences()))


def _drain(streamer: Any) -> list[str]:
    out = []
    while not streamer.text_queue.empty():
        item = streamer.text_queue.get_nowait()
        if item is not None:
            out.append(item)
    return out


def test_streamer_decodes_incrementally_to_the_same_text(drafter: TransformersDrafter) -> None:
    import torch

    from inference.drafting.streaming import make_streamer

    tok = drafter.tokenizer
    text = "Nodule 1: 22 x 22 mm, 94.3 cm² — naïve café\nLine two ends here."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    streamer = make_streamer(tok, 0.0)
    streamer.put(torch.tensor([[5, 6, 7]]))  # the prompt: skipped
    pieces: list[str] = []
    for i in ids:
        streamer.put(torch.tensor([i]))
        pieces += _drain(streamer)
    streamer.end()
    pieces += _drain(streamer)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
    assert len(pieces) > 5 and all(pieces) and not any("\ufffd" in p for p in pieces)


def test_streamer_joins_text_arriving_faster_than_its_interval(drafter: TransformersDrafter) -> None:
    import torch

    from inference.drafting.streaming import make_streamer

    tok = drafter.tokenizer
    ids = tok("right lung 2170 mL, left lung 1772 mL.", add_special_tokens=False)["input_ids"]
    streamer = make_streamer(tok, 60.0)
    streamer.put(torch.tensor([ids[:1]]))
    for i in ids:
        streamer.put(torch.tensor([i]))
    assert len(_drain(streamer)) == 1  # the first piece at once, the rest held back
    streamer.end()
    assert len(_drain(streamer)) == 1


def test_default_streaming_still_sends_several_chunks(tiny_llm: Path, inputs: ReportInputs) -> None:
    chunks: list[str] = []
    draft = TransformersDrafter(tiny_llm, device="cpu").draft(inputs, on_token=chunks.append, max_new_tokens=300)
    assert len(chunks) >= 2 and "".join(chunks) == draft.metadata["raw_text"]


def test_greedy_drafts_are_deterministic(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    a = drafter.draft(inputs, max_new_tokens=24)
    b = drafter.draft(inputs, max_new_tokens=24)
    assert a.metadata["raw_text"] == b.metadata["raw_text"]
    assert a.text() == b.text()


def test_cancel_after_a_few_chunks_stops_promptly(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    token = CancelToken()
    seen: list[float] = []

    def on_token(_: str) -> None:
        seen.append(time.perf_counter())
        if len(seen) == 3:
            token.cancel()

    draft = drafter.draft(inputs, on_token=on_token, cancel=token, max_new_tokens=1500)
    meta = draft.metadata
    assert meta["cancelled"] is True
    assert meta["new_tokens"] < 200  # stopped long before max_new_tokens
    assert time.perf_counter() - seen[2] < 5.0


def test_cancel_before_start_returns_at_once(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    token = CancelToken()
    token.cancel()
    draft = drafter.draft(inputs, cancel=token, max_new_tokens=500)
    assert draft.metadata["cancelled"] is True and draft.metadata["new_tokens"] <= 1


def test_cancel_from_another_thread(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    token = CancelToken()
    timer = threading.Timer(0.5, token.cancel)
    timer.start()
    try:
        draft = drafter.draft(inputs, cancel=token, max_new_tokens=1500)
    finally:
        timer.cancel()
    assert draft.metadata["cancelled"] is True and draft.metadata["new_tokens"] < 1500


def test_a_failing_callback_stops_generation_and_is_raised(drafter: TransformersDrafter,
                                                           inputs: ReportInputs) -> None:
    def boom(_: str) -> None:
        raise RuntimeError("viewer closed")

    with pytest.raises(RuntimeError, match="viewer closed"):
        drafter.draft(inputs, on_token=boom, max_new_tokens=1500)
    assert not [t for t in threading.enumerate() if t.name == "llm-generate"]


def test_prompt_longer_than_the_context_is_a_model_error(drafter: TransformersDrafter, inputs: ReportInputs) -> None:
    with pytest.raises(ModelError, match="exceed the context"):
        drafter.draft(inputs, max_new_tokens=10_000)


def test_model_without_chat_template_gets_a_plain_prompt(tiny_llm_plain: Path, inputs: ReportInputs) -> None:
    plain = TransformersDrafter(tiny_llm_plain, device="cpu", max_new_tokens=8)
    prompt, chat = plain.prompt(inputs)
    assert chat is False and prompt.endswith("Report:\n") and "Write only what" in prompt
    assert plain.draft(inputs).metadata["chat_template"] is False
    plain.unload()
    assert not plain.loaded
    assert plain.draft(inputs).metadata["new_tokens"] == 8  # loads again on demand


def test_chat_prompt_holds_the_instruction_and_unit_explicit_findings(drafter: TransformersDrafter,
                                                                      inputs: ReportInputs) -> None:
    prompt, chat = drafter.prompt(inputs)
    assert chat is True and prompt.startswith("<|system|>") and prompt.endswith("<|assistant|>\n")
    for line in ("lung volume, right lung: 2170 mL", "%LAA-950, right lung: 13.5%", "muscle area: 94.3 cm²",
                 "nodule 1; left lung; long x short axis 22 x 22 mm", "slice thickness: 2.5 mm"):
        assert line in prompt, line


def test_make_drafter_picks_the_model_or_the_template(tiny_llm: Path) -> None:
    assert isinstance(make_drafter(None), TemplateDrafter)
    assert isinstance(make_drafter(tiny_llm, device="cpu"), TransformersDrafter)
    with pytest.raises(ModelError):
        make_drafter(tiny_llm.parent / "missing")
