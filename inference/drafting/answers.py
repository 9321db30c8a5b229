"""The impression's answers to the clinical question, and what the scan range holds.

For each ``Target`` of the request (``inference.drafting.indication``), in order,
one impression item: ``Request "<the request as written>": <answer>.`` The
request is quoted verbatim from the notes, so the grounding check reads it as
the notes' words, not as a claim about this scan. Answers:

- Lesions (nodule, mass, metastases): the candidates in the place asked about,
  each with its place, long x short axis and image ("nodule 3 in the right
  upper zone, peripheral, measures 10 x 8 mm (series 2, image 85)"); or "no
  nodule candidate was found in the right upper zone"; or why it could not be
  assessed: no lung (or not that lung, or that lobe) in the scan range, that
  zone cut off by the scan range, or no lesion detection in this analysis.
  When lobes are not segmented, a lobe asked about is answered by the zone of
  the same name, and the answer says so.
- Emphysema: the %LAA-950 values, or why there are none.
- A follow-up request for lesions, with a prior compared
  (``ReportInputs.comparison``): each lesion answered also says how it changed
  since the prior ("grown since 2025-11-06 from 7.5 mm to 11.0 mm mean
  diameter, volume +238%, volume doubling time 212 days",
  ``inference.drafting.comparison``); a registration that failed its check is
  said instead; with no prior, that interval change was not assessed.
- Anything else ("?PE"): not assessed by the automated analysis (the quoted
  request names what it is; "pulmonary embolism" written out would name what
  neither the notes nor the findings name).

``LungCoverage`` says which lungs (and lobes) the scan range holds and which
ends of a lung the range cuts (``inference.findings.zones.cut_lungs``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from inference.drafting.comparison import change_clause, not_compared_clause
from inference.drafting.facts import image_reference, lesion_noun, lesion_place, lesion_zone
from inference.drafting.indication import Target
from inference.drafting.inputs import ReportInputs
from inference.drafting.quantities import format_quantity, format_value
from inference.findings import Lesion, Measurement, cut_lungs, lung_part
from inference.labels import readable_name

logger = logging.getLogger(__name__)

MAX_ANSWERED_LESIONS = 3
MAX_ANATOMY_NAMES = 8
LAA = "%LAA-950"


@dataclass(frozen=True)
class LungCoverage:
    """Which lungs the model labels and the scan range holds, by lobe where lobes are labelled."""

    modelled: bool = False
    present: frozenset[str] = frozenset()
    lobe_sides: frozenset[str] = frozenset()
    lobes_present: frozenset[tuple[str, str]] = frozenset()
    cut: dict[str, frozenset[str]] = field(default_factory=dict)

    def zone_cut(self, side: str, third: str) -> str:
        """The end ("top"/"bottom") of the scan range that cuts off this zone of the lung, or ""."""
        ends = self.cut.get(side, frozenset())
        if third == "upper" and "top" in ends:
            return "top"
        if third == "lower" and "bottom" in ends:
            return "bottom"
        if third == "middle" and ends:
            return sorted(ends)[0]
        return ""


def lung_coverage(inputs: ReportInputs) -> LungCoverage:
    """The ``LungCoverage`` of the inputs' label table and findings."""
    table_parts = [p for lab in inputs.label_table or () if not lab.lesion and (p := lung_part(lab.name))]
    found = [p for s in inputs.findings.structures if (p := lung_part(s.name)) is not None]
    return LungCoverage(
        modelled=bool(table_parts) or bool(found),
        present=frozenset(p.side for p in found),
        lobe_sides=frozenset(p.side for p in [*table_parts, *found] if p.lobe),
        lobes_present=frozenset((p.side, p.lobe) for p in found if p.lobe),
        cut=cut_lungs(inputs.findings.cautions))


def lesion_labels(inputs: ReportInputs) -> list[str]:
    """Names of the labels whose components are lesions (what the analysis could have found)."""
    names = [lab.name for lab in inputs.label_table if lab.lesion] if inputs.label_table is not None else []
    return names or list(dict.fromkeys(les.name for les in inputs.findings.lesions))


