"""The template drafter: a deterministic report from the measured findings, used when no LLM is installed.

It writes only what was measured or written in the notes, in the wording a
radiologist would start from: measurements with units and fixed rounding
(lengths to the mm, volumes to the mL, lesion volumes to the mm³, indices to
0.1 %, areas to 0.1 cm², attenuation to the HU), sides named, nodules listed
largest first with long x short axis, lobe or zone and the image a reader goes
to ("series 2, image 78", never a grid index), every caution of the analysis
quoted, and a numbered impression that first answers the request in the notes,
in order (``inference.drafting.answers``), then lists what else was found; a scan
range without lungs leads with the anatomy analysed. The one piece of guidance it
gives is generic: which Fleischner Society (2017) size category the largest
solid nodule falls in, and when those guidelines apply at all; it never
chooses a follow-up interval, since that depends on risk factors it does not
know. With a prior compared (``ReportInputs.comparison``) the Comparison section,
the follow-up answer, a change summary and the guideline recommendation come from
the comparison record (``inference.drafting.comparison``); the recommendation is
only ever the record's. Its output passes its own grounding check
(``inference.drafting.grounding``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from inference.cancel import CancelToken
from inference.drafting.answers import (
    analysed_anatomy,
    answer_targets,
    lesion_labels,
    lesion_list,
    lesion_phrase,
    lung_coverage,
    side_of_lesion,
)
from inference.drafting.comparison import comparison_section, recommendation_item, summary_item
from inference.drafting.draft import CLINICAL, COMPARISON, FINDINGS, IMPRESSION, SECTIONS, TECHNIQUE, ReportDraft
from inference.drafting.facts import image_reference, lesion_noun, lesion_place
from inference.drafting.indication import targets_of
from inference.drafting.inputs import ReportInputs
from inference.drafting.quantities import format_quantity, format_value
from inference.drafting.sentences import split_sentences
from inference.findings import Findings, Lesion, Measurement, lesion_volume_text
from inference.labels import readable_name

logger = logging.getLogger(__name__)

TEMPLATE_VERSION = "1"
MAX_LISTED_LESIONS = 10
MAX_CLINICAL_SENTENCES = 8
# note sources in the order their sentences come first; exam names are not clinical information
_NOTE_PRIORITY = ("ReasonForTheRequestedProcedure", "AdditionalPatientHistory", "AdmittingDiagnosesDescription",
                  "PatientComments")
_NOT_CLINICAL = ("StudyDescription", "SeriesDescription", "RequestedProcedureDescription", "ImageComments")
_FLEISCHNER_APPLIES = ("if the nodule is incidental in a patient aged 35 or over without known cancer or "
                       "immunosuppression (the guidelines do not apply to lung cancer screening)")

TokenCallback = Callable[[str], None]


def fmt(value: float, decimals: int, unit: str) -> str:
    """A value with its unit, rounded half away from zero: ``fmt(13.47, 1, "%")`` -> "13.5%"."""
    return format_quantity(value, unit, decimals)


class TemplateDrafter:
    """Drafts a report from ``ReportInputs`` with fixed wording. Deterministic; no model needed."""

    name = "template"

    def draft(self, inputs: ReportInputs, on_token: TokenCallback | None = None,
              cancel: CancelToken | None = None) -> ReportDraft:
        """The draft; ``on_token`` receives each section's text as it is written, ``cancel`` stops between sections."""
        t0 = time.perf_counter()
        builders = {CLINICAL: clinical_information, TECHNIQUE: technique, COMPARISON: comparison,
                    FINDINGS: findings, IMPRESSION: impression}
        sections: dict[str, list[str]] = {s: [] for s in SECTIONS}
        cancelled = False
        for section in SECTIONS:
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            sections[section] = builders[section](inputs)
            if on_token is not None:
                on_token(f"{section}:\n" + "\n".join(sections[section]) + "\n\n")
        meta = {"drafter": self.name, "template_version": TEMPLATE_VERSION, "ai_generated": True,
                "automated": True, "reviewed": False, "analysis": inputs.analysis, "cancelled": cancelled,
                "total_s": round(time.perf_counter() - t0, 4)}
        return ReportDraft(sections, meta)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else f"{text}."


