"""Grounding of the change a draft claims for lesions: counts of a status, and the status said of a named lesion.

Rules (``inference.drafting.grounding_comparison.check_comparison`` applies them):

3b. A count of a status ("1 new nodule", "two stable nodules") must be the
    record's count, and "1 nodule outside the prior examination's field of
    view" the count of current lesions the prior did not image (``not covered``;
    "... the current examination's ..." counts prior lesions).
6.  A status said of a named lesion must be that lesion's status in the record:
    "nodule 4: new", "new nodule 4", "prior nodule 3 (left lower zone):
    resolved", "nodule 4 is not included in the prior examination's field of
    view". The word belongs to the lesion named right after it ("new nodule 4"),
    else to the lesion named nearest before it in the same part of the sentence
    (parts end at a semicolon outside parentheses). In particular a lesion
    outside the other study's field of view is never new or resolved (the other
    study never imaged it). Negated or generic uses ("no new nodules", "new
    lesions") claim nothing about a named lesion and are not judged here.

Only unambiguous status words are judged ("smaller than 6 mm" is a size, not a change).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from inference.drafting.facts import ChangeFacts, FindingLink
from inference.followup.model import ChangeStatus, Comparison

logger = logging.getLogger(__name__)

LESION_REF = re.compile(r"\b(?:(prior|previous)\s+)?(?:nodule|lesion|mass|candidate)\s+(?:no\.?\s*|#\s*)?(\d+)\b",
                        re.IGNORECASE)
COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
               "ten": 10}
STATUS_WORDS = {"new": ChangeStatus.NEW, "grown": ChangeStatus.GROWN, "growing": ChangeStatus.GROWN,
                "enlarging": ChangeStatus.GROWN, "stable": ChangeStatus.STABLE, "unchanged": ChangeStatus.STABLE,
                "shrunk": ChangeStatus.SHRUNK, "shrinking": ChangeStatus.SHRUNK, "smaller": ChangeStatus.SHRUNK,
                "resolved": ChangeStatus.RESOLVED}
_NOUNS = r"(?:nodules?|lesions?|masses|nodule\s+candidates)"
_STATUS_COUNT = re.compile(rf"\b(\d+|{'|'.join(COUNT_WORDS)})\s+({'|'.join(STATUS_WORDS)})\s+{_NOUNS}\b",
                           re.IGNORECASE)
_OUTSIDE_COUNT = re.compile(rf"\b(\d+|{'|'.join(COUNT_WORDS)})\s+(?:prior\s+)?{_NOUNS}\s+outside\s+the\s+"
                            r"(prior|previous|current)\s+(?:examination|study|scan)(?:'s)?\s+field\s+of\s+view\b",
                            re.IGNORECASE)
_NAMED_WORDS = ("new", "grown", "growing", "enlarging", "stable", "unchanged", "shrunk", "shrinking", "resolved")
_CLAIM = re.compile(rf"\b({'|'.join(_NAMED_WORDS)})\b|\b(not\s+(?:covered|included|imaged)|outside\s+(?:the\s+|its\s+)?"
                    r"(?:\w+(?:'s)?\s+){0,2}field\s+of\s+view)", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|nor|without|any)\s+$", re.IGNORECASE)
_GENERIC = re.compile(r"\s+(?:nodules|lesions|masses)\b", re.IGNORECASE)
_RIGHT_AFTER_REF = re.compile(r"\s+(?:(prior|previous)\s+)?(?:nodule|lesion|mass|candidate)\s+"
                              r"(?:no\.?\s*|#\s*)?(\d+)\b", re.IGNORECASE)


@dataclass
class StatusVerdicts:
    """What the rules found: the text with judged spans blanked, reasons to flag, and links to the record."""

    text: str
    reasons: list[str]
    links: list[FindingLink]
    counted: bool = False


def _blank(text: str, a: int, b: int) -> str:
    return text[:a] + " " * (b - a) + text[b:]


def _count(word: str) -> int:
    return int(word) if word.isdigit() else COUNT_WORDS[word.lower()]


def check_status_counts(text: str, comparison: Comparison | None) -> StatusVerdicts:
    """Rule 3b: counted statuses against the record (``counted`` when one matched)."""
    out = StatusVerdicts(text, [], [])
    made = comparison is not None and comparison.registration.passed
    for m in list(_STATUS_COUNT.finditer(out.text)):
        count, status = _count(m.group(1)), STATUS_WORDS[m.group(2).lower()]
        _judge_count(out, count, status.value, len(comparison.by_status(status)) if made and comparison else None)
        out.text = _blank(out.text, m.start(), m.end())
    for m in list(_OUTSIDE_COUNT.finditer(out.text)):
        current_side = m.group(2).lower() == "current"
        found = None
        if made and comparison is not None:
            found = sum(1 for ch in comparison.by_status(ChangeStatus.NOT_COVERED)
                        if (ch.current is None) == current_side)
        what = f"outside the {'current' if current_side else 'prior'} examination's field of view"
        _judge_count(out, _count(m.group(1)), what, found)
        out.text = _blank(out.text, m.start(), m.end())
    return out


def _judge_count(out: StatusVerdicts, count: int, what: str, found: int | None) -> None:
    if found is None:
        out.reasons.append(f"counts {count} {what} lesion(s), but no comparison was made")
    elif found != count:
        out.reasons.append(f"counts {count} {what} lesion(s), but the comparison record has {found}")
    else:
        out.counted = True


def _part_start(text: str, position: int) -> int:
    """Where the part of the sentence holding ``position`` starts: after the last ``;`` outside parentheses."""
    depth, start = 0, 0
    for i, ch in enumerate(text[:position]):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0:
            start = i + 1
    return start


def _change_of(changes: list[ChangeFacts], prior: bool, number: int) -> ChangeFacts | None:
    return next((cf for cf in changes if (cf.change.prior_id if prior else cf.change.current_id) == number), None)


def check_named_status(text: str, changes: list[ChangeFacts]) -> StatusVerdicts:
    """Rule 6: the status said of each named lesion against the record (the text is returned unchanged)."""
    out = StatusVerdicts(text, [], [])
    for m in list(_CLAIM.finditer(text)):
        if _NEGATION.search(text[:m.start()]) is not None:
            continue
        after = _RIGHT_AFTER_REF.match(text, m.end())
        if after is not None:
            prior, number = after.group(1) is not None, int(after.group(2))
        else:
            if m.group(1) and _GENERIC.match(text, m.end()):
                continue
            refs = list(LESION_REF.finditer(text, _part_start(text, m.start()), m.start()))
            if not refs:
                continue
            prior, number = refs[-1].group(1) is not None, int(refs[-1].group(2))
        cf = _change_of(changes, prior, number)
        if cf is None:
            continue  # a lesion the record does not hold: the prior-reference rule judges it
        said = STATUS_WORDS[m.group(1).lower()] if m.group(1) else ChangeStatus.NOT_COVERED
        actual = cf.change.status
        if said is actual:
            if cf.link not in out.links:
                out.links.append(cf.link)
        elif actual is ChangeStatus.NOT_COVERED:
            which = "prior" if cf.change.current is not None else "current"
            out.reasons.append(f"calls {cf.link.name} {m.group(0).lower()}, but it lay outside the {which} "
                               "examination's field of view: no comparison is possible")
        else:
            out.reasons.append(f"calls {cf.link.name} {' '.join(m.group(0).lower().split())}, but the comparison "
                               f"record has it {actual.value}")
    return out  # the words stay: they still cue the change-number rules of grounding_comparison
