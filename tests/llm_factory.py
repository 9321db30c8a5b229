"""A tiny, randomly initialised causal LM and an offline tokenizer, saved like a real model folder.

Used by the drafting tests and ``benchmarks/bench_drafting.py``: the loading,
streaming and cancelling code runs on a real transformers model, only a very
small one (hidden size 32, 2 layers). The tokenizer is a byte-level BPE trained
here on a small report-like corpus, wrapped in ``PreTrainedTokenizerFast``, so
nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.drafting.inputs import ReportInputs
    from inference.followup.model import Comparison

CORPUS = [
    "Clinical information: follow-up of a right upper lobe nodule; evaluate emphysema.",
    "Technique: CT of the chest without intravenous contrast, 2.5 mm slices, B30f kernel.",
    "Comparison: no prior imaging was available for comparison.",
    "Findings: lung volumes right 2170 mL, left 1772 mL. Emphysema index 13.5% right, 0.0% left.",
    "Nodule 1 (left lung): 22 x 22 mm, volume 5558 mm³, mean attenuation 30 HU; axial slice 41.",
    "Body composition: skeletal muscle area 94.3 cm², subcutaneous fat area 103.8 cm².",
    "Impression: 1. Four lung nodule candidates. 2. Emphysema index as above.",
    "Caution: %LAA-950 is valid on thin sections; body composition is not measured at L3.",
    "The patient is a 68-year-old former smoker with dyspnoea on exertion.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def build_tokenizer(vocab_size: int = 400, chat_template: bool = True) -> Any:
    """A byte-level BPE tokenizer trained on ``CORPUS`` (any text encodes; nothing is unknown)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   bos_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llm(folder: Path, *, chat_template: bool = True, hidden_size: int = 32, layers: int = 2,
                   seed: int = 0, context: int = 4096) -> Path:
    """Write a random Llama-architecture causal LM and its tokenizer to ``folder`` (safetensors); return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(chat_template=chat_template)
    vocab = len(tokenizer)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=context, tie_word_embeddings=True, initializer_range=0.5,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # never end early: every greedy run generates exactly max_new_tokens, so timings compare like with like
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def parameter_count(folder: Path) -> int:
    """Number of parameters recorded in a saved model's safetensors header."""
    total = 0
    for f in folder.glob("*.safetensors"):
        raw = f.read_bytes()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        for name, meta in header.items():
            if name != "__metadata__":
                n = 1
                for d in meta["shape"]:
                    n *= d
                total += n
    return total


def sample_inputs(notes: tuple[tuple[str, str], ...] | None = None,
                  comparison: Comparison | None = None) -> ReportInputs:
    """``ReportInputs`` shaped like the demo study's analysis (numbers taken from it), built without running it."""
    from inference.builtin_ct.table import LABEL_TABLE
    from inference.drafting.inputs import ClinicalNote, ReportInputs, TechniqueFacts
    from inference.findings import Findings, Lesion, Measurement, StructureFinding

    def structure(label: int, name: str, ml: float, mean: float, side: str, x: float) -> StructureFinding:
        return StructureFinding(label, name, int(ml / 0.005625), ml, mean, 10.0, "HU", (0, 0, 0), (10, 10, 10),
                                (60.0, 128.0, 128.0), (x, 0.0, 0.0), side)

    def lesion(number: int, long: float, short: float, ml: float, x: float, z: float, sl: int) -> Lesion:
        side = "left" if x > 0 else "right"
        return Lesion(10, "lung_nodule", number, int(ml / 0.005625), ml, 30.0, "HU", (sl + 0.5, 120.0, 128.0),
                      (x, 0.0, z), long, short, long + 0.5, short - 2.0, sl, side, f"{side} lung")

    laa = ("%LAA-950 is valid on thin sections (<= 1.5 mm); this series' slice thickness is 2.5 mm, which "
           "averages emphysema with denser neighbours and lowers the index")
    level = ("body composition is measured at the lung bases, not at L3: vertebral levels are not identified, "
             "so the areas are not comparable with L3 reference values")
    findings = Findings(
        structures=[structure(1, "body", 3437.8, 47.0, "midline", -3.2),
                    structure(2, "lung_right", 2169.7, -867.1, "right", -77.6),
                    structure(3, "lung_left", 1765.4, -850.0, "left", 82.1),
                    structure(4, "airway", 43.5, -1000.0, "midline", -0.4),
                    structure(6, "bone_marrow", 178.1, 272.5, "midline", 0.0),
                    structure(7, "muscle", 2751.3, 49.7, "midline", -0.9),
                    structure(8, "subcutaneous_fat", 3142.2, -100.0, "midline", 0.0),
                    structure(9, "visceral_fat", 4404.5, -90.1, "left", 8.3),
                    structure(10, "lung_nodule", 7.54, 29.9, "left", 72.7)],
        lesions=[lesion(1, 22.47, 22.47, 5.5575, 85.1, -45.0, 41), lesion(2, 14.41, 14.41, 1.485, 75.0, 60.0, 83),
                 lesion(3, 9.55, 8.49, 0.39375, -70.0, 65.0, 85), lesion(4, 5.30, 5.30, 0.10125, -84.75, -40.0, 43)],
        measurements=[
            Measurement("lung volume", 2170.2, "mL", "lung_right", "right"),
            Measurement("%LAA-950", 13.47, "%", "lung_right", "right", caution=laa),
            Measurement("lung volume", 1772.4, "mL", "lung_left", "left"),
            Measurement("%LAA-950", 0.0, "%", "lung_left", "left", caution=laa),
            Measurement("total lung volume", 3942.6, "mL", "lungs", ""),
            Measurement("%LAA-950", 7.41, "%", "lungs", "", caution=laa),
            Measurement("muscle area", 94.28, "cm2", "muscle", "", caution=level),
            Measurement("muscle volume", 2751.3, "mL", "muscle", ""),
            Measurement("subcutaneous fat area", 103.81, "cm2", "subcutaneous_fat", "", caution=level),
            Measurement("subcutaneous fat volume", 3142.2, "mL", "subcutaneous_fat", ""),
            Measurement("visceral fat area", 144.16, "cm2", "visceral_fat", "", caution=level),
            Measurement("visceral fat volume", 4404.5, "mL", "visceral_fat", ""),
            Measurement("bone mean HU", 250.0, "HU", "bone_marrow", "")],
        cautions=[laa, level])
    if notes is None:
        notes = (("DICOM ReasonForTheRequestedProcedure", "Follow-up right upper lobe nodule; evaluate emphysema"),
                 ("DICOM AdditionalPatientHistory", "68-year-old former smoker, 40 pack-years. Prior CT: right "
                                                    "upper lobe nodule of 16 mm."))
    technique = TechniqueFacts(modality="CT", body_part="CHEST", contrast="no", slice_thickness_mm=2.5,
                               manufacturer="Workstation Demo", scanner_model="Synthetic Chest Phantom",
                               kernel="B30f", study_description="CT CHEST WITHOUT CONTRAST")
    return ReportInputs(findings, technique, tuple(ClinicalNote(s, t) for s, t in notes), comparison, LABEL_TABLE,
                        "builtin.ct 1")
