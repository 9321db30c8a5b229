"""Grounding check: does every sentence of a draft say only what was measured or written in the notes?

Rules, per sentence (``check_draft``):

1. Numbers with units (mm, cm, mL, cc, L, mm³, cm², HU, %): each must agree
   with a measured fact of the same kind within the rounding the sentence shows
   ("12 mm" = 11.5-12.5 mm; "1.2 cm" = 12 mm; "2.2 L" = 2150-2250 mL); a
   dimension group ("22 x 18 mm") must fit distinct diameters of one lesion; a
   bound ("< 6 mm") or range ("6-8 mm") must hold for a matching fact. Where
   the clause names a measured structure, the number must be that structure's
   (muscle area quoted with the fat's value fails), and where it names a side,
   the fact's side must agree ("left" with the right lung's value fails).
   A number may instead quote a source text in scope: in Clinical information
   the notes (and comparison), in Comparison the comparison and notes, in
   Technique the technique facts; everywhere the findings' cautions and
   measurement methods. A number in Findings/Impression that only the notes
   hold is flagged: it is history, not a measurement of this scan.
2. Structures: every lexicon structure term (``inference.drafting.lexicon``) must
   be segmented or in the model's label table, or named in a source text
   (notes, comparison, cautions, technique). "Liver" when no liver was measured
   and no note names it is flagged.
3. Laterality without numbers: "a nodule in the left lung" needs a lesion on
   the left, "no nodule on the right" needs none there, "bilateral nodules"
   needs both. A count before a lesion word ("4 nodule candidates") must equal
   the number of lesions (on the clause's side, if it names one). In Clinical
   information and Comparison sides are history and are not checked.
4. The comparison with a prior (``inference.drafting.grounding_comparison``):
   dates, intervals, doubling times, prior references and image numbers, and
   the sizes then and now of the lesions a sentence names, against the
   comparison record; judged there first.
5. Places and images (``inference.drafting.grounding_places``): a zone or lobe
   ("right upper zone, peripheral") must be the lesion's, and "series 2,
   image 78" its image. A double-quoted passage the notes hold word for word
   is the notes' wording and is not judged as a claim.

A sentence passes (``ok``) with links to every finding it matched, for the
viewer to navigate to; a flagged sentence lists the reasons in plain words.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from inference.drafting.draft import CLINICAL, COMPARISON, FINDINGS, IMPRESSION, TECHNIQUE, ReportDraft
from inference.drafting.facts import Fact, FindingLink, GroundingFacts, TextSource, collect_facts
from inference.drafting.grounding_comparison import check_comparison
from inference.drafting.grounding_places import (
    check_images,
    check_places,
    clause_has_verified_place,
    mask_quoted_notes,
)
from inference.drafting.inputs import ReportInputs
from inference.drafting.lexicon import Mention, clause_of, clauses, find_terms, is_negated, sides_in
from inference.drafting.quantities import CANONICAL_UNIT, Quantity, find_quantities, format_value
from inference.gil import share_gil

logger = logging.getLogger(__name__)

# which source texts may ground a number in each section, and whether measured facts may
_TEXT_SCOPE: dict[str, tuple[str, ...]] = {
    CLINICAL: ("notes", "comparison"),
    TECHNIQUE: ("technique", "caution", "method"),
    COMPARISON: ("comparison", "notes"),
    FINDINGS: ("caution", "method"),
    IMPRESSION: ("caution", "method"),
}
_FACT_SECTIONS = (TECHNIQUE, FINDINGS, IMPRESSION)
_SIDE_SECTIONS = (TECHNIQUE, FINDINGS, IMPRESSION)
_MASK = re.compile(r"%?\s*LAA\s*-?\s*\d+", re.IGNORECASE)  # the index's name holds a number: "%LAA-950"
_NUMBERED = re.compile(r"\b(?:nodule|lesion|mass|candidate)\s+(?:no\.?\s*|#\s*)?(\d+)\b", re.IGNORECASE)
_COUNT_WORDS = {"no": 0, "one": 1, "a": 1, "single": 1, "solitary": 1, "two": 2, "three": 3, "four": 4,
                "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_COUNT = re.compile(r"\b(\d+|" + "|".join(w for w in _COUNT_WORDS if w not in ("a", "no")) +
                    r")\s+(?:[a-z-]+\s+){0,2}?(?:nodules?|lesions?|masses|nodule\s+candidates)\b", re.IGNORECASE)


@dataclass
class SentenceCheck:
    """The verdict on one sentence: ok or flagged, why, and the findings it refers to."""

    section: str
    index: int
    text: str
    reasons: list[str] = field(default_factory=list)
    links: list[FindingLink] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing in the sentence contradicts or goes beyond the findings and notes."""
        return not self.reasons

    @property
    def status(self) -> str:
        """"ok" or "flagged"."""
        return "ok" if self.ok else "flagged"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"section": self.section, "index": self.index, "text": self.text, "status": self.status,
                "reasons": list(self.reasons), "links": [ln.to_dict() for ln in self.links]}