def clinical_information(inputs: ReportInputs) -> list[str]:
    """Sentences of the notes: the request and history first, near-duplicates dropped, headings skipped."""
    def rank(item: tuple[int, str]) -> tuple[int, int]:
        index, source = item
        field = source[6:] if source.startswith("DICOM ") else ""
        return (_NOTE_PRIORITY.index(field) if field in _NOTE_PRIORITY else len(_NOTE_PRIORITY), index)

    order = sorted(((i, n.source) for i, n in enumerate(inputs.notes)), key=rank)
    chosen: list[str] = []
    seen: list[set[str]] = []
    for i, source in order:
        if source.startswith("DICOM ") and source[6:] in _NOT_CLINICAL:
            continue
        for paragraph in re.split(r"\n\s*\n", inputs.notes[i].text):
            flat = " ".join(paragraph.split())
            heading = (not source.startswith("DICOM ") and "\n" not in paragraph.strip() and len(flat) < 80
                       and flat[-1:] not in (".", "!", "?"))
            if not flat or heading or flat.endswith(":"):
                continue  # a note file's title line
            for s in split_sentences(flat):
                words = set(re.findall(r"[a-z0-9]+", s.lower()))
                if not words or any(len(words & w) >= 0.6 * min(len(words), len(w)) for w in seen):
                    continue
                seen.append(words)
                chosen.append(_sentence(s))
                if len(chosen) >= MAX_CLINICAL_SENTENCES:
                    return chosen
    return chosen or ["No clinical information was provided."]


def technique(inputs: ReportInputs) -> list[str]:
    """Modality, region, contrast, reconstruction, scanner and the automated analysis, as the headers tell."""
    t = inputs.technique
    region = t.body_part.lower().replace("_", " ")
    first = f"{t.modality or 'Imaging'} of the {region}" if region else f"{t.modality or 'Imaging'} examination"
    out = []
    if t.contrast == "yes":
        out.append(f"{first} with intravenous contrast.")
    elif t.contrast == "no":
        out.append(f"{first} without intravenous contrast.")
    else:
        out += [f"{first}.", "Contrast administration is not recorded in the image headers."]
    recon = []
    if t.slice_thickness_mm is not None:
        recon.append(f"{format_value(t.slice_thickness_mm, 2).rstrip('0').rstrip('.')} mm slice thickness")
    if t.kernel:
        recon.append(f"the {t.kernel} kernel")
    if recon:
        out.append("Images reconstructed at " + " with ".join(recon) + "." if t.slice_thickness_mm is not None
                   else f"Images reconstructed with {recon[0]}.")
    scanner = " ".join(p for p in (t.manufacturer, t.scanner_model) if p)
    if scanner:
        out.append(f"Scanner: {scanner}.")
    if inputs.analysis:
        out.append(f"Automated segmentation and measurements: {inputs.analysis}.")
    return out


def comparison(inputs: ReportInputs) -> list[str]:
    """The prior study and each lesion's change, or a statement that no prior was available."""
    return comparison_section(inputs)


def _m(f: Findings, name: str, side: str = "", structure: str = "") -> Measurement | None:
    return next((m for m in f.measurements if m.name == name and (not side or m.side == side)
                 and (not structure or m.structure == structure)), None)


def _lesion_line(les: Lesion) -> str:
    place = lesion_place(les)
    where = f" ({place})" if place else ""
    parts = [f"{format_value(les.long_axis_mm, 0)} x {format_value(les.short_axis_mm, 0)} mm "
             "(long x short axis, axial)", f"volume {lesion_volume_text(les.volume_ml)}"]
    if les.mean is not None and les.units == "HU":
        parts.append(f"mean attenuation {format_value(les.mean, 0)} HU")
    at = image_reference(les) or f"z = {format_value(les.centroid_lps[2], 1)} mm"  # the image, else its position
    return f"{lesion_noun(les.name).capitalize()} {les.number}{where}: " + ", ".join(parts) + f"; {at}."


