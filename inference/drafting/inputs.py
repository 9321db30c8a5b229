"""What a report drafter may see: de-identified notes, technique facts, measured findings, comparison.

``ReportInputs`` has no field for the patient's name, ID or birth date, so
those can never reach a prompt or a template. Callers pass de-identified
notes; as a second line of defence, every free text given here is scrubbed of
the obvious identifiers that clinical text carries anyway: DICOM person names
(``DOE^JOHN``), labelled names/IDs (``Patient name: ...``, ``MRN: 123``) and
dates of birth (``DOB 01/02/1950``, ``born 1950-02-01``). The scrub is a
heuristic, not a de-identification profile.

Nothing here logs note text: notes are patient data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from inference.drafting.lexicon import body_part_words, dicom_text
from inference.findings import Findings
from inference.followup.model import Comparison
from inference.labels import LabelTable

if TYPE_CHECKING:
    from inference.contract import AnalysisResult

logger = logging.getLogger(__name__)

Contrast = Literal["yes", "no", "unknown"]

NAME_REMOVED = "[name removed]"
ID_REMOVED = "[ID removed]"
DOB_REMOVED = "[date of birth removed]"

_MONTHS = (r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?")
_DATE = (rf"(?:\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{1,4}}|\d{{8}}|\d{{1,2}}\s+{_MONTHS}\s+\d{{2,4}}"
         rf"|{_MONTHS}\s+\d{{1,2}},?\s+\d{{2,4}})")
_DOB = re.compile(rf"(?i)\b(?:d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*[:=\-]?\s*{_DATE}")
# DICOM PN: family^given^middle^prefix^suffix; at least one caret between letters
_PN = re.compile(r"(?<![\w^])[A-Za-z][A-Za-z'\-]*(?:\^[A-Za-z'\-.]*)+")
_LABELLED_NAME = re.compile(r"(?im)\b(?:patient(?:'s)?\s+)?name\s*:\s*[^\n,;.]+")
_LABELLED_ID = re.compile(r"(?i)\b(?:patient\s+id|mrn|medical\s+record\s+(?:number|no\.?)|hospital\s+(?:number|no\.?)"
                          r"|nhs\s+(?:number|no\.?)|accession(?:\s+number)?)\s*[:#]?\s*[A-Z0-9][A-Z0-9\-/]*")


def scrub_identifiers(text: str) -> str:
    """``text`` with DICOM person names, labelled names/IDs and dates of birth replaced by placeholders."""
    out = _DOB.sub(DOB_REMOVED, text)
    out = _LABELLED_ID.sub(ID_REMOVED, out)
    out = _LABELLED_NAME.sub(NAME_REMOVED, out)
    return _PN.sub(NAME_REMOVED, out)


class ClinicalNote(NamedTuple):
    """One de-identified clinical note: where it came from (file, DICOM field) and its text."""

    source: str
    text: str


_SINGLE_VALUED = ("body_part", "manufacturer", "scanner_model", "kernel")


@dataclass(frozen=True)
class TechniqueFacts:
    """How the images were acquired, as far as the headers tell. Never holds patient data.

    Header codes are kept as words a report can print: ``body_part`` "PARTIALBODY"
    becomes "partial body", a multi-valued kernel "Br38f\\3" becomes "Br38f"
    (``inference.drafting.lexicon``).
    """

    modality: str = ""
    body_part: str = ""
    contrast: Contrast = "unknown"
    slice_thickness_mm: float | None = None
    manufacturer: str = ""
    scanner_model: str = ""
    kernel: str = ""
    study_description: str = ""
    series_description: str = ""

    def __post_init__(self) -> None:
        for name in ("body_part", "manufacturer", "scanner_model", "kernel", "study_description",
                     "series_description"):
            value = getattr(self, name)
            if name in _SINGLE_VALUED:  # a multi-valued header string: its first meaningful value
                value = dicom_text(value)
            object.__setattr__(self, name, scrub_identifiers(str(value).strip()))
        object.__setattr__(self, "body_part", body_part_words(self.body_part))

    @classmethod
    def from_metadata(cls, modality: str, metadata: Mapping[str, Any], study_description: str = "") -> TechniqueFacts:
        """Technique facts from a volume's ``metadata`` (the keys the DICOM loader fills); other keys are ignored.

        Contrast is "yes" when a contrast agent is recorded, "no" when the
        study or series description says without/non-contrast, else "unknown"
        (an empty ContrastBolusAgent does not prove a non-contrast scan).
        """
        def text(key: str) -> str:
            value = metadata.get(key)
            return "" if value is None else str(value).strip()

        thickness: float | None
        try:
            thickness = float(text("slice_thickness")) or None
        except ValueError:
            thickness = None
        return cls(modality=modality.strip(), body_part=text("body_part"),
                   contrast=contrast_from(text("contrast_agent"), study_description, text("series_description")),
                   slice_thickness_mm=thickness, manufacturer=text("manufacturer"), scanner_model=text("model"),
                   kernel=text("kernel"), study_description=study_description.strip(),
                   series_description=text("series_description"))


_NO_CONTRAST = re.compile(r"(?i)\b(?:without(?:\s+iv)?\s+contrast|non[-\s]?contrast|no\s+contrast|unenhanced|"
                          r"w/o|wo\s+contrast|native)\b")
_WITH_CONTRAST = re.compile(r"(?i)\b(?:with(?:\s+iv)?\s+contrast|contrast[-\s]enhanced|c\+|w/\s*contrast|"
                            r"arterial|portal\s+venous|venous\s+phase)")


def contrast_from(agent: str, *descriptions: str) -> Contrast:
    """Whether contrast was given, from ContrastBolusAgent and the study/series descriptions."""
    value = agent.strip().upper()
    if value and value not in ("NONE", "NO", "N", "0", "WITHOUT"):
        return "yes"
    text = " ".join(descriptions)
    if _NO_CONTRAST.search(text):
        return "no"
    if _WITH_CONTRAST.search(text):
        return "yes"
    return "no" if value else "unknown"


@dataclass(frozen=True)
class ReportInputs:
    """Everything a drafter uses. No patient name, ID or birth date fields, by design.

    ``notes`` are (source, text) pairs; a source is shown to a model only as a
    DICOM field name or "note N", never as a path (paths often hold names).
    ``label_table`` lists what the model could have found (so "no nodule" can
    be said when a nodule label exists but found nothing); ``analysis`` names
    the model that measured the findings (e.g. "builtin.ct 1.0"). ``comparison`` is
    the current study compared with a prior (``inference.followup``), None when
    no prior was compared: the draft's Comparison section, the impression's
    follow-up answer and recommendation, and the grounding check all read it.
    """

    findings: Findings
    technique: TechniqueFacts = field(default_factory=TechniqueFacts)
    notes: tuple[ClinicalNote, ...] = ()
    comparison: Comparison | None = None
    label_table: LabelTable | None = None
    analysis: str = ""

    def __post_init__(self) -> None:
        notes = tuple(ClinicalNote(str(s), scrub_identifiers(str(t)).strip()) for s, t in self.notes)
        object.__setattr__(self, "notes", tuple(n for n in notes if n.text))

    @classmethod
    def from_analysis(cls, result: AnalysisResult, notes: Iterable[tuple[str, str]] = (),
                      comparison: Comparison | None = None, study_description: str = "") -> ReportInputs:
        """Inputs from an engine result (findings, label table, technique from the volume's headers)."""
        volume = result.request.volume
        prov = result.provenance
        return cls(findings=result.findings,
                   technique=TechniqueFacts.from_metadata(volume.modality, volume.metadata, study_description),
                   notes=tuple(ClinicalNote(s, t) for s, t in notes), comparison=comparison,
                   label_table=result.label_table, analysis=f"{prov.model_id} {prov.model_version}".strip())

    def notes_text(self) -> str:
        """All note texts, one paragraph each (for grounding; never logged)."""
        return "\n\n".join(n.text for n in self.notes)

    def cautions(self) -> list[str]:
        """Every distinct caution: the findings' own, then what a measurement's caution adds to them.

        A measurement's caution is often several of the findings' cautions
        joined by "; " (and a caution may itself contain "; "), so the known
        ones are taken out of it and only a remainder is added.
        """
        out = [c.strip() for c in dict.fromkeys(self.findings.cautions) if c.strip()]
        for m in self.findings.measurements:
            rest = m.caution
            for known in sorted(out, key=len, reverse=True):
                rest = rest.replace(known, "")
            rest = rest.strip().strip(";").strip()
            rest = "; ".join(p.strip() for p in rest.split(";") if p.strip())
            if rest and rest not in out:
                out.append(rest)
        return out


def note_label(note: ClinicalNote, index: int) -> str:
    """How a note's source is shown to a model: "DICOM <field>" or "note N" (never a file path)."""
    src = note.source.strip()
    if re.fullmatch(r"DICOM [A-Za-z]+", src):
        return src
    return f"note {index}"
