"""Grounding of where a lesion is and which image shows it; quotations of the notes.

Rules (used by ``inference.drafting.grounding.check_sentence``):

1. Zones and lobes. A phrase "right upper zone[, peripheral]" (or "left lower
   lobe", "lingula") is checked against the lesions' zones
   (``Lesion.zone``, ``inference.findings.zones``). When the same ";"-separated
   part of the sentence names a lesion by number before the phrase ("nodule 3
   in the right upper zone"), that lesion must be there: same side, same
   third or lobe, and the same central/peripheral when the phrase says it.
   Otherwise, where the part names a lesion word, "no nodule ... in the right
   upper zone" needs none there and "a nodule in the right upper zone" needs
   one. Lobe phrases are checked only when a lobe model placed the lesions
   (without one, a lobe comes from the notes and rule 2 of the grounding check
   covers it); nothing is checked when no lesion has a zone.
2. Images. "series 2, image 78" (or "image 78" where the series has no
   number) must be the image of the lesion named by number nearest before it
   in the sentence, else of some lesion.
3. A passage in double quotes that the notes hold word for word is the notes'
   wording (a request being answered): it is masked before the other checks
   and linked to its note.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass

from inference.drafting.facts import FindingLink, GroundingFacts, image_reference, lesion_zone
from inference.drafting.lexicon import is_negated, sides_in
from inference.findings import Lesion, Zone

logger = logging.getLogger(__name__)

_PLACE = re.compile(r"\b(?:(right|left)\s+(?:lung\s+)?)?(?:(upper|middle|lower)\s+(zone|lobe)s?|(lingula))\b"
                    r"(?:\s*,\s*(central|peripheral)\b)?", re.IGNORECASE)
_IMAGE = re.compile(r"\b(?:series\s+(\d+)\s*,?\s*)?image\s+(\d+)\b", re.IGNORECASE)
_NUMBERED = re.compile(r"\b(?:nodule|lesion|mass|tumou?r|candidate)s?\s+(?:no\.?\s*|#\s*)?(\d+)\b", re.IGNORECASE)
_LESION_WORD = re.compile(r"\b(?:nodules?|lesions?|mass(?:es)?|tumou?rs?|candidates?|metastas[ie]s)\b", re.IGNORECASE)
_QUOTED = re.compile(r"\"([^\"]{2,})\"|“([^”]{2,})”")


@dataclass(frozen=True)
class Place:
    """A place phrase in a sentence: where, and what it says."""

    start: int
    end: int
    text: str
    side: str
    part: str
    kind: str
    position: str


def places_in(text: str) -> list[Place]:
    """Every zone or lobe phrase of ``text``."""
    out = []
    for m in _PLACE.finditer(text):
        side, part, kind, lingula, position = (g.lower() if g else "" for g in m.groups())
        if lingula:
            side, part, kind = side or "left", "lingula", "lobe"
        out.append(Place(m.start(), m.end(), m.group(0), side, part, kind, position))
    return out


def _lesions_with(facts: GroundingFacts, kind: str) -> list[tuple[Lesion, FindingLink, Zone]]:
    return [(les, ln, z) for les, ln in facts.lesions if (z := lesion_zone(les)) is not None and z.kind == kind]


def verifiable(place: Place, facts: GroundingFacts) -> bool:
    """Whether the lesions' zones can confirm or refute this phrase (module docstring, rule 1)."""
    if place.kind == "lobe":
        return bool(_lesions_with(facts, "lobe"))
    return any(lesion_zone(les) is not None for les, _ in facts.lesions)


def clause_has_verified_place(clause: str, facts: GroundingFacts) -> bool:
    """Whether a clause names a place that rule 1 judges (its laterality is then judged there, not by side)."""
    return any(verifiable(p, facts) for p in places_in(clause)) and bool(_LESION_WORD.search(clause))


