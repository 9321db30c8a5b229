"""The prompt a language model drafts from: a strict instruction, then the facts as compact, unit-explicit lists.

Design:

- The system instruction asks for the five sections in order, with the
  Impression numbered, and forbids what the grounding check would flag anyway:
  anything not in the given facts, changed numbers or units, changed sides,
  identifiers. Models follow a short list of rules better than prose.
- Findings are one line each, "name: value unit", at the precision the
  template drafter uses, so a model that copies them produces numbers the
  grounding check accepts. Each lesion is one line (number, lobe or zone, axes,
  volume, attenuation, and the image a reader goes to, "series 2, image 78",
  never a grid index). Cautions are listed separately and the instruction says
  to keep them.
- The request in the notes comes first as numbered questions
  (``inference.drafting.indication``), each with the answer the measurements give
  (``inference.drafting.answers``), and the instruction says to answer them first
  in the Impression, in that order.
- A comparison with a prior study is given as the Comparison section's own
  lines (``inference.drafting.comparison``: prior date and series, each lesion's
  sizes prior and now, volume change, doubling time), and the guideline
  recommendation only as the comparison record holds it, with its rule; the
  instruction forbids any other follow-up advice.
- Notes are labelled by DICOM field name or "note N", never by file path
  (paths often contain patient names); the inputs are already scrubbed of
  identifiers (``inference.drafting.inputs``). Notes are capped in length so a
  long history cannot push the findings out of a small model's context.
- ``render_prompt`` uses the tokenizer's chat template when it has one (system
  folded into the user turn for templates that reject a system role), else a
  plain "instruction, facts, Report:" prompt.
"""

from __future__ import annotations

import logging
from typing import Any

from inference.drafting.answers import answer_targets, lung_coverage
from inference.drafting.comparison import prompt_lines, recommendation_item, summary_item
from inference.drafting.draft import SECTIONS
from inference.drafting.facts import image_reference, lesion_noun, lesion_place
from inference.drafting.indication import targets_of
from inference.drafting.inputs import ReportInputs, note_label
from inference.drafting.quantities import format_quantity, format_value
from inference.findings import lesion_volume_text, unit_text
from inference.labels import readable_name

logger = logging.getLogger(__name__)

MAX_NOTES_CHARS = 3000

SYSTEM_PROMPT = (
    "You draft radiology reports for a radiologist, who reviews and signs them. Rules:\n"
    "1. Write only what the clinical notes, technique and measured findings below support. Do not add findings, "
    "organs, measurements, sides or diagnoses that are not given.\n"
    "2. Copy every number with its unit exactly as given. Do not convert or recalculate.\n"
    "3. Keep right and left exactly as given.\n"
    "4. Keep every caution that applies to a value you report.\n"
    "5. Never write patient names, identifiers or dates of birth.\n"
    f"6. Use these sections in this order, each heading on its own line followed by a colon: "
    f"{', '.join(SECTIONS)}. Write the Impression as a numbered list.\n"
    "7. Begin the Impression by answering each question under REQUEST, in the order given, with the answer "
    "given there; then the other findings.\n"
    "8. Name each lesion's lobe or zone and its image (series and image number) exactly as given."
)
COMPARISON_RULE = (
    "\n9. In the Comparison section, give the prior study and each lesion's change exactly as given under "
    "COMPARISON (dates, sizes prior and now, volume change, doubling time, images). Give a follow-up "
    "recommendation only as given under RECOMMENDATION, with its rule; never any other."
)
"""Added to ``SYSTEM_PROMPT`` when a prior was compared (a prompt without one stays as short as before)."""


def findings_lines(inputs: ReportInputs) -> list[str]:
    """The measured findings, one compact line each, every value with its unit."""
    f = inputs.findings
    lines = []
    for m in f.measurements:
        where = f", {readable_name(m.structure)}" if m.structure and readable_name(m.structure) not in m.name else ""
        lines.append(f"{m.name}{where}: {format_quantity(m.value, unit_text(m.unit))}")
    for les in f.lesions:
        parts = [f"{lesion_noun(les.name)} {les.number}", lesion_place(les),
                 f"long x short axis {format_value(les.long_axis_mm, 0)} x {format_value(les.short_axis_mm, 0)} mm",
                 f"volume {lesion_volume_text(les.volume_ml)}"]
        if les.mean is not None and les.units == "HU":
            parts.append(f"mean attenuation {format_value(les.mean, 0)} HU")
        parts.append(image_reference(les))
        lines.append("; ".join(p for p in parts if p))
    if not f.lesions and inputs.label_table is not None:
        lines += [f"{lesion_noun(lab.name)}: none detected" for lab in inputs.label_table if lab.lesion]
    if not f.measurements:
        lesion_labels = {les.label for les in f.lesions}
        for s in f.structures:
            if s.name.lower() == "body" or s.label in lesion_labels:
                continue
            text = f"{readable_name(s.name)}: volume {format_quantity(s.volume_ml, 'mL')}"
            if s.mean is not None and s.units == "HU":
                text += f", mean attenuation {format_value(s.mean, 0)} HU"
            lines.append(text)
    return lines


