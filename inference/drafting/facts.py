"""What a draft may be checked against: measured facts (with links the viewer can follow) and source texts.

``collect_facts`` turns ``ReportInputs`` into:

- ``Fact``: one measured number in a canonical unit (mm, mL, cm2, HU, %, or an
  LPS z position in mm), with the structure concepts and side it belongs to and
  a ``FindingLink`` (finding key, label value, centroid) for navigation. Every
  structure gives its volume and (CT) mean HU; every lesion its axial long and
  short axis, 3-D long/short axis, mean diameter, volume, mean HU and centroid
  z; every named measurement its value.
- ``TextSource``: a text a sentence may quote (a note, the comparison's
  criteria, reasons and cautions, the guideline recommendation, a caution, a
  measurement's method, the technique facts), with its quantities.
- ``ChangeFacts``: with a comparison (``inference.followup.model``), each
  lesion's numbers of the record by time point: prior and current long, short
  and mean diameter and volume, and the changes (mean diameter, volume %), for
  ``inference.drafting.grounding_comparison``.
- the concepts that are known (segmented, or in the model's label table) and
  the concepts the texts mention.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from inference.drafting.inputs import ReportInputs, note_label
from inference.drafting.lexicon import ZONE_CONCEPTS, concepts_in, label_concepts
from inference.drafting.quantities import UNITS, Quantity, find_quantities, unit_key
from inference.findings import Findings, Lesion, StructureFinding, Zone, parse_zone
from inference.followup.model import Comparison, LesionChange, LesionSnapshot
from inference.image_refs import image_text
from inference.labels import readable_name

logger = logging.getLogger(__name__)

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class FindingLink:
    """Where a sentence's claim comes from, in terms the GUI can navigate to.

    ``key`` is stable within one analysis: ``structure:<label name>``,
    ``lesion:<label name>:<number>``, ``measurement:<name>:<structure>``,
    ``caution:<n>``, ``method:<measurement name>:<structure>``, ``note:<n>``,
    ``comparison`` or ``technique``. ``label`` is the label map value and
    ``centroid_lps``/``centroid_index`` the point to centre the viewer on
    (None for texts).
    """

    key: str
    kind: str
    name: str
    label: int | None = None
    centroid_lps: Triple | None = None
    centroid_index: Triple | None = None
    axial_slice: int | None = None
    series_number: int | None = None  # a lesion's source image (SeriesNumber, InstanceNumber), as a reader finds it
    instance_number: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Fact:
    """One measured number: its kind, value in the canonical unit, what it is, where, and which side."""

    kind: str
    value: float
    quantity: str
    link: FindingLink
    concepts: frozenset[str]
    side: str = ""  # "right", "left", "both" (a paired organ taken together) or "" (not lateral)


@dataclass(frozen=True)
class TextSource:
    """A text a sentence may quote numbers from, and the quantities it holds."""

    kind: str
    text: str
    link: FindingLink
    quantities: tuple[Quantity, ...]


@dataclass(frozen=True)
class ChangeFacts:
    """One lesion of the comparison record: its change and its numbers prior, now and as change."""

    change: LesionChange
    link: FindingLink
    prior: tuple[Fact, ...]
    current: tuple[Fact, ...]
    delta: tuple[Fact, ...]


@dataclass
class GroundingFacts:
    """Everything the grounding check compares a draft with."""

    facts: list[Fact] = field(default_factory=list)
    texts: list[TextSource] = field(default_factory=list)
    known_concepts: set[str] = field(default_factory=set)
    text_concepts: set[str] = field(default_factory=set)
    lesion_assessed: bool = False
    lesion_sides: list[tuple[str, FindingLink]] = field(default_factory=list)
    concept_links: dict[str, list[tuple[str, FindingLink]]] = field(default_factory=dict)
    lesions: list[tuple[Lesion, FindingLink]] = field(default_factory=list)
    comparison: Comparison | None = None
    changes: list[ChangeFacts] = field(default_factory=list)

    def texts_of(self, *kinds: str) -> list[TextSource]:
        """The text sources of these kinds, in the order of ``kinds``."""
        return [t for kind in kinds for t in self.texts if t.kind == kind]


def _triple(v: Any) -> Triple:
    return (float(v[0]), float(v[1]), float(v[2]))


def _name_side(name: str) -> str:
    words = readable_name(name).split()
    return words[0] if words and words[0] in ("left", "right") else ""


def _structure_link(s: StructureFinding) -> FindingLink:
    return FindingLink(f"structure:{s.name}", "structure", readable_name(s.name), s.label,
                       _triple(s.centroid_lps), _triple(s.centroid_index))


def _lesion_side(les: Lesion) -> str:
    zone = parse_zone(les.zone)
    loc = zone.side if zone is not None else (_name_side(les.location) if les.location else "")
    return loc or (les.side if les.side in ("left", "right") else "")


def lesion_zone(les: Lesion) -> Zone | None:
    """The lesion's lobe or zone (``inference.findings.zones``), None when it has none."""
    return parse_zone(les.zone)