def _parts(text: str) -> list[tuple[int, int]]:
    bounds = [0, *(m.end() for m in re.finditer(";", text)), len(text)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _named_before(text: str, a: int, position: int, facts: GroundingFacts) -> tuple[Lesion, FindingLink] | None:
    """The lesion named by number nearest before ``position`` within ``text[a:position]``."""
    numbers = [m for m in _NUMBERED.finditer(text, a, position)]
    if not numbers:
        return None
    number = int(numbers[-1].group(1))
    return next(((les, ln) for les, ln in facts.lesions if les.number == number), None)


def _matches(place: Place, zone: Zone, side: str) -> bool:
    return (zone.kind == place.kind and zone.part == place.part and (not side or zone.side == side)
            and (not place.position or not zone.position or zone.position == place.position))


def check_places(text: str, facts: GroundingFacts, reasons: list[str], links: list[FindingLink]) -> None:
    """Rule 1 of the module docstring, appending reasons and links."""
    for a, b in _parts(text):
        for place in places_in(text[a:b]):
            place = Place(place.start + a, place.end + a, place.text, place.side, place.part, place.kind,
                          place.position)
            if not verifiable(place, facts):
                continue
            side = place.side or _only_side(text[a:b])
            named = _named_before(text, a, place.start, facts)
            if named is not None:
                _check_named(place, side, named, reasons, links)
            elif _LESION_WORD.search(text[a:b]):
                _check_any(place, side, is_negated(text[a:place.start]), facts, reasons, links)


def _only_side(text: str) -> str:
    sides = {s for _, s in sides_in(text) if s in ("left", "right")}
    return sides.pop() if len(sides) == 1 else ""


def _check_named(place: Place, side: str, named: tuple[Lesion, FindingLink], reasons: list[str],
                 links: list[FindingLink]) -> None:
    les, link = named
    zone = lesion_zone(les)
    what = link.name.split(" (")[0]
    if zone is None or zone.kind != place.kind:
        if place.kind == "zone":
            reasons.append(f"places {what} in the {place.text.lower()}, but its zone is not known")
        return
    if _matches(place, zone, side):
        _link(links, link)
    else:
        reasons.append(f"places {what} in the {place.text.lower()}, but it is in the {zone.text()}")


def _check_any(place: Place, side: str, negated: bool, facts: GroundingFacts, reasons: list[str],
               links: list[FindingLink]) -> None:
    there = [(les, ln) for les, ln, z in _lesions_with(facts, place.kind) if _matches(place, z, side)]
    where = place.text.lower()
    if negated and there:
        names = ", ".join(ln.name.split(" (")[0] for _, ln in there)
        reasons.append(f"says no lesion in the {where}, but {names} {'is' if len(there) == 1 else 'are'} there")
    elif not negated and not there:
        reasons.append(f"places a lesion in the {where}, but none was found there")
    elif not negated:
        for _, ln in there:
            _link(links, ln)


def check_images(text: str, facts: GroundingFacts, reasons: list[str], links: list[FindingLink]) -> None:
    """Rule 2 of the module docstring."""
    for a, b in _parts(text):
        for m in _IMAGE.finditer(text, a, b):
            series = int(m.group(1)) if m.group(1) else None
            image = int(m.group(2))
            said = m.group(0).lower()
            named = _named_before(text, 0, m.start(), facts)  # "Nodule 1 (...): ...; series 2, image 78"
            if named is not None:
                les, link = named
                what = link.name.split(" (")[0]
                if les.instance_number is None:
                    reasons.append(f"names {said} for {what}, whose image is not known")
                elif les.instance_number != image or (series is not None and les.series_number != series):
                    reasons.append(f"names {said} for {what}, which is on {image_reference(les)}")
                else:
                    _link(links, link)
                continue
            hits = [ln for les, ln in facts.lesions if les.instance_number == image
                    and (series is None or les.series_number == series)]
            if not hits:
                reasons.append(f"names {said}, but no lesion is on that image")
            for ln in hits:
                _link(links, ln)


def mask_quoted_notes(text: str, facts: GroundingFacts, links: list[FindingLink]) -> str:
    """``text`` with each double-quoted passage that a note holds word for word blanked out (rule 3)."""
    notes = [(" ".join(src.text.split()).lower(), src.link) for src in facts.texts_of("notes")]
    out = text
    for m in _QUOTED.finditer(text):
        quoted = " ".join((m.group(1) or m.group(2)).split()).lower()
        source = next((ln for note, ln in notes if quoted in note), None)
        if source is not None:
            out = out[:m.start()] + " " * (m.end() - m.start()) + out[m.end():]
            _link(links, source)
    return out


def _link(links: list[FindingLink], link: FindingLink) -> None:
    if all(existing.key != link.key for existing in links):
        links.append(link)
