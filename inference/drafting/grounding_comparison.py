"""Grounding of what a draft says about the prior study: dates, intervals, doubling times, sizes then and now.

Rules (used by ``inference.drafting.grounding.check_sentence`` before its own):

1. Dates ("2025-11-06", "6 November 2025", "November 6, 2025") in Comparison,
   Findings and Impression must be the prior's or the current study's date
   (``Comparison``), or, in the Comparison section, written in the notes.
2. Times ("366 days", "12 months", "6-12 months", "1 year") in every section
   must be the interval between the studies, a lesion's volume doubling time
   (the one of the lesion the sentence names, when it names one and speaks of
   doubling), or written in the guideline recommendation, the comparison's
   texts or (Clinical information, Comparison) the notes. Ages ("68 years old")
   are not times.
3. "prior nodule 3" must be a lesion of the prior in the record, and a count of
   a status ("1 new nodule", "two stable nodules") the record's count
   (``inference.drafting.grounding_status``, which also holds rule 6: the status
   said of a named lesion must be its status in the record, so a lesion outside
   the other study's field of view is never called new or resolved).
4. Image references of the prior ("prior series 3, image 40"; in the Comparison
   section every "series N, image M") must be the image of the lesion named
   before them in the record (prior or current as marked), and "series N"
   alone in the Comparison section a series the record names.
5. Lengths, volumes and percentages: in the Comparison section every one, and in
   Findings and Impression those of a sentence that speaks of change ("prior",
   "since", "grown", "doubling"...), are checked against the record's numbers
   of the lesion named before them ("nodule 1", "prior nodule 2"): the prior's
   when the phrase says prior/then/from, the current ones for now/current/to,
   a signed number ("+3.5 mm", "-40%") against the change. A named lesion's
   number that the record does not hold is flagged (a wrong prior size, a
   wrong volume change). Unnamed numbers may be any lesion's in the record, or
   quoted from the comparison's texts (criteria) or the notes in the Comparison
   section; elsewhere an unmatched one is left to the measured-fact check. A
   sentence citing the record's guideline may quote the recommendation's numbers,
   and a Lung-RADS category it cites must be the record's.

Everything judged here is masked (dates, prior references, counts, prior
images) or reported as judged (quantities), so the general rules do not judge
it again against the current findings alone.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass

from inference.drafting.draft import CLINICAL, COMPARISON, FINDINGS, IMPRESSION
from inference.drafting.facts import COMPARISON_LINK, ChangeFacts, Fact, FindingLink, GroundingFacts, TextSource
from inference.drafting.grounding_status import LESION_REF, StatusVerdicts, check_named_status, check_status_counts
from inference.drafting.quantities import Quantity, find_quantities, format_value
from inference.drafting.times import DATE, date_of, find_times

logger = logging.getLogger(__name__)

_PRIOR_REF = re.compile(r"\b(?:prior|previous)\s+(?:nodule|lesion|mass|candidate)\s+(?:no\.?\s*|#\s*)?(\d+)\b",
                        re.IGNORECASE)
_IMAGE = re.compile(r"\bseries\s+(\d+)(?:\s*,?\s*image\s+(\d+))?\b", re.IGNORECASE)
_PRIOR_WORD = re.compile(r"\b(?:prior|previous(?:ly)?|then|earlier|baseline|before|from|was)\b", re.IGNORECASE)
_NOW_WORD = re.compile(r"\b(?:now|current(?:ly)?|today|present(?:ly)?|to|is)\b", re.IGNORECASE)
_STRONG_PRIOR = re.compile(r"\b(?:prior|previous(?:ly)?|then|earlier|baseline)\b", re.IGNORECASE)
_STRONG_NOW = re.compile(r"\b(?:now|current(?:ly)?|today)\b", re.IGNORECASE)
_RIGHT_AFTER = re.compile(r"\s*(then|now|previously|currently|earlier|today|before|at\s+baseline)\b", re.IGNORECASE)
_CHANGE_CUE = re.compile(r"\b(?:prior|previous(?:ly)?|since|then|grew|grown|growth|growing|increased?|decreased?|"
                         r"shrunk|shrinking|smaller|enlarg\w*|doubling|interval|unchanged|stable|resolved|"
                         r"compared)\b", re.IGNORECASE)
_GUIDELINE = re.compile(r"\b(?:fleischner|lung-?rads)\b", re.IGNORECASE)
_CATEGORY = re.compile(r"\bcategory\s+(\d[ABX]?|[0-4][ABSX]?)\b", re.IGNORECASE)
_PHRASE_END = re.compile(r"[,;()]")
_COMPARISON_TEXTS = {CLINICAL: ("comparison", "guideline", "notes", "caution"),
                     COMPARISON: ("comparison", "guideline", "notes", "caution"),
                     FINDINGS: ("comparison", "guideline", "caution", "method"),
                     IMPRESSION: ("comparison", "guideline", "caution", "method")}


def _blank(text: str, a: int, b: int) -> str:
    return text[:a] + " " * (b - a) + text[b:]


def _link(links: list[FindingLink], link: FindingLink) -> None:
    if all(existing.key != link.key for existing in links):
        links.append(link)


@dataclass
class _Sentence:
    """One sentence being checked: its (progressively masked) text, verdicts, links, what was judged."""

    text: str
    section: str
    facts: GroundingFacts
    reasons: list[str]
    links: list[FindingLink]

    def texts(self) -> list[TextSource]:
        return self.facts.texts_of(*_COMPARISON_TEXTS.get(self.section, ("comparison", "guideline", "technique")))

    def named(self, position: int, same_part: bool) -> ChangeFacts | None:
        """The record's change of the lesion named nearest before ``position`` ("nodule 1", "prior nodule 2")."""
        start = self.text.rfind(";", 0, position) + 1 if same_part else 0
        refs = list(LESION_REF.finditer(self.text, start, position))
        if not refs:
            return None
        ref = refs[-1]
        number, prior = int(ref.group(2)), ref.group(1) is not None
        for cf in self.facts.changes:
            if (cf.change.prior_id if prior else cf.change.current_id) == number:
                return cf
        return None


