"""The parts of a report document: sentences with provenance, sections, sign-off and addenda.

Plain dataclasses with a JSON form (``to_dict``/``from_dict``), kept apart from
the editing rules in ``workstation.document.editing`` so that autosave, exports
and the GUI can read a report without being able to change it by accident.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from inference.drafting.sentences import split_sentences as _split_sentences

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

STANDARD_SECTIONS = ("Clinical information", "Technique", "Comparison", "Findings", "Impression")
"""The usual sections of a radiology report, in reading order."""


class SentenceOrigin(StrEnum):
    """Who wrote a sentence, and whether a radiologist has looked at it."""

    AI = "ai"  # drafted by the AI, not yet reviewed
    AI_ACCEPTED = "ai_accepted"  # drafted by the AI, accepted unchanged by the radiologist
    EDITED = "edited"  # drafted by the AI, changed by the radiologist
    TYPED = "typed"  # written by the radiologist

    @property
    def label(self) -> str:
        """Human wording, as the editor and the PDF show it."""
        return {"ai": "AI (unreviewed)", "ai_accepted": "AI accepted", "edited": "edited",
                "typed": "typed"}[self.value]


def new_id() -> str:
    """A short random identifier for a sentence (stable across edits and saves)."""
    return uuid.uuid4().hex[:12]


@dataclass
class Sentence:
    """One sentence of a section.

    ``ai_text`` keeps what the AI drafted (``None`` for typed sentences), so an
    edit can be undone back to "AI accepted". ``flags`` are the grounding
    check's reasons against this sentence's current text (supplied by the
    caller); ``acknowledged`` records a radiologist's explicit override of them.
    ``links`` are the findings the check tied the sentence to (opaque ids such
    as ``lesion:1``), for navigation.
    """

    text: str
    provenance: SentenceOrigin
    id: str = field(default_factory=new_id)
    ai_text: str | None = None
    flags: list[str] = field(default_factory=list)
    acknowledged: str | None = None
    links: list[str] = field(default_factory=list)

    @property
    def unresolved(self) -> bool:
        """Flagged by the grounding check and not overridden by the radiologist."""
        return bool(self.flags) and self.acknowledged is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"id": self.id, "text": self.text, "provenance": self.provenance.value, "ai_text": self.ai_text,
                "flags": list(self.flags), "acknowledged": self.acknowledged, "links": list(self.links)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sentence:
        """Inverse of ``to_dict``."""
        return cls(text=str(data["text"]), provenance=SentenceOrigin(data["provenance"]), id=str(data["id"]),
                   ai_text=data.get("ai_text"), flags=[str(f) for f in data.get("flags", [])],
                   acknowledged=data.get("acknowledged"), links=[str(x) for x in data.get("links", [])])


@dataclass
class Section:
    """A titled section (Findings, Impression...) holding sentences in order."""

    title: str
    sentences: list[Sentence] = field(default_factory=list)

    def text(self) -> str:
        """The section as printed: Impression/Conclusion as a numbered list, Findings and Comparison one
        sentence a line (as the drafter lays them out), other sections as prose; list items always on their
        own lines."""
        key = self.title.strip().lower()
        if key in _NUMBERED_SECTIONS:
            return "\n".join(s.text if _LIST_ITEM.match(s.text) else f"{i}. {s.text}"
                             for i, s in enumerate(self.sentences, start=1))
        if key in _LINE_SECTIONS:
            return "\n".join(s.text for s in self.sentences)
        out = ""
        for s in self.sentences:
            if not out:
                out = s.text
            elif _LIST_ITEM.match(s.text):
                out += "\n" + s.text
            else:
                out += " " + s.text
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"title": self.title, "sentences": [s.to_dict() for s in self.sentences]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Section:
        """Inverse of ``to_dict``."""
        return cls(str(data["title"]), [Sentence.from_dict(s) for s in data.get("sentences", [])])


_LIST_ITEM = re.compile(r"^(\d+[.)]|[-•*])\s")
_NUMBERED_SECTIONS = frozenset({"impression", "impressions", "conclusion", "conclusions"})
_LINE_SECTIONS = frozenset({"findings", "comparison"})  # one finding, one compared lesion a line


@dataclass(frozen=True)
class DraftSource:
    """Which software drafted the report, and which model measured what it quotes."""

    drafter: str = ""
    drafter_version: str = ""
    analysis_model: str = ""
    analysis_model_version: str = ""

    def describe(self) -> str:
        """One line for the signature block, e.g. ``analysis builtin.ct 1.0.0; text drafted by template 1``."""
        parts = []
        if self.analysis_model:
            parts.append(f"analysis {self.analysis_model} {self.analysis_model_version}".strip())
        if self.drafter:
            parts.append(f"text drafted by {self.drafter} {self.drafter_version}".strip())
        return "; ".join(parts) or "no AI involvement recorded"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], analysis_model: str = "",
                      analysis_model_version: str = "") -> DraftSource:
        """From a drafter's metadata (``inference.drafting`` ``ReportDraft.metadata``): drafter name, with the
        language model's name when there is one, and the model's or template's version."""
        drafter = str(metadata.get("drafter", "") or "")
        model = str(metadata.get("model", "") or "")
        if model and model not in drafter:
            drafter = f"{drafter} {model}".strip()
        version = str(metadata.get("model_version") or metadata.get("template_version") or "")
        return cls(drafter, version, analysis_model, analysis_model_version)

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict."""
        return {"drafter": self.drafter, "drafter_version": self.drafter_version,
                "analysis_model": self.analysis_model, "analysis_model_version": self.analysis_model_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DraftSource:
        """Inverse of ``to_dict``."""
        return cls(**{k: str(data.get(k, "")) for k in ("drafter", "drafter_version", "analysis_model",
                                                          "analysis_model_version")})


@dataclass(frozen=True)
class AcknowledgedFlag:
    """A grounding flag the radiologist overrode before signing (kept in the sign-off record)."""

    sentence: str
    reasons: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class SignOff:
    """Who signed, when (UTC, ISO 8601), the models involved, and what changed from the AI draft.

    ``text_sha256`` is the SHA-256 of the signed text, checked when a saved
    document is loaded, so a signed report altered on disk is refused.
    ``accepted_at_signing`` counts AI sentences still unreviewed at signing,
    which the signature accepts.
    """

    radiologist: str
    signed_at: str
    source: DraftSource
    diff: str
    text_sha256: str
    accepted_at_signing: int = 0
    acknowledged_flags: tuple[AcknowledgedFlag, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"radiologist": self.radiologist, "signed_at": self.signed_at, "source": self.source.to_dict(),
                "diff": self.diff, "text_sha256": self.text_sha256, "accepted_at_signing": self.accepted_at_signing,
                "acknowledged_flags": [{"sentence": a.sentence, "reasons": list(a.reasons), "note": a.note}
                                       for a in self.acknowledged_flags]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignOff:
        """Inverse of ``to_dict``."""
        return cls(radiologist=str(data["radiologist"]), signed_at=str(data["signed_at"]),
                   source=DraftSource.from_dict(data.get("source", {})), diff=str(data.get("diff", "")),
                   text_sha256=str(data["text_sha256"]), accepted_at_signing=int(data.get("accepted_at_signing", 0)),
                   acknowledged_flags=tuple(AcknowledgedFlag(str(a["sentence"]), tuple(a["reasons"]), str(a["note"]))
                                            for a in data.get("acknowledged_flags", [])))


@dataclass(frozen=True)
class Addendum:
    """Text added after sign-off, with its author and UTC time; addenda are append-only."""

    text: str
    author: str
    added_at: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict."""
        return {"text": self.text, "author": self.author, "added_at": self.added_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Addendum:
        """Inverse of ``to_dict``."""
        return cls(str(data["text"]), str(data["author"]), str(data["added_at"]))


def split_sentences(text: str) -> list[str]:
    """Split editor prose into sentences: the engine's splitter, with line breaks also ending a sentence.

    Decimal numbers (``3.5 mm``), abbreviations (``e.g.``, ``Dr.``) and initials
    do not end a sentence, and a numbered list item (``1. Nodule...``) stays one
    sentence with its number, exactly as the grounding check splits a draft.
    """
    return _split_sentences(text, line_breaks=True)
