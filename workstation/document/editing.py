"""The report document: the editing rules of a draft, its sign-off, and addenda after it.

A ``ReportDocument`` starts from an AI draft (sections of sentences, each
"AI (unreviewed)") or from nothing. The radiologist accepts, edits, types,
deletes; each sentence keeps its provenance. The grounding check belongs to
the caller: it runs on each sentence's text and hands the reasons back through
``apply_grounding``, so the document owns the sentence split and the check
never has to agree with it on where sentences end.

Sign-off needs a name and refuses while any flagged sentence is unresolved
(neither re-checked clean nor explicitly acknowledged). It then locks the
document: every later change raises ``ReportLockedError`` and text can only be
added as an addendum. The sign-off records who, when (UTC), the models, and a
unified diff from the AI draft to the signed text.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inference.errors import WorkstationError
from workstation.document.model import (
    SCHEMA_VERSION,
    AcknowledgedFlag,
    Addendum,
    DraftSource,
    Section,
    Sentence,
    SentenceOrigin,
    SignOff,
    split_sentences,
)

logger = logging.getLogger(__name__)


class ReportError(WorkstationError):
    """A report operation that cannot be done (unknown sentence, bad input)."""


class ReportLockedError(ReportError):
    """The report is signed: it can only be added to as an addendum."""


class SignOffError(ReportError):
    """Sign-off refused (no name, unresolved flags, empty report); the message says why."""


def utc_now() -> str:
    """The current time in UTC as ISO 8601 with seconds (``2024-03-15T10:15:00+00:00``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _iso_utc(now: datetime | None) -> str:
    if now is None:
        return utc_now()
    if now.tzinfo is None:
        raise ReportError("sign-off and addendum times must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0).isoformat()


@dataclass
class ReportDocument:
    """A report being written for one study: sections of sentences, then a signature, then addenda.

    ``study_key`` names the study (StudyInstanceUID, or the index's key when the
    UID is missing) and keys the autosave file. ``ai_draft`` is the AI's text as
    drafted, kept unchanged for the sign-off diff. ``revision`` grows with every
    change, so an autosave can tell which copy is newer.
    """

    study_key: str
    sections: list[Section] = field(default_factory=list)
    source: DraftSource = field(default_factory=DraftSource)
    ai_draft: list[Section] = field(default_factory=list)
    study_description: str = ""
    series_uid: str = ""
    created_at: str = field(default_factory=utc_now)
    modified_at: str = field(default_factory=utc_now)
    revision: int = 0
    sign_off: SignOff | None = None
    addenda: list[Addendum] = field(default_factory=list)

    # ----------------------------------------------------------------- creation
    @classmethod
    def from_draft(cls, study_key: str, sections: Mapping[str, str | Sequence[str]] | Sequence[
            tuple[str, str | Sequence[str]]], source: DraftSource | None = None, **kwargs: Any) -> ReportDocument:
        """A document from an AI draft: ``{title: prose or [sentences]}`` in section order.

        Prose is split with ``split_sentences``; every sentence starts as
        "AI (unreviewed)". Empty sections are kept (the radiologist may type in them).
        """
        items = list(sections.items()) if isinstance(sections, Mapping) else list(sections)
        built = []
        for title, body in items:
            texts = split_sentences(body) if isinstance(body, str) else [t.strip() for t in body if t.strip()]
            built.append(Section(title, [Sentence(t, SentenceOrigin.AI, ai_text=t) for t in texts]))
        doc = cls(study_key=study_key, sections=built, source=source or DraftSource(), **kwargs)
        doc.ai_draft = copy.deepcopy(built)
        return doc

    @classmethod
    def blank(cls, study_key: str, titles: Iterable[str], **kwargs: Any) -> ReportDocument:
        """An empty document with these section titles (no AI draft: the diff starts from nothing)."""
        return cls(study_key=study_key, sections=[Section(t) for t in titles], **kwargs)

    # ----------------------------------------------------------------- reading
    @property
    def signed(self) -> bool:
        """Whether the report has been signed (and is therefore locked)."""
        return self.sign_off is not None

    @property
    def worked_on(self) -> bool:
        """Whether a person has worked on it: signed, an addendum, or any sentence accepted, edited,
        typed or with a flag overridden. A draft only the AI wrote can be drafted again; this cannot."""
        if self.signed or self.addenda:
            return True
        return any(s.provenance is not SentenceOrigin.AI or s.acknowledged for _, s in self.sentences())

    def sentences(self) -> Iterator[tuple[Section, Sentence]]:
        """Every sentence with its section, in reading order."""
        for sec in self.sections:
            for s in sec.sentences:
                yield sec, s

    def sentence(self, sentence_id: str) -> Sentence:
        """The sentence with this id; ``ReportError`` if none."""
        for _, s in self.sentences():
            if s.id == sentence_id:
                return s
        raise ReportError(f"no sentence {sentence_id!r} in this report")

    def sentence_at(self, section_title: str, index: int) -> Sentence:
        """The ``index``-th sentence of a section: how a check of the whole draft, which addresses
        sentences by (section, index), is mapped onto sentence ids right after ``from_draft``."""
        sentences = self.section(section_title).sentences
        if not 0 <= index < len(sentences):
            raise ReportError(f"section {section_title!r} has no sentence {index}")
        return sentences[index]

    def section(self, title: str) -> Section:
        """The section with this title (case-insensitive); ``ReportError`` if none."""
        low = title.lower()
        for sec in self.sections:
            if sec.title.lower() == low:
                return sec
        raise ReportError(f"no section {title!r} in this report")

    def unresolved(self) -> list[Sentence]:
        """Flagged sentences neither re-checked clean nor acknowledged: they block sign-off."""
        return [s for _, s in self.sentences() if s.unresolved]

    def text(self, *, include_addenda: bool = True) -> str:
        """The report as plain text: ``TITLE:`` lines, section prose, then any addenda."""
        blocks = [f"{sec.title.upper()}:\n{sec.text()}" for sec in self.sections if sec.sentences]
        if include_addenda:
            blocks.extend(f"ADDENDUM ({a.added_at}, {a.author}):\n{a.text}" for a in self.addenda)
        return "\n\n".join(blocks) + ("\n" if blocks else "")

    # ----------------------------------------------------------------- editing
    def _mutable(self) -> None:
        if self.sign_off is not None:
            raise ReportLockedError("the report is signed and locked; add an addendum instead")

    def _touch(self) -> None:
        self.revision += 1
        self.modified_at = utc_now()

    def accept(self, sentence_id: str) -> Sentence:
        """Mark an AI sentence as reviewed and accepted unchanged."""
        self._mutable()
        s = self.sentence(sentence_id)
        if s.provenance is SentenceOrigin.AI:
            s.provenance = SentenceOrigin.AI_ACCEPTED
            self._touch()
        return s

    def accept_all(self) -> int:
        """Accept every unreviewed AI sentence; returns how many."""
        self._mutable()
        n = 0
        for _, s in self.sentences():
            if s.provenance is SentenceOrigin.AI:
                s.provenance = SentenceOrigin.AI_ACCEPTED
                n += 1
        if n:
            self._touch()
        return n

    def edit(self, sentence_id: str, text: str) -> Sentence | None:
        """Replace a sentence's text; an empty text deletes it (returns ``None``).

        An AI sentence becomes "edited" (or "AI accepted" again if the text is
        restored to the draft); a typed one stays typed. An acknowledgement of
        flags is dropped, since it was given for the old text; the flags stay
        until the caller re-runs the grounding check on the new text.
        """
        self._mutable()
        text = text.strip()
        if not text:
            self.delete(sentence_id)
            return None
        s = self.sentence(sentence_id)
        if text == s.text:
            return s
        s.text = text
        if s.ai_text is not None:
            s.provenance = SentenceOrigin.AI_ACCEPTED if text == s.ai_text else SentenceOrigin.EDITED
        s.acknowledged = None
        self._touch()
        return s

    def add(self, section_title: str, text: str, *, after: str | None = None) -> Sentence:
        """A typed sentence at the end of a section (created if missing), or after sentence ``after``."""
        self._mutable()
        text = text.strip()
        if not text:
            raise ReportError("cannot add an empty sentence")
        try:
            sec = self.section(section_title)
        except ReportError:
            sec = Section(section_title)
            self.sections.append(sec)
        s = Sentence(text, SentenceOrigin.TYPED)
        if after is None:
            sec.sentences.append(s)
        else:
            index = next((i for i, x in enumerate(sec.sentences) if x.id == after), None)
            if index is None:
                raise ReportError(f"no sentence {after!r} in section {section_title!r}")
            sec.sentences.insert(index + 1, s)
        self._touch()
        return s

    def delete(self, sentence_id: str) -> None:
        """Remove a sentence (the sign-off diff will show it)."""
        self._mutable()
        for sec in self.sections:
            for i, s in enumerate(sec.sentences):
                if s.id == sentence_id:
                    del sec.sentences[i]
                    self._touch()
                    return
        raise ReportError(f"no sentence {sentence_id!r} in this report")

    def apply_grounding(self, sentence_id: str, reasons: Sequence[str], links: Sequence[str] = ()) -> Sentence:
        """Store the grounding check's result for a sentence's current text.

        ``reasons`` empty means the sentence passed (its flags clear); any reason
        flags it, and a previous acknowledgement is dropped when the reasons change.
        """
        self._mutable()
        s = self.sentence(sentence_id)
        new = [str(r) for r in reasons]
        if new != s.flags:
            s.acknowledged = None
        s.flags = new
        s.links = [str(x) for x in links]
        self._touch()
        return s

    def acknowledge(self, sentence_id: str, note: str) -> Sentence:
        """The radiologist overrides a sentence's flags (e.g. "checked on images"); the note is required."""
        self._mutable()
        s = self.sentence(sentence_id)
        if not s.flags:
            raise ReportError("this sentence has no flags to acknowledge")
        if not note.strip():
            raise ReportError("say why the flag is overridden")
        s.acknowledged = note.strip()
        self._touch()
        return s

    # ----------------------------------------------------------------- sign-off
    def draft_text(self) -> str:
        """The AI draft as text (what the sign-off diff starts from)."""
        return _lines(self.ai_draft)

    def sign(self, radiologist: str, *, now: datetime | None = None) -> SignOff:
        """Sign and lock the report; refuse without a name, with unresolved flags, or when empty.

        AI sentences still unreviewed are accepted by the signature (counted in
        the record). Returns the ``SignOff`` also stored on the document.
        """
        self._mutable()
        name = " ".join(radiologist.split())
        if not name:
            raise SignOffError("sign-off needs the radiologist's name")
        if not any(True for _ in self.sentences()):
            raise SignOffError("the report is empty")
        pending = self.unresolved()
        if pending:
            first = pending[0]
            raise SignOffError(
                f"{len(pending)} flagged sentence(s) unresolved; edit them, re-check, or acknowledge the flags. "
                f"First: {first.text[:80]!r}: {'; '.join(first.flags)}")
        accepted = sum(1 for _, s in self.sentences() if s.provenance is SentenceOrigin.AI)
        for _, s in self.sentences():
            if s.provenance is SentenceOrigin.AI:
                s.provenance = SentenceOrigin.AI_ACCEPTED
        signed_text = self.text(include_addenda=False)
        diff = "".join(difflib.unified_diff(
            self.draft_text().splitlines(keepends=True), _lines(self.sections).splitlines(keepends=True),
            fromfile="AI draft", tofile=f"signed by {name}"))
        acks = tuple(AcknowledgedFlag(s.text, tuple(s.flags), s.acknowledged or "")
                     for _, s in self.sentences() if s.flags)
        self.sign_off = SignOff(radiologist=name, signed_at=_iso_utc(now), source=self.source, diff=diff,
                                text_sha256=_sha256(signed_text), accepted_at_signing=accepted,
                                acknowledged_flags=acks)
        self._touch()
        logger.info("report signed (revision %d, %d AI sentences accepted at signing)", self.revision, accepted)
        return self.sign_off

    def add_addendum(self, text: str, author: str, *, now: datetime | None = None) -> Addendum:
        """Append an addendum to a signed report (the only change a signed report takes)."""
        if self.sign_off is None:
            raise ReportError("an addendum is added after sign-off; edit the draft instead")
        text, author = text.strip(), " ".join(author.split())
        if not text:
            raise ReportError("the addendum is empty")
        if not author:
            raise ReportError("an addendum needs its author's name")
        add = Addendum(text, author, _iso_utc(now))
        self.addenda.append(add)
        self._touch()
        return add

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the autosave format)."""
        return {
            "schema": SCHEMA_VERSION, "study_key": self.study_key, "study_description": self.study_description,
            "series_uid": self.series_uid, "created_at": self.created_at, "modified_at": self.modified_at,
            "revision": self.revision, "source": self.source.to_dict(),
            "sections": [s.to_dict() for s in self.sections], "ai_draft": [s.to_dict() for s in self.ai_draft],
            "sign_off": self.sign_off.to_dict() if self.sign_off else None,
            "addenda": [a.to_dict() for a in self.addenda],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportDocument:
        """Inverse of ``to_dict``; refuses a newer schema and a signed report whose text was altered."""
        schema = int(data.get("schema", 0))
        if schema > SCHEMA_VERSION:
            raise ReportError(f"report saved by a newer version (schema {schema} > {SCHEMA_VERSION})")
        doc = cls(
            study_key=str(data["study_key"]), study_description=str(data.get("study_description", "")),
            series_uid=str(data.get("series_uid", "")), created_at=str(data.get("created_at", "")),
            modified_at=str(data.get("modified_at", "")), revision=int(data.get("revision", 0)),
            source=DraftSource.from_dict(data.get("source", {})),
            sections=[Section.from_dict(s) for s in data.get("sections", [])],
            ai_draft=[Section.from_dict(s) for s in data.get("ai_draft", [])],
            sign_off=SignOff.from_dict(data["sign_off"]) if data.get("sign_off") else None,
            addenda=[Addendum.from_dict(a) for a in data.get("addenda", [])],
        )
        if doc.sign_off is not None and _sha256(doc.text(include_addenda=False)) != doc.sign_off.text_sha256:
            raise ReportError("the signed report's text does not match its signature (altered after signing)")
        return doc

    def to_json(self) -> str:
        """The document as indented JSON text."""
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ReportDocument:
        """Inverse of ``to_json``."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ReportError("not a report document")
        return cls.from_dict(data)


def _lines(sections: Sequence[Section]) -> str:
    """One line per section title and per sentence: a diff then shows sentence-level changes."""
    out = []
    for sec in sections:
        out.append(f"## {sec.title}\n")
        out.extend(f"{s.text}\n" for s in sec.sentences)
    return "".join(out)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