def check_comparison(text: str, section: str, facts: GroundingFacts, reasons: list[str],
                     links: list[FindingLink]) -> tuple[str, set[int]]:
    """Rules 1-6 of the module docstring: ``(text with judged spans masked, starts of quantities judged)``."""
    s = _Sentence(text, section, facts, reasons, links)
    if section != CLINICAL:
        _check_dates(s)
    _check_times(s)
    _apply(s, check_status_counts(s.text, facts.comparison))
    _apply(s, check_named_status(s.text, facts.changes))
    _check_prior_refs(s)
    _check_images(s)
    _check_category(s)
    judged = _check_quantities(s)
    return s.text, judged


def _check_dates(s: _Sentence) -> None:
    c = s.facts.comparison
    for m in list(DATE.finditer(s.text)):
        said = date_of(m)
        if said is None:
            continue
        if c is not None and said in (c.prior_study_date, c.current_study_date):
            _link(s.links, COMPARISON_LINK)
        elif s.section == COMPARISON and any(said.isoformat() in t.text or m.group(0) in t.text
                                             for t in s.facts.texts_of("notes")):
            _link(s.links, next(t.link for t in s.facts.texts_of("notes")))
        elif c is None:
            s.reasons.append(f"names the date {m.group(0)}, but no prior study was compared")
        else:
            s.reasons.append(f"names the date {m.group(0)}, which is neither the prior study's "
                             f"({c.prior_study_date.isoformat()}) nor this study's "
                             f"({c.current_study_date.isoformat()})")
        s.text = _blank(s.text, m.start(), m.end())


