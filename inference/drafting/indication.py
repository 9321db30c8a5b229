"""The clinical question: what the request asks the report to answer, read from the notes as ``Target`` values.

A request such as "Follow-up right upper lobe nodule; evaluate emphysema" gives
two targets, in order: a nodule (follow-up; right, upper lobe) and emphysema
(evaluate). The impression answers them first (``inference.drafting.answers``).

How the notes are read (``targets_of``):

- Sources in order: the DICOM ReasonForTheRequestedProcedure, then the other
  notes as given. A note is cut into *units* at sentence ends and semicolons.
- A unit asks something when it holds a request cue ("follow-up", "f/u",
  "evaluate", "assess", "rule out", "exclude", "query", "?PE", "screening",
  "staging", "requested"...), or when its source is the request itself (the
  reason field, or a line labelled "Indication:", "Request:", "Clinical
  question:", "Reason for exam:").
- In an asking unit, every finding term (nodule, mass, metastases, emphysema,
  pulmonary embolism, pneumothorax, effusion...) is a target unless a negation
  ("no", "not", "without", "negative for", "no history of") stands between the
  last cue and the term ("no haemoptysis" asks nothing; "rule out PE" asks).
- Side and lobe or zone come from the words next to the term: those before it
  in its own phrase (a unit split at commas, "and", "/"), else those after it
  ("nodule in the right upper lobe"); "RUL" etc. are read too.
- Repeats merge: a target of a kind already asked about, with no more detail,
  is dropped; a more detailed one replaces the vaguer one in its place.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from inference.drafting.inputs import ClinicalNote

logger = logging.getLogger(__name__)

LESION_KINDS = ("nodule", "mass", "metastases")
# kind -> pattern; order matters only for overlapping words (first wins)
_KINDS: tuple[tuple[str, str], ...] = (
    ("metastases", r"metastas[ie]s|metastatic(?:\s+disease)?|mets|staging"),
    ("nodule", r"(?:ground[-\s]glass\s+)?nodules?|nodular\s+opacit(?:y|ies)|SPN|GGOs?"),
    ("mass", r"mass(?:es)?|tumou?rs?|neoplasms?|malignan(?:cy|cies)|(?:lung\s+)?cancer|carcinoma"),
    ("emphysema", r"emphysema(?:tous)?(?:\s+changes?)?|COPD"),
    ("pulmonary embolism", r"pulmonary\s+embol(?:ism|i|us)|PE"),
    ("pneumothorax", r"pneumothora(?:x|ces)"),
    ("pleural effusion", r"(?:pleural\s+)?effusions?"),
    ("consolidation", r"consolidation|pneumonia|infection"),
    ("lymphadenopathy", r"lymphadenopathy|(?:enlarged\s+)?lymph\s+nodes?"),
    ("interstitial lung disease", r"interstitial\s+lung\s+disease|ILD|fibrosis"),
    ("fracture", r"fractures?"),
)
_CASE_SENSITIVE = frozenset({"SPN", "GGO", "GGOs", "COPD", "PE", "ILD"})
_ABBREVIATIONS = frozenset(w.lower() for w in _CASE_SENSITIVE)
_TERM = re.compile("|".join(rf"(?P<k{i}>\b(?:{pattern})\b)" for i, (_, pattern) in enumerate(_KINDS)),
                   re.IGNORECASE)
_CUE = re.compile(
    r"\b(?:follow[\s-]?up|f/u|surveillance|interval\s+(?:change|growth)|re-?assess\w*|evaluat\w*|assess\w*|"
    r"characteri[sz]\w*|quantif\w*|look(?:ing)?\s+for|query|search\s+for|investigat\w*|rule\s+out|r/o|"
    r"exclud\w*|exclusion|suspect\w*|suspicion|concern\s+for|screen(?:ing)?|staging|request(?:ed)?|"
    r"progression|response)\b|\?", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|without|negative\s+for|free\s+of|denies|nil|absent|never)\b", re.IGNORECASE)
_REQUEST_LINE = re.compile(r"^\s*(?:indication|request|clinical\s+(?:question|indication)|reason(?:\s+for\s+"
                           r"(?:exam(?:ination)?|study|request|referral))?|question)\s*:", re.IGNORECASE)
_REQUEST_FIELDS = ("DICOM ReasonForTheRequestedProcedure",)
_UNIT_SPLIT = re.compile(r"(?<=[.!;])\s+|\n+|;")
_PHRASE_SPLIT = re.compile(r",|\band\b|/(?!u\b|o\b)", re.IGNORECASE)
_SIDE = re.compile(r"\b(right|left|bilateral(?:ly)?|both)\b", re.IGNORECASE)
_PART = re.compile(r"\b(upper|middle|lower)\s+(lobes?|zones?)\b|\b(lingula|lingular)\b|\b(apex|apices|apical)\b|"
                   r"\b(bases?|basal)\b|\b(RUL|RML|RLL|LUL|LLL)\b", re.IGNORECASE)
_ABBREVIATED = {"RUL": ("right", "upper"), "RML": ("right", "middle"), "RLL": ("right", "lower"),
                "LUL": ("left", "upper"), "LLL": ("left", "lower")}
_ACTIONS = (("screening", r"screen"), ("rule out", r"rule\s+out|r/o|exclud|exclusion|\?|suspect|suspicion|concern"),
            ("follow-up", r"follow|f/u|surveillance|interval|re-?assess|progression|response"),
            ("staging", r"staging"))


@dataclass(frozen=True)
class Target:
    """One thing the request asks about.

    ``kind``: "nodule", "mass", "metastases", "emphysema", "pulmonary embolism", ... (see ``_KINDS``);
    ``action``: "follow-up", "evaluate", "rule out", "screening" or "staging";
    ``side``: "right", "left", "both" or ""; ``part``: "upper", "middle", "lower", "lingula" or "";
    ``region``: "lobe", "zone" or "" (how the notes name ``part``); ``text``: the request as written.
    """

    kind: str
    action: str = "evaluate"
    side: str = ""
    part: str = ""
    region: str = ""
    text: str = ""

    @property
    def is_lesion(self) -> bool:
        """Whether lesion candidates answer it (nodule, mass, metastases)."""
        return self.kind in LESION_KINDS

    @property
    def where(self) -> str:
        """Its place as the notes say it: "right upper lobe", "left lung", "lingula", ""."""
        if self.part == "lingula":
            return "lingula"
        if self.part:
            return " ".join(p for p in (self.side if self.side != "both" else "", self.part, self.region) if p)
        return f"{self.side} lung" if self.side in ("right", "left") else ""

    def covers(self, other: Target) -> bool:
        """Whether this target says at least what ``other`` says (same kind, its details included)."""
        return (self.kind == other.kind and other.side in ("", self.side) and other.part in ("", self.part))


def targets_of(notes: Iterable[ClinicalNote]) -> list[Target]:
    """The targets of all notes, the request field first, repeats merged (see the module docstring)."""
    ordered = sorted(notes, key=lambda n: 0 if n.source in _REQUEST_FIELDS else 1)
    found: list[Target] = []
    for note in ordered:
        for target in parse_indication(note.text, is_request=note.source in _REQUEST_FIELDS):
            _merge(found, target)
    return found


def parse_indication(text: str, is_request: bool = False) -> list[Target]:
    """The targets one text asks about, in order; ``is_request``: every unit of it asks (a request field)."""
    out: list[Target] = []
    for line in text.splitlines():
        asks_line = is_request or _REQUEST_LINE.match(line) is not None
        body = _REQUEST_LINE.sub("", line, count=1)
        for unit in _UNIT_SPLIT.split(body):
            unit = unit.strip(" .;:")
            if unit and (asks_line or _CUE.search(unit)):
                for target in _unit_targets(unit):
                    _merge(out, target)
    return out


def _merge(found: list[Target], target: Target) -> None:
    for i, known in enumerate(found):
        if known.covers(target):
            return
        if target.covers(known):
            found[i] = target
            return
    found.append(target)


def _kind_of(m: re.Match[str]) -> str | None:
    for i, (kind, _) in enumerate(_KINDS):
        word = m.group(f"k{i}")
        if word is not None:
            if word.lower() in _ABBREVIATIONS and word not in _CASE_SENSITIVE:
                return None  # "pe" or "ild" in lower case is a word, not an abbreviation
            return kind
    return None


def _unit_targets(unit: str) -> list[Target]:
    """Targets of one asking unit: each un-negated finding term with its side and place."""
    terms = [(m, kind) for m in _TERM.finditer(unit) if (kind := _kind_of(m)) is not None]
    if not terms:
        return []
    phrases = _phrases(unit)
    out = []
    for m, kind in terms:
        cues = [c for c in _CUE.finditer(unit) if c.end() <= m.start()]
        last_cue = cues[-1].end() if cues else 0
        if any(n.start() >= last_cue for n in _NEGATION.finditer(unit[:m.start()])):
            continue
        side, part, region = _place(unit, phrases, m, [t for t, _ in terms])
        action = _action(unit[:m.start()] if cues else unit)
        if kind in ("nodule", "mass") and action == "screening":
            kind = "nodule"
        out.append(Target(kind, action, side, part, region, unit))
    return out


def _phrases(unit: str) -> list[tuple[int, int]]:
    bounds = [0, *(m.start() for m in _PHRASE_SPLIT.finditer(unit)), len(unit)]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _place(unit: str, phrases: list[tuple[int, int]], term: re.Match[str],
           terms: list[re.Match[str]]) -> tuple[str, str, str]:
    """Side, part and region for ``term``: from its phrase before it, else after it, else the next phrase.

    The next phrase counts only when it names no finding itself ("nodule, right upper lobe").
    """
    k = next((i for i, (a, b) in enumerate(phrases) if a <= term.start() < b), 0)
    a, b = phrases[k] if phrases else (0, len(unit))
    spans = [unit[a:term.start()], unit[term.end():b]]
    if k + 1 < len(phrases):
        na, nb = phrases[k + 1]
        if not any(na <= t.start() < nb for t in terms):
            spans.append(unit[na:nb])
    for span in spans:
        side, part, region = _read_place(span)
        if side or part:
            return side, part, region
    return "", "", ""


def _read_place(span: str) -> tuple[str, str, str]:
    side_m = _SIDE.search(span)
    side = ""
    if side_m is not None:
        word = side_m.group(1).lower()
        side = word if word in ("right", "left") else "both"
    part_m = _PART.search(span)
    if part_m is None:
        return side, "", ""
    if part_m.group(1):
        return side, part_m.group(1).lower(), "lobe" if part_m.group(2).lower().startswith("lobe") else "zone"
    if part_m.group(3):
        return side or "left", "lingula", "lobe"
    if part_m.group(4):
        return side, "upper", "zone"
    if part_m.group(5):
        return side, "lower", "zone"
    abbr_side, lobe = _ABBREVIATED[part_m.group(6).upper()]
    return abbr_side, lobe, "lobe"


def _action(text: str) -> str:
    for action, pattern in _ACTIONS:
        if re.search(pattern, text, re.IGNORECASE):
            return action
    return "evaluate"


def with_text(target: Target, text: str) -> Target:
    """``target`` quoting ``text`` as its request (for callers that build targets by hand)."""
    return replace(target, text=text)