def technique_lines(inputs: ReportInputs) -> list[str]:
    """The technique facts that are known, one per line."""
    t = inputs.technique
    contrast = {"yes": "given", "no": "not given", "unknown": "not recorded"}[t.contrast]
    facts = [("modality", t.modality), ("body part", t.body_part), ("study", t.study_description),
             ("series", t.series_description), ("intravenous contrast", contrast),
             ("slice thickness", f"{t.slice_thickness_mm:g} mm" if t.slice_thickness_mm else ""),
             ("kernel", t.kernel), ("scanner", " ".join(p for p in (t.manufacturer, t.scanner_model) if p)),
             ("automated analysis", inputs.analysis)]
    return [f"{name}: {value}" for name, value in facts if value]


def notes_lines(inputs: ReportInputs, max_chars: int = MAX_NOTES_CHARS) -> list[str]:
    """The de-identified notes, each labelled by field name or number, together at most ``max_chars``."""
    lines: list[str] = []
    left = max_chars
    for i, note in enumerate(inputs.notes, start=1):
        text = " ".join(note.text.split())
        if left <= 0:
            break
        if len(text) > left:
            text = text[:left].rsplit(" ", 1)[0] + " [...]"
        left -= len(text)
        lines.append(f"[{note_label(note, i)}] {text}")
    return lines


def request_lines(inputs: ReportInputs) -> list[str]:
    """The questions of the request, in order, each with the answer the measurements give."""
    targets = targets_of(inputs.notes)
    answers = answer_targets(inputs, targets, lung_coverage(inputs)).sentences
    return answers


def user_prompt(inputs: ReportInputs) -> str:
    """The facts block: the request's questions, notes, technique, comparison, measured findings, cautions."""
    def block(title: str, lines: list[str], empty: str) -> str:
        body = "\n".join(f"- {ln}" for ln in lines) if lines else f"- {empty}"
        return f"{title}:\n{body}"

    parts = [
        block("REQUEST (answer first, in this order)", request_lines(inputs), "no specific question"),
        block("CLINICAL NOTES (de-identified)", notes_lines(inputs), "none provided"),
        block("TECHNIQUE", technique_lines(inputs), "not recorded"),
        block("COMPARISON", [*prompt_lines(inputs), *[x for x in [summary_item(inputs)] if x]],
              "no prior imaging available"),
        *([block("RECOMMENDATION", [x for x in [recommendation_item(inputs)] if x],
                 "none: do not recommend follow-up intervals")] if inputs.comparison is not None else []),
        block("MEASURED FINDINGS (automated)", findings_lines(inputs), "none"),
        block("CAUTIONS", inputs.cautions(), "none"),
    ]
    return "\n\n".join(parts) + "\n\nWrite the report."


def build_messages(inputs: ReportInputs) -> list[dict[str, str]]:
    """Chat messages: the system instruction and the facts."""
    system = SYSTEM_PROMPT + (COMPARISON_RULE if inputs.comparison is not None else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": user_prompt(inputs)}]


def plain_prompt(messages: list[dict[str, str]]) -> str:
    """A prompt for a model without a chat template."""
    return "\n\n".join(m["content"] for m in messages) + "\n\nReport:\n"


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """(prompt text, whether the chat template was used) for ``tokenizer``."""
    if not getattr(tokenizer, "chat_template", None):
        return plain_prompt(messages), False
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # some templates reject a system turn: fold it into the user's
        logger.info("chat template refused a system message; folding it into the user message")
        merged = [{"role": "user", "content": "\n\n".join(m["content"] for m in messages)}]
        text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    return str(text), True