def _check_times(s: _Sentence) -> None:
    c = s.facts.comparison
    for t in find_times(s.text):
        named = s.named(t.start, same_part=s.section != COMPARISON)
        doubling = "doubling" in s.text[max(0, t.start - 40):t.start].lower()
        vdts = [(cf, cf.change.doubling_time_days) for cf in s.facts.changes if cf.change.doubling_time_days]
        ok = False
        if named is not None and named.change.doubling_time_days is not None and t.matches(
                named.change.doubling_time_days):
            _link(s.links, named.link)
            ok = True
        elif doubling and named is not None:
            vdt = named.change.doubling_time_days
            given = f"{format_value(vdt, 0)} days" if vdt is not None else f"none ({named.change.doubling_time_reason})"
            s.reasons.append(f"gives {t.text} as the doubling time of {named.link.name}, but the comparison "
                             f"record gives {given}")
            continue
        elif c is not None and t.matches(float(c.interval_days)):
            _link(s.links, COMPARISON_LINK)
            ok = True
        elif named is None and (hit := next((cf for cf, v in vdts if v is not None and t.matches(v)), None)):
            _link(s.links, hit.link)
            ok = True
        else:
            source = next((src for src in s.texts() if any(t.same_as(x) for x in find_times(src.text))), None)
            if source is not None:
                _link(s.links, source.link)
                ok = True
        if not ok:
            if c is None:
                s.reasons.append(f"{t.text} is not in the notes, and no prior study was compared")
            else:
                s.reasons.append(f"{t.text} is neither the interval between the studies ({c.interval_days} days), "
                                 "a doubling time of the comparison, nor in the guideline recommendation")


def _check_prior_refs(s: _Sentence) -> None:
    c = s.facts.comparison
    for m in list(_PRIOR_REF.finditer(s.text)):
        number = int(m.group(1))
        hit = next((cf for cf in s.facts.changes if cf.change.prior_id == number), None)
        if hit is not None:
            _link(s.links, hit.link)
        elif c is None:
            s.reasons.append(f"refers to {m.group(0).lower()}, but no prior study was compared")
        elif c.registration.passed:
            s.reasons.append(f"refers to {m.group(0).lower()}, but the prior has no lesion of that number")
        else:
            s.reasons.append(f"refers to {m.group(0).lower()}, but the comparison was not made")
        s.text = _blank(s.text, m.start(), m.end())


def _apply(s: _Sentence, verdicts: StatusVerdicts) -> None:
    s.text = verdicts.text
    s.reasons += verdicts.reasons
    for link in verdicts.links:
        _link(s.links, link)
    if verdicts.counted:
        _link(s.links, COMPARISON_LINK)


def _check_images(s: _Sentence) -> None:
    for m in list(_IMAGE.finditer(s.text)):
        before = s.text[max(0, m.start() - 30):m.start()].lower()
        prior = re.search(r"\b(?:prior|previous|then|earlier)\b[^;]*$", before) is not None
        current = re.search(r"\b(?:current|now)\b[^;]*$", before) is not None and not prior
        if not prior and s.section != COMPARISON:
            continue  # a current image: the general rule judges it
        series, image = int(m.group(1)), int(m.group(2)) if m.group(2) else None
        named = s.named(m.start(), same_part=False)
        said = m.group(0).lower()
        if image is None:
            ok = _series_known(s.facts, series)
        elif named is not None:
            ch = named.change
            when = [ch.prior] if prior else [ch.current] if current else [ch.prior, ch.current]
            snaps = [x for x in when if x is not None]
            ok = any(x.instance_number == image and x.series_number in (None, series) for x in snaps)
            if not ok:
                s.reasons.append(f"names {said} for {named.link.name}, which is not its image in the comparison record")
                s.text = _blank(s.text, m.start(), m.end())
                continue
        else:
            ok = any(x is not None and x.instance_number == image and x.series_number in (None, series)
                     for cf in s.facts.changes for x in (cf.change.prior, cf.change.current))
        if ok:
            _link(s.links, named.link if named is not None else COMPARISON_LINK)
        else:
            s.reasons.append(f"names {said}, which the comparison record does not hold")
        s.text = _blank(s.text, m.start(), m.end())


