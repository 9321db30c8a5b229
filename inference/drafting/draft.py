"""A report draft: the five usual sections, each a list of sentences, with its provenance.

``ReportDraft.text()`` renders the plain-text report; ``ReportDraft.from_text``
parses a language model's output back into sections, tolerating the ways
models write headings (``**Findings:**``, ``FINDINGS``, ``## Impression``,
``Findings: text on the same line``), other names for a section (History,
Indication, Conclusion...) and missing sections. Impression items are kept
one per numbered point; Findings lines (one finding per line, as ``text()``
writes them) and the paragraphs of other sections are split into sentences.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from inference.drafting.sentences import split_sentences, strip_bullet

logger = logging.getLogger(__name__)

CLINICAL = "Clinical information"
TECHNIQUE = "Technique"
COMPARISON = "Comparison"
FINDINGS = "Findings"
IMPRESSION = "Impression"
SECTIONS: tuple[str, ...] = (CLINICAL, TECHNIQUE, COMPARISON, FINDINGS, IMPRESSION)
# sections rendered one sentence per line (the others as one paragraph): a finding, a compared lesion
_LINE_SECTIONS = (COMPARISON, FINDINGS)

_ALIASES: dict[str, str] = {
    "clinical information": CLINICAL, "clinical info": CLINICAL, "clinical history": CLINICAL,
    "clinical details": CLINICAL, "clinical indication": CLINICAL, "history": CLINICAL, "indication": CLINICAL,
    "indications": CLINICAL, "reason for examination": CLINICAL, "reason for exam": CLINICAL,
    "reason for study": CLINICAL, "clinical notes": CLINICAL,
    "technique": TECHNIQUE, "technique and protocol": TECHNIQUE, "protocol": TECHNIQUE, "procedure": TECHNIQUE,
    "examination": TECHNIQUE, "exam": TECHNIQUE, "comparison": COMPARISON, "comparisons": COMPARISON,
    "prior studies": COMPARISON, "prior imaging": COMPARISON, "previous studies": COMPARISON,
    "findings": FINDINGS, "finding": FINDINGS, "report": FINDINGS, "results": FINDINGS,
    "impression": IMPRESSION, "impressions": IMPRESSION, "conclusion": IMPRESSION, "conclusions": IMPRESSION,
    "summary": IMPRESSION, "opinion": IMPRESSION, "assessment": IMPRESSION,
}
_NAMES = "|".join(sorted((re.escape(k).replace("\\ ", r"\s+") for k in _ALIASES), key=len, reverse=True))
_HEADING = re.compile(
    rf"^\s*(?:#{{1,6}}\s*)?[*_]{{0,3}}\s*(?P<name>{_NAMES})\s*[*_]{{0,3}}\s*(?P<mark>[:\-\u2013]?)\s*[*_]{{0,3}}"
    r"(?:\s+|$)(?P<rest>.*)$", re.IGNORECASE)


@dataclass
class ReportDraft:
    """Sections in the fixed order of ``SECTIONS``, each a list of sentences (Impression: numbered items).

    ``metadata`` records how the draft was made: ``drafter`` ("template" or
    "transformers"), ``ai_generated`` (always True for a draft: a person has
    not reviewed it yet), model name/version, device, timings, ``cancelled``.
    """

    sections: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SECTIONS})
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ValueError(f"unknown report sections: {sorted(unknown)} (expected {SECTIONS})")
        self.sections = {s: [x.strip() for x in self.sections.get(s, []) if x.strip()] for s in SECTIONS}

    def __getitem__(self, section: str) -> list[str]:
        return self.sections[section]

    def sentences(self) -> Iterator[tuple[str, int, str]]:
        """Every (section, index within section, sentence), in report order."""
        for section in SECTIONS:
            for i, sentence in enumerate(self.sections[section]):
                yield section, i, sentence

    def text(self) -> str:
        """The report as plain text: "Heading:" lines, a blank line between sections, numbered Impression."""
        blocks = []
        for section in SECTIONS:
            items = self.sections[section]
            if section == IMPRESSION:
                body = "\n".join(f"{i}. {s}" for i, s in enumerate(items, start=1))
            elif section in _LINE_SECTIONS:
                body = "\n".join(items)
            else:
                body = " ".join(items)
            blocks.append(f"{section}:\n{body}".rstrip())
        return "\n\n".join(blocks) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (sections in order, metadata)."""
        return {"sections": {s: list(self.sections[s]) for s in SECTIONS}, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportDraft:
        """The inverse of ``to_dict``."""
        sections = data.get("sections", {})
        return cls({s: list(sections.get(s, [])) for s in SECTIONS}, dict(data.get("metadata", {})))

    @classmethod
    def from_text(cls, text: str, metadata: Mapping[str, Any] | None = None) -> ReportDraft:
        """Parse report text (e.g. a model's output) into sections.

        Text before the first recognised heading goes to Findings, unless it
        is a preamble line ("Here is the report:"), which is dropped. A
        section named twice is appended to. Bullets and list numbers are
        removed; in the Impression each list item (or, without a list, each
        sentence) becomes one item.
        """
        lines: dict[str, list[str]] = {s: [] for s in SECTIONS}
        current: str | None = None
        preamble: list[str] = []
        for raw in text.replace("\r\n", "\n").split("\n"):
            section, rest = _heading(raw)
            if section is not None:
                current = section
                if rest:
                    lines[current].append(rest)
                continue
            if current is None:
                preamble.append(raw)
            else:
                lines[current].append(raw)
        pre = [ln for ln in preamble if ln.strip() and not _is_preamble(ln)]
        lines[FINDINGS] = pre + lines[FINDINGS]
        sections = {s: (_items(lines[s]) if s == IMPRESSION else _sentences(lines[s], s in _LINE_SECTIONS))
                    for s in SECTIONS}
        return cls(sections, dict(metadata or {}))


def _heading(line: str) -> tuple[str | None, str]:
    """(section, text after the heading) if ``line`` starts with a section heading, else (None, '').

    A heading must be marked as one: followed by a colon/dash, in Markdown
    bold or a ``#`` title, in capitals, or alone on its line; so a sentence
    that merely starts with "Findings suggest..." or "History of..." is prose.
    """
    m = _HEADING.match(line)
    if m is None:
        return None, ""
    section = _ALIASES[" ".join(m.group("name").lower().split())]
    rest = m.group("rest").strip().strip("*_").strip()
    head = line[: m.start("rest")].strip()
    marked = bool(m.group("mark")) or "#" in head or "*" in head or "_" in head or m.group("name").isupper()
    return (section, rest) if (marked or not rest) else (None, "")


def _is_preamble(line: str) -> bool:
    """Chatter a model writes before the report ("Here is the draft report:")."""
    low = line.strip().lower()
    return low.endswith(":") or low.startswith(("here is", "here's", "sure", "below is", "draft report",
                                                "radiology report"))


def _sentences(lines: list[str], line_by_line: bool = False) -> list[str]:
    """Sentences of a section's lines: paragraphs (or each line, or each bullet) split into sentences."""
    out: list[str] = []
    paragraph: list[str] = []
    for line in [*lines, ""]:
        if not line.strip() or _BULLETED.match(line) or line_by_line:
            out.extend(split_sentences(" ".join(paragraph)))
            paragraph = []
        if line.strip():
            paragraph.append(strip_bullet(line) if _BULLETED.match(line) else line.strip())
            if _BULLETED.match(line):
                out.extend(split_sentences(paragraph.pop()))
    return out


_BULLETED = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")


def _items(lines: list[str]) -> list[str]:
    """Impression items: one per bullet/number (continuation lines joined), else one per sentence."""
    if not any(_BULLETED.match(ln) for ln in lines):
        return _sentences(lines)
    items: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        if _BULLETED.match(line) or not items:
            items.append(strip_bullet(line))
        else:
            items[-1] = f"{items[-1]} {line.strip()}"
    return [" ".join(i.split()) for i in items if i.strip()]