@dataclass
class GroundingReport:
    """One ``SentenceCheck`` per sentence of a draft, in report order."""

    sentences: list[SentenceCheck]

    @property
    def ok(self) -> bool:
        """True when no sentence is flagged."""
        return all(s.ok for s in self.sentences)

    @property
    def flagged(self) -> list[SentenceCheck]:
        """The flagged sentences."""
        return [s for s in self.sentences if not s.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"ok": self.ok, "sentences": [s.to_dict() for s in self.sentences]}


def check_draft(draft: ReportDraft, inputs: ReportInputs) -> GroundingReport:
    """Check every sentence of ``draft`` against the findings and texts of ``inputs``."""
    facts = collect_facts(inputs)
    checks = []
    for section, index, text in draft.sentences():
        share_gil()  # a sentence at a time: a GUI thread drawing meanwhile waits ~1 ms, not a switch interval
        checks.append(check_sentence(text, section, facts, index))
    logger.info("grounding: %d sentences, %d flagged", len(checks), sum(not c.ok for c in checks))
    return GroundingReport(checks)


def check_sentence(text: str, section: str, facts: GroundingFacts, index: int = 0) -> SentenceCheck:
    """The verdict on one sentence of ``section`` (see the module docstring for the rules)."""
    result = SentenceCheck(section, index, text)
    masked = _MASK.sub(lambda m: " " * len(m.group(0)), mask_quoted_notes(text, facts, result.links))
    masked, judged = check_comparison(masked, section, facts, result.reasons, result.links)
    spans = clauses(masked)
    mentions = find_terms(masked)
    _check_structures(result, mentions, facts)
    if section in _SIDE_SECTIONS:
        _check_numbered(result, masked, spans, facts)
        check_places(masked, facts, result.reasons, result.links)
        check_images(masked, facts, result.reasons, result.links)
    for q in find_quantities(masked):
        if q.start not in judged:
            _check_quantity(result, q, masked, spans, mentions, section, facts)
    if section in _SIDE_SECTIONS:
        _check_laterality(result, masked, spans, mentions, facts)
        _check_counts(result, masked, spans, facts)
    return result


def _add_link(result: SentenceCheck, link: FindingLink) -> None:
    if all(existing.key != link.key for existing in result.links):
        result.links.append(link)


def _check_structures(result: SentenceCheck, mentions: list[Mention], facts: GroundingFacts) -> None:
    allowed = facts.known_concepts | facts.text_concepts
    reported: set[str] = set()
    for m in mentions:
        if m.concept not in allowed and m.concept not in reported:
            reported.add(m.concept)
            result.reasons.append(f"names the {m.text.lower()}, which was not measured and is not in the notes")


def side_at(masked: str, spans: list[tuple[int, int]], position: int, sentence_fallback: bool = True) -> str | None:
    """The side a phrase at ``position`` is said to be on.

    From its own clause (the nearest side word before it, else after it);
    else from a short label clause next to it ("right: 13.5%", "13.5% (right)");
    else, with ``sentence_fallback``, the sentence's only side.
    """
    a, b = clause_of(spans, position)
    sides = sides_in(masked)
    in_clause = [(p, s) for p, s in sides if a <= p < b]
    if in_clause:
        before = [s for p, s in in_clause if p <= position]
        return before[-1] if before else in_clause[0][1]
    k = spans.index((a, b)) if (a, b) in spans else -1
    neighbours = []
    if k > 0 and masked[a:a + 1] == ":":
        neighbours.append(spans[k - 1])
    if 0 <= k < len(spans) - 1 and masked[b:b + 1] == "(":
        neighbours.append(spans[k + 1])
    for na, nb in neighbours:
        label = [s for p, s in sides if na <= p < nb]
        if label and len(re.findall(r"[A-Za-z]+", masked[na:nb])) <= 3:
            return label[-1]
    distinct = {s for _, s in sides}
    return distinct.pop() if sentence_fallback and len(distinct) == 1 else None


def _clause_concepts(mentions: list[Mention], masked: str, spans: list[tuple[int, int]], position: int) -> set[str]:
    a, b = clause_of(spans, position)
    here = {m.concept for m in mentions if a <= m.start < b}
    return here or {m.concept for m in mentions}


def _fits(q: Quantity, entity_facts: list[Fact]) -> bool:
    """Whether each value of a dimension group matches a distinct fact of one entity."""
    for combo in itertools.permutations(entity_facts, len(q.values)):
        if all(q.matches(f.value, i) for i, f in enumerate(combo)):
            return True
    return False