def _series_known(facts: GroundingFacts, series: int) -> bool:
    c = facts.comparison
    if c is None:
        return False
    numbers = {c.prior_series_number} | {x.series_number for cf in facts.changes
                                         for x in (cf.change.prior, cf.change.current) if x is not None}
    numbers |= {les.series_number for les, _ in facts.lesions}
    return series in numbers


def _check_category(s: _Sentence) -> None:
    if not re.search(r"lung-?rads", s.text, re.IGNORECASE):
        return
    c = s.facts.comparison
    rec = c.recommendation if c is not None else None
    for m in _CATEGORY.finditer(s.text):
        if rec is None or not rec.category:
            s.reasons.append(f"cites Lung-RADS {m.group(0).lower()}, but the record holds no Lung-RADS category")
        elif m.group(1).upper() != rec.category.upper():
            s.reasons.append(f"cites Lung-RADS {m.group(0).lower()}, but the record's category is {rec.category}")


def _time_point(text: str, q: Quantity) -> str:
    """"prior", "current" or "" for a number: a marker right after it ("16 mm then"), else the nearest before
    it in its phrase ("prior 16 mm", "from 16 mm"), else after it in its phrase, else the strong marker
    ("prior", "now") nearest before it in the sentence."""
    right_after = _RIGHT_AFTER.match(text, q.end)
    if right_after is not None:
        return "prior" if _STRONG_PRIOR.match(right_after.group(1)) or right_after.group(1).lower() in (
            "before", "was") else "current"
    a = max((m.end() for m in _PHRASE_END.finditer(text, 0, q.start)), default=0)
    end = _PHRASE_END.search(text, q.end)
    b = end.start() if end else len(text)
    before = [(m.start(), "prior") for m in _PRIOR_WORD.finditer(text, a, q.start)]
    before += [(m.start(), "current") for m in _NOW_WORD.finditer(text, a, q.start)]
    if before:
        return max(before)[1]
    after = [(m.start(), "prior") for m in _PRIOR_WORD.finditer(text, q.end, b)]
    after += [(m.start(), "current") for m in _NOW_WORD.finditer(text, q.end, b)]
    if after:
        return min(after)[1]
    strong = [(m.start(), "prior") for m in _STRONG_PRIOR.finditer(text, 0, q.start)]
    strong += [(m.start(), "current") for m in _STRONG_NOW.finditer(text, 0, q.start)]
    return max(strong)[1] if strong else ""


def _from_to(text: str, q: Quantity) -> tuple[Quantity, Quantity] | None:
    """A range written as a change ("from 16 mm to 22 mm") as its prior and its current number."""
    if q.relation != "range" or len(q.values) != 2 or not re.search(r"\bfrom\s*$", text[max(0, q.start - 8):q.start],
                                                                     re.IGNORECASE):
        return None
    one = [Quantity(q.text, q.start, q.end, q.kind, q.unit, (v,), (t,))
           for v, t in zip(q.values, q.tolerances, strict=True)]
    return one[0], one[1]


def _fits(q: Quantity, facts: tuple[Fact, ...], signed: bool) -> bool:
    kind = [f for f in facts if f.kind == q.kind]
    if len(q.values) > 1 and q.relation == "=":
        return any(all(q.matches(f.value, i) for i, f in enumerate(combo))
                   for combo in itertools.permutations(kind, len(q.values)))
    return any(q.matches(f.value) or (not signed and q.kind == "percent" and q.matches(abs(f.value)))
               for f in kind)