def lesion_phrase(les: Lesion, verb: str = " measures") -> str:
    """"nodule 3 in the right upper zone, peripheral, measures 10 x 8 mm (series 2, image 85)"."""
    place = lesion_place(les)
    where = "" if not place else (f" on the {place}" if place in ("left", "right") else f" in the {place}")
    comma = "," if les.zone and "," in les.zone else ""
    ref = image_reference(les)
    return (f"{lesion_noun(les.name)} {les.number}{where}{comma}{verb} {format_value(les.long_axis_mm, 0)} x "
            f"{format_value(les.short_axis_mm, 0)} mm" + (f" ({ref})" if ref else ""))


def lesion_list(lesions: list[Lesion], limit: int = MAX_ANSWERED_LESIONS, inputs: ReportInputs | None = None) -> str:
    """The largest ``limit`` lesions as phrases, "; "-joined, with how many smaller ones are left out.

    With ``inputs`` holding a comparison, each phrase adds the lesion's change since the prior.
    """
    ordered = sorted(lesions, key=lambda x: (-x.long_axis_mm, x.number))
    text = "; ".join(lesion_phrase(les) + _change(les, inputs) for les in ordered[:limit])
    rest = len(ordered) - limit
    return text + (f"; and {rest} smaller, listed in the findings" if rest > 0 else "")


def side_of_lesion(les: Lesion) -> str:
    """The lesion's side from its zone, else its location's side word, else its own side."""
    zone = lesion_zone(les)
    if zone is not None:
        return zone.side
    words = readable_name(les.location).split() if les.location else []
    return words[0] if words and words[0] in ("left", "right") else les.side


@dataclass
class Answers:
    """The impression items that answer the request, and what they used up."""

    sentences: list[str] = field(default_factory=list)
    lesions: set[tuple[str, int]] = field(default_factory=set)  # (label name, number) of the lesions named
    emphysema: bool = False
    lungs_absent_said: bool = False


def answer_targets(inputs: ReportInputs, targets: list[Target], cov: LungCoverage) -> Answers:
    """One impression item per target, in order (see the module docstring)."""
    out = Answers()
    asked: set[tuple[str, str, str]] = set()
    for t in targets:
        if t.is_lesion and (t.text, t.side, t.part) in asked:
            continue  # "lung cancer, staging": one request about the same lesions, answered once
        asked.add((t.text, t.side, t.part))
        if t.is_lesion:
            follow_up = t.action == "follow-up"
            answer = _answer_lesions(inputs, t, cov, out, follow_up)
            if follow_up and inputs.comparison is None and not answer.startswith("not assess"):
                answer += "; no prior images were available, so interval change was not assessed"
        elif t.kind == "emphysema":
            answer = _answer_emphysema(inputs, cov, out)
        else:  # the quoted request names it; the draft's own words must not name what no note or finding does
            answer = "not assessed by the automated analysis"
        quoted = " ".join(t.text.split())
        out.sentences.append(f'Request "{quoted}": {answer}.')
    return out


def _not_in_range(cov: LungCoverage, side: str, out: Answers) -> str:
    """Why a lung target cannot be answered by this scan range, or ""."""
    if cov.modelled and not cov.present:
        out.lungs_absent_said = True
        return "not assessable, since no lung is in the scan range"
    if cov.modelled and side in ("right", "left") and side not in cov.present:
        return f"not assessable, since the {side} lung is not in the scan range"
    return ""


def _change(les: Lesion, inputs: ReportInputs | None) -> str:
    """", grown since ... days" for a lesion with a change record; "" without a comparison or record."""
    c = inputs.comparison if inputs is not None else None
    if c is None or not c.registration.passed:
        return ""
    ch = c.change_for_current(les.number)
    return f", {change_clause(ch, c)}" if ch is not None else ""


def _answer_lesions(inputs: ReportInputs, t: Target, cov: LungCoverage, out: Answers, follow_up: bool = False) -> str:
    labels = lesion_labels(inputs)
    if not labels:
        return "not assessed, since the automated analysis does not detect lesions"
    why = _not_in_range(cov, t.side, out)
    if why:
        return why
    noun = f"{lesion_noun(labels[0])} candidate"
    pool = [les for les in inputs.findings.lesions if t.side not in ("right", "left") or side_of_lesion(les) == t.side]
    side = t.side if t.side in ("right", "left") else ""
    if t.part and side in cov.lobe_sides:
        found, place, note = _by_lobe(pool, t, side, cov)
    elif t.part:
        found, place, note = _by_zone(pool, t, side, cov)
    else:
        found, place, note = pool, (f"{side} lung" if side else ""), ""
    if note and not found:
        return note
    out.lesions |= {(les.name, les.number) for les in found}
    where = f" in the {place}" if place else ""
    text = lesion_list(found, inputs=inputs if follow_up else None) if found else f"no {noun} was found{where}"
    c = inputs.comparison
    if follow_up and c is not None and not c.registration.passed:
        text += f"; {not_compared_clause(c)}"
    return text + (f"; {note}" if note else "")