def _candidates(q: Quantity, facts: list[Fact]) -> list[Fact]:
    kind_facts = [f for f in facts if f.kind == q.kind]
    if len(q.values) > 1 and q.relation == "=":
        by_entity: dict[str, list[Fact]] = {}
        for f in kind_facts:
            by_entity.setdefault(f.link.key, []).append(f)
        return [f for group in by_entity.values() if _fits(q, group) for f in group]
    return [f for f in kind_facts if q.matches(f.value)]


def describe(fact: Fact) -> str:
    """A fact in words: "the right lung volume", "nodule 1 (left lung) long axis", "%LAA-950, right lung"."""
    if fact.link.kind == "measurement":
        return fact.link.name
    return f"{fact.link.name} {fact.quantity}"


def _show(fact: Fact) -> str:
    decimals = 0 if abs(fact.value) >= 100 or fact.kind == "density" else 1
    return f"{format_value(fact.value, decimals)} {CANONICAL_UNIT.get(fact.kind, '')}".replace(" %", "%")


def _check_quantity(result: SentenceCheck, q: Quantity, masked: str, spans: list[tuple[int, int]],
                    mentions: list[Mention], section: str, facts: GroundingFacts) -> None:
    if q.kind == "density" and len(q.values) == 1 and any(
            -float(n) == q.values[0] for n in re.findall(r"LAA\s*-?\s*(\d+)", result.text, re.IGNORECASE)):
        return  # "%LAA-950 ... below -950 HU": the index's own threshold, part of its definition
    texts = facts.texts_of(*_TEXT_SCOPE.get(section, ()))
    if section == TECHNIQUE and (source := _quoted_text(q, texts)) is not None:  # technique facts come first
        _add_link(result, source.link)
        return
    reason = ""
    if section in _FACT_SECTIONS:
        matched, reason = _match_facts(q, masked, spans, mentions, facts)
        if matched:
            named = [f for f in matched if any(f.link.key == ln.key for ln in result.links)]
            matched = named or matched  # "nodule 1 ... 30 HU": nodule 1's, though nodule 2 is 31 HU
            if q.relation == "=" or len({f.link.key for f in matched}) == 1:  # a bound fits many: link none
                for f in matched:
                    _add_link(result, f.link)
            return
    source = _quoted_text(q, texts)
    if source is not None:
        _add_link(result, source.link)
        return
    if not reason:
        if section in _FACT_SECTIONS and _quoted_text(q, facts.texts_of("notes", "comparison")) is not None:
            reason = f"{q.text} is from the notes or comparison, not a measurement of this scan"
        elif section == TECHNIQUE:
            reason = f"{q.text} is neither in the technique facts nor a measured finding"
        elif section in _FACT_SECTIONS:
            reason = f"{q.text} matches no measured finding"
        else:
            reason = f"{q.text} is not in the notes or the comparison"
    result.reasons.append(reason)


def _match_facts(q: Quantity, masked: str, spans: list[tuple[int, int]], mentions: list[Mention],
                 facts: GroundingFacts) -> tuple[list[Fact], str]:
    """The facts ``q`` agrees with (value, structure, side), or none and why."""
    candidates = _candidates(q, facts.facts)
    if not candidates:
        return [], ""
    concepts = _clause_concepts(mentions, masked, spans, q.start)
    kind_concepts = {c for f in facts.facts if f.kind == q.kind for c in f.concepts}
    named = concepts & kind_concepts
    if named:
        fitting = [f for f in candidates if f.concepts & named]
        if not fitting:
            what = "; ".join(sorted({describe(f) for f in candidates}))
            return [], f"{q.text} is not a value of the {'/'.join(sorted(named))} named here (it matches {what})"
        candidates = fitting
    side = side_at(masked, spans, q.start)
    if side in ("left", "right"):
        fitting = [f for f in candidates if f.side in (side, "")]
        if not fitting:
            f = candidates[0]
            where = "both sides together" if f.side == "both" else f"the {f.side}"
            return [], f"{q.text} is said to be on the {side}, but it matches {describe(f)}, which is {where}"
        candidates = fitting
    if q.relation in ("<", ">"):
        return _check_bound(q, masked, spans, candidates, facts)
    return candidates, ""