def findings(inputs: ReportInputs) -> list[str]:
    """Lungs, lesions, body composition, bone, any other measurement, then every caution."""
    f = inputs.findings
    out: list[str] = []
    used: set[int] = set()

    def use(m: Measurement | None) -> Measurement | None:
        if m is not None:
            used.add(id(m))
        return m

    right, left = use(_m(f, "lung volume", "right")), use(_m(f, "lung volume", "left"))
    total = use(_m(f, "total lung volume"))
    if right or left:
        parts = [f"{m.side} {fmt(m.value, 0, 'mL')}" for m in (right, left) if m]
        if total:
            parts.append(f"total {fmt(total.value, 0, 'mL')}")
        out.append(_sentence("Lung volumes: " + ", ".join(parts)))
    laa = [use(m) for m in f.measurements if m.name == "%LAA-950"]
    if laa:
        parts = [f"{m.side + ' lung' if m.side else 'both lungs'} {fmt(m.value, 1, '%')}" for m in laa if m]
        out.append("Emphysema index (%LAA-950, share of lung voxels below -950 HU): " + ", ".join(parts) + ".")
    out += _lesions(inputs)
    areas = [use(_m(f, f"{n} area")) for n in ("muscle", "subcutaneous fat", "visceral fat")]
    if any(areas):
        parts = [f"{_tissue(m)} area {fmt(m.value, 1, 'cm²')}" for m in areas if m]
        out.append("Body composition on one axial slice: " + ", ".join(parts) + ".")
    volumes = [use(_m(f, f"{n} volume")) for n in ("muscle", "subcutaneous fat", "visceral fat")]
    if any(volumes):
        parts = [f"{_tissue(m)} {fmt(m.value, 0, 'mL')}" for m in volumes if m]
        out.append("Whole-scan tissue volumes: " + ", ".join(parts) + ".")
    bone = use(_m(f, "bone mean HU"))
    if bone:
        out.append(f"Mean attenuation of the vertebral trabecular bone: {fmt(bone.value, 0, 'HU')}.")
    for m in f.measurements:  # anything this template has no wording for is still reported
        if id(m) not in used:
            where = f" ({readable_name(m.structure)})" if m.structure else ""
            out.append(_sentence(f"{m.name}{where}: {fmt(m.value, 1, m.unit)}"))
    if not f.measurements:
        out += _structures(inputs)
    out += [_sentence(f"Caution: {c}") for c in inputs.cautions()]
    return out or ["No measurements are available."]


def _tissue(m: Measurement) -> str:
    return "skeletal muscle" if m.structure == "muscle" else readable_name(m.structure)


def _structures(inputs: ReportInputs) -> list[str]:
    """Volume (and mean attenuation on CT) of each segmented structure, for models without measurements."""
    lesion_labels = {les.label for les in inputs.findings.lesions}
    out = []
    for s in inputs.findings.structures:
        if s.name.lower() == "body" or s.label in lesion_labels:
            continue
        text = f"{readable_name(s.name)}: volume {fmt(s.volume_ml, 0 if s.volume_ml >= 10 else 1, 'mL')}"
        if s.mean is not None and s.units == "HU":
            text += f", mean attenuation {fmt(s.mean, 0, 'HU')}"
        out.append(_sentence(text))
    return out


def _lesion_labels_assessed(inputs: ReportInputs) -> list[str]:
    table = inputs.label_table
    return [lab.name for lab in table if lab.lesion] if table is not None else []


def _no_lung(inputs: ReportInputs) -> bool:
    """Whether the model labels lungs but the scan range holds none (lung statements are then not assessable)."""
    cov = lung_coverage(inputs)
    return cov.modelled and not cov.present


def _lesions(inputs: ReportInputs) -> list[str]:
    lesions = inputs.findings.lesions
    if not lesions and _no_lung(inputs):
        return ["No lung is in the scan range, so lung nodules were not assessed."]
    if not lesions:
        return [_sentence(f"No {lesion_noun(n)} candidates were detected") for n in _lesion_labels_assessed(inputs)]
    out = []
    for name in dict.fromkeys(les.name for les in lesions):
        group = sorted((les for les in lesions if les.name == name), key=lambda x: x.number)
        noun = lesion_noun(name)
        sides = [sum(1 for les in group if _side(les) == s) for s in ("right", "left")]
        count = f"{len(group)} {readable_name(name)} candidate{'s' if len(group) != 1 else ''}"
        if any(sides):
            where = ", ".join(f"{n} in the {s} lung" if "lung" in readable_name(name) else f"{n} on the {s}"
                              for n, s in zip(sides, ("right", "left"), strict=True) if n)
            out.append(f"{count}: {where}.")
        else:
            out.append(f"{count}.")
        out += [_lesion_line(les) for les in group[:MAX_LISTED_LESIONS]]
        if len(group) > MAX_LISTED_LESIONS:
            out.append(f"Further smaller {noun} candidates are not listed ({len(group) - MAX_LISTED_LESIONS}).")
    return out