def _by_lobe(pool: list[Lesion], t: Target, side: str, cov: LungCoverage) -> tuple[list[Lesion], str, str]:
    place = "lingula" if t.part == "lingula" else f"{side} {t.part} lobe"
    if (side, t.part) not in cov.lobes_present:
        return [], place, f"the {place} is not in the scan range"
    found = [les for les in pool if (z := lesion_zone(les)) is not None and z.kind == "lobe" and z.part == t.part]
    return found, place, ""


def _by_zone(pool: list[Lesion], t: Target, side: str, cov: LungCoverage) -> tuple[list[Lesion], str, str]:
    third = "middle" if t.part == "lingula" else t.part
    place = f"{side} {third} zone" if side else f"{third} zones"
    sides = [side] if side else sorted(cov.present)
    cut = [(s, end) for s in sides if (end := cov.zone_cut(s, third))]
    zones = [(les, lesion_zone(les)) for les in pool]
    found = [les for les, z in zones if z is not None and z.kind == "zone" and z.part == third]
    unzoned = [les for les, z in zones if z is None or z.kind != "zone"]
    lobe_note = ([f"lobes are not segmented, so the {place} stands for the {t.where}"]
                 if t.region == "lobe" or t.part == "lingula" else [])
    if cut:  # a cut lung's lesions have no zone: list them all, and say why
        notes = lobe_note + [f"the {s} lung extends beyond the {end} of the scan range, so its {third} zone is "
                             "not wholly imaged" for s, end in cut]
        return found + [les for les in unzoned if les not in found], place, "; ".join(notes)
    if not found and unzoned:
        where = f"the {side} lung" if side else "the lungs"
        return unzoned, place, f"zones are not known, so all candidates in {where} are listed"
    return found, place, "; ".join(lobe_note)


def _answer_emphysema(inputs: ReportInputs, cov: LungCoverage, out: Answers) -> str:
    laa = [m for m in inputs.findings.measurements if m.name == LAA]
    if laa:
        out.emphysema = True
        return emphysema_values(laa)
    why = _not_in_range(cov, "", out)
    return why or f"not measured, since the automated analysis gives no emphysema index ({LAA})"


def emphysema_values(laa: list[Measurement]) -> str:
    """"emphysema index (%LAA-950) right lung 13.5%, left lung 0.0%, both lungs 7.4%" plus a caution pointer."""
    parts = ", ".join(f"{m.side + ' lung' if m.side else 'both lungs'} {format_quantity(m.value, '%', 1)}"
                      for m in laa)
    caution = "; interpret with caution, see the findings" if any(m.caution for m in laa) else ""
    return f"emphysema index ({LAA}) {parts}{caution}"


def analysed_anatomy(inputs: ReportInputs) -> str:
    """What the analysis measured in this scan range, for a draft whose scan holds no lung to lead with."""
    lesion_values = {lab.value for lab in inputs.label_table if lab.lesion} if inputs.label_table else set()
    names: list[str] = []
    for s in inputs.findings.structures:
        if s.name.lower() == "body" or s.label in lesion_values:
            continue
        name = readable_name(s.name)
        name = "skeletal muscle" if name == "muscle" else ("bone" if name.startswith("bone") else name)
        if name not in names:
            names.append(name)
    region = inputs.technique.body_part
    head = f"Analysed anatomy ({region})" if region else "Analysed anatomy"
    if not names:
        return f"{head}: no structure was segmented in the scan range."
    shown = names[:MAX_ANATOMY_NAMES]
    listed = ", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else shown[0]
    more = f" (and {len(names) - len(shown)} more structures, see the findings)" if len(names) > len(shown) else ""
    return f"{head}: {listed}{more}."