def _check_bound(q: Quantity, masked: str, spans: list[tuple[int, int]], candidates: list[Fact],
                 facts: GroundingFacts) -> tuple[list[Fact], str]:
    """A bound on lesion size holds for the lesions the clause means: all, the largest, the smallest, or any."""
    if not any(f.link.kind == "lesion" for f in candidates):
        return candidates, ""
    a, b = clause_of(spans, q.start)
    clause = masked[a:b].lower()
    longs = {f.link.key: f for f in facts.facts if f.link.kind == "lesion" and f.quantity == "long axis"}
    if not longs:
        return candidates, ""
    if re.search(r"\b(all|every|each|both)\b", clause):
        chosen, what = list(longs.values()), "every lesion"
    elif re.search(r"\b(largest|biggest|dominant)\b", clause):
        chosen, what = [max(longs.values(), key=lambda f: f.value)], "the largest lesion"
    elif re.search(r"\bsmallest\b", clause):
        chosen, what = [min(longs.values(), key=lambda f: f.value)], "the smallest lesion"
    else:
        return candidates, ""
    wrong = [f for f in chosen if not q.matches(f.value)]
    if wrong:
        return [], f"{q.text} does not hold for {what}: {describe(wrong[0])} is {_show(wrong[0])}"
    return chosen, ""


def _quoted_text(q: Quantity, sources: list[TextSource]) -> TextSource | None:
    """The first source text that writes the same number(s) of the same kind as ``q``."""
    for src in sources:
        for sq in src.quantities:
            if sq.kind != q.kind:
                continue
            if all(any(abs(v - w) <= max(t, u) + 1e-9 for w, u in zip(sq.values, sq.tolerances, strict=True))
                   for v, t in zip(q.values, q.tolerances, strict=True)):
                return src
    return None


def _check_numbered(result: SentenceCheck, masked: str, spans: list[tuple[int, int]], facts: GroundingFacts) -> None:
    """A lesion named by its number ("nodule 3") must exist, and on the side the sentence gives it."""
    for m in _NUMBERED.finditer(masked):
        number = m.group(1)
        hits = [(s, ln) for s, ln in facts.lesion_sides if ln.key.rsplit(":", 1)[-1] == number]
        if not hits:
            if facts.lesion_assessed:
                result.reasons.append(f"refers to {m.group(0).lower()}, but no lesion has that number")
            continue
        side = side_at(masked, spans, m.start())
        for les_side, ln in hits:
            if side in ("left", "right") and les_side and les_side != side:
                result.reasons.append(f"places {m.group(0).lower()} on the {side}, but it is on the {les_side}")
            else:
                _add_link(result, ln)


def _check_laterality(result: SentenceCheck, masked: str, spans: list[tuple[int, int]],
                      mentions: list[Mention], facts: GroundingFacts) -> None:
    """Side words against lesions and sided structures, clause by clause."""
    for a, b in spans:
        clause = masked[a:b]
        sides = {s for p, s in sides_in(masked) if a <= p < b}
        concepts = {m.concept for m in mentions if a <= m.start < b}
        if not concepts:
            continue
        if not sides:
            sides = {s for s in [side_at(masked, spans, a)] if s}
        for concept in concepts:
            for side, link in facts.concept_links.get(concept, []):
                if concept != "lesion" and side and (side in sides or "both" in sides):
                    _add_link(result, link)
        if "lesion" not in concepts or not facts.lesion_assessed:
            continue
        if find_quantities(clause) or clause_has_verified_place(clause, facts):
            continue  # a measured lesion was checked number by number, a placed one by its zone
        negated = is_negated(clause)
        for side in sorted(sides):
            wanted = ("left", "right") if side == "both" else (side,)
            for s in wanted:
                found = [ln for les_side, ln in facts.lesion_sides if les_side == s]
                if negated and found:
                    result.reasons.append(f"says no lesion on the {s}, but {len(found)} "
                                          f"{'was' if len(found) == 1 else 'were'} found there")
                elif not negated and not found:
                    result.reasons.append(f"places a lesion on the {s}, but none was found there")
                elif not negated and not any(ln.kind == "lesion" for ln in result.links):
                    for ln in found:
                        _add_link(result, ln)


def _check_counts(result: SentenceCheck, masked: str, spans: list[tuple[int, int]], facts: GroundingFacts) -> None:
    if not facts.lesion_assessed:
        return
    spans_q = [(q.start, q.end) for q in find_quantities(masked)]
    for m in _COUNT.finditer(masked):
        if any(a <= m.start(1) < b for a, b in spans_q):
            continue  # "a 25 mm nodule" is a size, not a count
        word = m.group(1).lower()
        count = int(word) if word.isdigit() else _COUNT_WORDS[word]
        side = side_at(masked, spans, m.start(), sentence_fallback=False)
        lesions = [ln for s, ln in facts.lesion_sides if side in (None, "both") or s == side]
        if count != len(lesions):
            where = f" on the {side}" if side in ("left", "right") else ""
            result.reasons.append(f"counts {count} lesion(s){where}, but {len(lesions)} were found")