def _candidates(cf: ChangeFacts, q: Quantity, text: str, signed: bool) -> tuple[tuple[Fact, ...], str]:
    if q.kind == "percent" or signed:
        return cf.delta, "change"
    when = _time_point(text, q)
    if when == "prior":
        return cf.prior, "prior"
    if when == "current":
        return cf.current, "current"
    return (*cf.prior, *cf.current, *cf.delta), ""


def _record_text(cf: ChangeFacts, when: str) -> str:
    def show(facts: tuple[Fact, ...]) -> str:
        return ", ".join(f"{f.quantity} {format_value(f.value * (1000 if f.kind == 'volume' else 1), 1)}"
                         f"{' mm³' if f.kind == 'volume' else ' mm' if f.kind == 'length' else '%'}" for f in facts)
    chosen = {"prior": cf.prior, "current": cf.current, "change": cf.delta}.get(when)
    return show(chosen) if chosen is not None else show((*cf.prior, *cf.current, *cf.delta))


def _check_quantities(s: _Sentence) -> set[int]:
    """Rule 5: the starts of the quantities judged here."""
    judged: set[int] = set()
    if s.facts.comparison is None or s.section == CLINICAL:
        return judged
    cue = s.section == COMPARISON or _CHANGE_CUE.search(s.text) is not None
    guideline = _GUIDELINE.search(s.text) is not None
    for q in find_quantities(s.text):
        if q.kind not in ("length", "volume", "percent"):
            continue
        if guideline and (src := _quoted(q, s.facts.texts_of("guideline"))) is not None:
            _link(s.links, src.link)
            judged.add(q.start)
            continue
        if not cue:
            continue
        pair = _from_to(s.text, q)
        if pair is not None:
            named = s.named(q.start, same_part=s.section != COMPARISON)
            pool = [named] if named is not None else s.facts.changes
            hit = next((cf for cf in pool if _fits(pair[0], cf.prior, False) and _fits(pair[1], cf.current, False)),
                       None)
            if hit is not None:
                _link(s.links, hit.link)
            elif named is not None or s.section == COMPARISON:
                who = named.link.name if named is not None else "any lesion"
                rec = f" ({_record_text(named, 'prior')}; {_record_text(named, 'current')})" if named else ""
                s.reasons.append(f"{q.text} is not the change of {who} in the comparison record{rec}")
            else:
                continue
            judged.add(q.start)
            continue
        if q.relation != "=":  # a bound or range ("more than 1.5 mm") is a criterion, not a lesion's number
            if s.section == COMPARISON:
                src = _quoted(q, s.texts())
                if src is None:
                    s.reasons.append(f"{q.text} is not in the comparison's criteria or the notes")
                else:
                    _link(s.links, src.link)
                judged.add(q.start)
            continue
        signed = q.values[0] < 0 or s.text[max(0, q.start - 1):q.start] in ("+", "±")
        named = s.named(q.start, same_part=s.section != COMPARISON)
        if named is not None:
            facts, when = _candidates(named, q, s.text, signed)
            if _fits(q, facts, signed):
                _link(s.links, named.link)
            else:
                what = f"{when} " if when else ""
                s.reasons.append(f"{q.text} is not a {what}value of {named.link.name} in the comparison record "
                                 f"({_record_text(named, when)})")
            judged.add(q.start)
            continue
        hit = next((cf for cf in s.facts.changes if _fits(q, _candidates(cf, q, s.text, signed)[0], signed)), None)
        if hit is not None:
            _link(s.links, hit.link)
            judged.add(q.start)
        elif s.section == COMPARISON:
            src = _quoted(q, s.texts())
            if src is not None:
                _link(s.links, src.link)
            else:
                s.reasons.append(f"{q.text} is not a number of the comparison record or the notes")
            judged.add(q.start)
    return judged


def _quoted(q: Quantity, sources: list[TextSource]) -> TextSource | None:
    for src in sources:
        for sq in src.quantities:
            if sq.kind == q.kind and all(sq.shows(v) for v in q.values):
                return src
    return None