def lesion_place(les: Lesion) -> str:
    """Where a lesion is, in words: its zone or lobe ("right upper zone, peripheral"), else the structure
    around it ("right lung"), else its side ("right"); "" when none is known."""
    return les.zone or les.location or (les.side if les.side in ("left", "right") else "")


def image_reference(les: Lesion) -> str:
    """The image a reader goes to, as a report writes it: "series 2, image 78" ("" when not known).

    Never the zero-based grid slice (``axial_slice``): ``inference.image_refs`` names the acquired image.
    """
    return image_text(les.series_number, les.instance_number, style="long")


def _lesion_link(les: Lesion) -> FindingLink:
    place = les.zone or les.location
    where = f" ({place})" if place else ""
    return FindingLink(f"lesion:{les.name}:{les.number}", "lesion", f"{lesion_noun(les.name)} {les.number}{where}",
                       les.label, _triple(les.centroid_lps), _triple(les.centroid_index), les.axial_slice,
                       les.series_number, les.instance_number)


def lesion_noun(name: str) -> str:
    """What to call one lesion of a label: "lung_nodule" -> "nodule", "liver_tumor" -> "liver tumor"."""
    readable = readable_name(name)
    return "nodule" if "nodule" in readable else readable


def collect_facts(inputs: ReportInputs) -> GroundingFacts:
    """The facts and texts of ``inputs`` (see the module docstring)."""
    f = inputs.findings
    out = GroundingFacts()
    lesion_values = {lab.value for lab in inputs.label_table if lab.lesion} if inputs.label_table else set()
    lesion_values |= {les.label for les in f.lesions}
    for s in f.structures:
        if s.label not in lesion_values:  # lesion labels are reported per component
            _add_structure(out, s)
    for les in f.lesions:
        _add_lesion(out, les)
    if f.lesions or (inputs.label_table is not None and any(lab.lesion for lab in inputs.label_table)):
        out.lesion_assessed = True
        out.known_concepts.add("lesion")
    if inputs.label_table is not None:
        for lab in inputs.label_table:
            out.known_concepts |= label_concepts(lab.name)
    if "lung" in out.known_concepts:  # zones are thirds of a segmented lung
        out.known_concepts |= ZONE_CONCEPTS
    _add_measurements(out, f)
    _add_texts(out, inputs)
    return out


def _add_structure(out: GroundingFacts, s: StructureFinding) -> None:
    link = _structure_link(s)
    concepts = frozenset(label_concepts(s.name))
    side = _name_side(s.name)
    out.known_concepts |= concepts
    for c in concepts:
        out.concept_links.setdefault(c, []).append((side, link))
    out.facts.append(Fact("volume", s.volume_ml, "volume", link, concepts, side))
    if s.mean is not None and s.units == "HU":
        out.facts.append(Fact("density", s.mean, "mean attenuation", link, concepts, side))


def _add_lesion(out: GroundingFacts, les: Lesion) -> None:
    link = _lesion_link(les)
    zone = lesion_zone(les)
    zone_concepts = {f"{zone.part} zone"} & ZONE_CONCEPTS if zone is not None and zone.kind == "zone" else set()
    concepts = frozenset({"lesion"} | (label_concepts(les.location) if les.location else set()) | zone_concepts)
    out.lesions.append((les, link))
    side = _lesion_side(les)
    out.lesion_sides.append((side, link))
    out.concept_links.setdefault("lesion", []).append((side, link))
    lengths = (("long axis", les.long_axis_mm), ("short axis", les.short_axis_mm),
               ("3-D long axis", les.long_axis_3d_mm), ("3-D short axis", les.short_axis_3d_mm),
               ("mean diameter", (les.long_axis_mm + les.short_axis_mm) / 2.0))
    for quantity, value in lengths:
        out.facts.append(Fact("length", value, quantity, link, concepts, side))
    out.facts.append(Fact("volume", les.volume_ml, "volume", link, concepts, side))
    if les.mean is not None and les.units == "HU":
        out.facts.append(Fact("density", les.mean, "mean attenuation", link, concepts, side))
    out.facts.append(Fact("position", les.centroid_lps[2], "centre z (LPS)", link, concepts, side))


