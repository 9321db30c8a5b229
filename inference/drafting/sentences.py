"""Split report prose into sentences without breaking decimals, abbreviations or list numbers.

A report sentence is the unit the grounding check judges and the editor tracks,
so the splitter must be predictable: it splits after ``.``, ``!`` or ``?``
followed by white space and an upper-case letter, digit, quote or bracket,
except after a known abbreviation (``e.g.``, ``approx.``, ``Dr.``) or a
single capital initial, or after a list number that opens the sentence
("1. Nodule." stays one sentence). Decimals ("2.5 mm") never split because no
space follows their point. With ``line_breaks=True`` (the report editor's prose)
a line break also ends a sentence; otherwise white space, line breaks included,
is collapsed. This is the one splitter of the application and the engine: the
editor and the grounding check must agree on where sentences end.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

ABBREVIATIONS = frozenset({
    "e.g", "i.e", "approx", "dr", "mr", "mrs", "ms", "prof", "vs", "fig", "no", "nos", "ca", "cf", "etc",
    "al", "resp", "max", "min", "incl", "ref", "st", "vol",
})
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9%])")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")
_LIST_NUMBER = re.compile(r"\d{1,2}[.)]")


def split_sentences(text: str, *, line_breaks: bool = False) -> list[str]:
    """Sentences of ``text`` (white space collapsed), in order; empty input gives an empty list.

    ``line_breaks=True`` makes every line break a sentence end as well (blank lines are skipped).
    """
    if line_breaks:
        return [s for line in text.splitlines() for s in split_sentences(line)]
    flat = " ".join(text.split())
    if not flat:
        return []
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(flat):
        candidate = flat[start:m.start()].rstrip()
        if _ends_with_abbreviation(candidate) or _LIST_NUMBER.fullmatch(candidate):
            continue
        end = m.start() + len(m.group(0).rstrip())
        piece = flat[start:end].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = flat[start:].strip()
    if tail:
        out.append(tail)
    return out


def _ends_with_abbreviation(text: str) -> bool:
    """Whether ``text`` (which ends at a full stop) ends with an abbreviation or an initial."""
    if not text.endswith("."):
        return False
    word = text[:-1].rsplit(" ", 1)[-1].lower().lstrip("(\"'")
    if word in ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isalpha() and word != "l"  # "2.2 L." ends a sentence


def strip_bullet(line: str) -> str:
    """A list line without its bullet or number ("1. ", "2) ", "- ")."""
    return _BULLET.sub("", line, count=1).strip()