def _side(les: Lesion) -> str:
    return side_of_lesion(les)


def impression(inputs: ReportInputs) -> list[str]:
    """Numbered conclusions, never a diagnosis.

    First what the scan range holds when it holds no lung (the anatomy analysed);
    then one answer per request in the notes, in order; with a prior compared,
    the change summary; then the lesions no answer named (and the Fleischner size
    category of the largest nodule, or the comparison record's guideline
    recommendation with its rule), the
    emphysema index when no answer gave it, and what could not be assessed.
    """
    f = inputs.findings
    cov = lung_coverage(inputs)
    targets = targets_of(inputs.notes)
    answers = answer_targets(inputs, targets, cov)
    out: list[str] = []
    if not cov.present:
        out.append(analysed_anatomy(inputs))
    out += answers.sentences
    summary = summary_item(inputs)
    if summary is not None and not any("registration failed" in a and "registration failed" in summary
                                       for a in answers.sentences):  # a failed comparison is said once
        out.append(summary)
    recommendation = recommendation_item(inputs)
    asked = any(t.is_lesion for t in targets)
    for name in dict.fromkeys(les.name for les in f.lesions):
        group = [les for les in f.lesions if les.name == name]
        rest = [les for les in group if (les.name, les.number) not in answers.lesions]
        largest = max(group, key=lambda x: (x.long_axis_mm, -x.number))
        label = readable_name(name)
        if asked and rest:
            out.append(_sentence(f"Other {label} candidates: {lesion_list(rest)}"))
        elif not asked:
            out.append(f"{len(group)} {label} candidate{'s' if len(group) != 1 else ''}; the largest, "
                       f"{lesion_phrase(largest)}.")
        if lesion_noun(name) == "nodule" and (inputs.comparison is None or inputs.comparison.recommendation is None):
            out.append(fleischner_note(largest))
    if recommendation is not None:
        out.append(recommendation)
    if not f.lesions and not asked and lesion_labels(inputs):
        if cov.modelled and not cov.present:
            answers.lungs_absent_said = True
            out.append("No lung is in the scan range, so lung nodules and emphysema were not assessable.")
        else:
            out += [_sentence(f"No {lesion_noun(n)} candidates detected by the automated analysis")
                    for n in _lesion_labels_assessed(inputs)]
    if cov.modelled and not cov.present and not answers.lungs_absent_said:
        out.append("No lung is in the scan range, so lung findings were not assessable.")
    laa = [m for m in f.measurements if m.name == "%LAA-950" and m.side]
    if laa and not answers.emphysema:
        parts = ", ".join(f"{m.side} lung {fmt(m.value, 1, '%')}" for m in laa)
        caution = "; interpret with caution, see the findings" if any(m.caution for m in laa) else ""
        out.append(f"Emphysema index (%LAA-950): {parts}{caution}.")
    return out or ["Automated measurements as above; no lesion was detected."]


def fleischner_note(largest: Lesion) -> str:
    """Which Fleischner Society 2017 size category the largest solid nodule is in, and when that applies.

    The category uses the mean of long and short axis (as the guidelines do),
    and names the category's bound rather than an interval: the interval
    depends on nodule number and patient risk, which the analysis does not know.
    """
    mean = (largest.long_axis_mm + largest.short_axis_mm) / 2.0
    size = f"mean diameter {format_value(mean, 0)} mm"
    if largest.long_axis_mm > 30.0:
        return (f"Nodule {largest.number} measures more than 30 mm: a mass, to which the Fleischner Society "
                "guidelines for pulmonary nodules do not apply.")
    if mean > 8.0:
        category = "solid nodules over 8 mm"
    elif mean >= 6.0:
        category = "solid nodules of 6-8 mm"
    else:
        category = "solid nodules under 6 mm"
    return (f"The largest nodule candidate ({size}) is in the Fleischner Society 2017 category for {category}; "
            f"manage according to nodule number and patient risk {_FLEISCHNER_APPLIES}.")