def _add_measurements(out: GroundingFacts, f: Findings) -> None:
    for m in f.measurements:
        key = unit_key(m.unit)
        if key not in UNITS:
            logger.debug("measurement %r has unit %r, which the grounding check does not read", m.name, m.unit)
            continue
        kind, factor = UNITS[key]
        structure = f.structure(m.structure) if m.structure else None
        concepts = frozenset(label_concepts(m.structure) if m.structure else set()) | concepts_in([m.name])
        side = m.side if m.side in ("left", "right") else ("both" if m.structure in ("lungs", "kidneys") else "")
        where = readable_name(m.structure) if m.structure else ""
        name = f"{m.name}, {where}" if where else m.name
        link = FindingLink(f"measurement:{m.name}:{m.structure}", "measurement", name,
                           structure.label if structure else None,
                           _triple(structure.centroid_lps) if structure else None,
                           _triple(structure.centroid_index) if structure else None)
        out.facts.append(Fact(kind, m.value * factor, m.name, link, concepts, side))
        out.known_concepts |= concepts
        if m.method:
            out.texts.append(_text("method", m.method, FindingLink(f"method:{m.name}:{m.structure}", "method",
                                                                   f"method of {name}")))


def _text(kind: str, text: str, link: FindingLink) -> TextSource:
    return TextSource(kind, text, link, tuple(find_quantities(text)))


def _add_texts(out: GroundingFacts, inputs: ReportInputs) -> None:
    for i, caution in enumerate(inputs.cautions()):
        out.texts.append(_text("caution", caution, FindingLink(f"caution:{i}", "caution", "caution")))
    for i, note in enumerate(inputs.notes, start=1):
        label = note_label(note, i)
        out.texts.append(_text("notes", note.text, FindingLink(f"note:{i}", "notes", label)))
    if inputs.comparison is not None:
        _add_comparison(out, inputs.comparison)
    t = inputs.technique
    parts = [t.modality, t.body_part, t.study_description, t.series_description, t.kernel]
    if t.slice_thickness_mm is not None:
        parts.append(f"slice thickness {t.slice_thickness_mm:g} mm")
    out.texts.append(_text("technique", "; ".join(p for p in parts if p), FindingLink("technique", "technique",
                                                                                      "technique")))
    out.text_concepts = concepts_in(src.text for src in out.texts)


COMPARISON_LINK = FindingLink("comparison", "comparison", "comparison with the prior study")
RECOMMENDATION_LINK = FindingLink("comparison:recommendation", "guideline", "guideline recommendation")


def _snapshot_facts(s: LesionSnapshot, when: str, link: FindingLink) -> tuple[Fact, ...]:
    concepts = frozenset({"lesion"})
    lengths = (("long axis", s.long_axis_mm), ("short axis", s.short_axis_mm), ("mean diameter", s.mean_diameter_mm))
    return (*(Fact("length", v, f"{when} {q}", link, concepts) for q, v in lengths),
            Fact("volume", s.volume_ml, f"{when} volume", link, concepts))


def change_link(ch: LesionChange, index: int) -> FindingLink:
    """The link of one lesion's change: to the current lesion's centre and image (a resolved one has none)."""
    cur, pri = ch.current, ch.prior
    name = f"lesion {cur.number}" if cur is not None else f"prior lesion {pri.number if pri else '?'}"
    if cur is not None and pri is not None:
        name += f" (prior lesion {pri.number})"
    return FindingLink(f"comparison:lesion:{index}", "comparison", name,
                       centroid_lps=_triple(cur.centroid_lps) if cur is not None else None,
                       series_number=cur.series_number if cur is not None else None,
                       instance_number=cur.instance_number if cur is not None else None)


def _add_comparison(out: GroundingFacts, c: Comparison) -> None:
    """The comparison record's numbers per lesion, and its texts (criteria, reasons, cautions, recommendation)."""
    out.comparison = c
    if c.registration.passed:
        for i, ch in enumerate(c.changes):
            link = change_link(ch, i)
            delta = []
            if ch.diameter_change_mm is not None:
                delta.append(Fact("length", ch.diameter_change_mm, "change of mean diameter", link,
                                  frozenset({"lesion"})))
            if ch.volume_change_percent is not None:
                delta.append(Fact("percent", ch.volume_change_percent, "volume change", link, frozenset({"lesion"})))
            out.changes.append(ChangeFacts(
                ch, link, _snapshot_facts(ch.prior, "prior", link) if ch.prior is not None else (),
                _snapshot_facts(ch.current, "current", link) if ch.current is not None else (), tuple(delta)))
    texts = [c.criteria.describe(), c.registration.reason, *c.cautions, c.prior_study_description]
    for text in texts:
        if text.strip():
            out.texts.append(_text("comparison", text, COMPARISON_LINK))
    rec = c.recommendation
    guideline = [rec.text, rec.rule, rec.basis, *rec.assumptions] if rec is not None else []
    for text in [*guideline, c.recommendation_reason]:
        if text.strip():
            out.texts.append(_text("guideline", text, RECOMMENDATION_LINK))
