"""Plain-text export of the report (for a RIS, an e-mail, or a quick look), and the shared header wording.

The text carries the same state as every other export: a ``DRAFT - NOT
SIGNED`` line until sign-off, then ``Signed by NAME on DATE (UTC)`` with the
models that drafted and measured, then any addenda.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from workstation.dicomio.display import dicom_date, person_name
from workstation.document.editing import ReportDocument
from workstation.export.deid import Deidentifier
from workstation.export.files import safe_target, write_atomic
from workstation.export.sources import StudyInfo

logger = logging.getLogger(__name__)

DRAFT_BANNER = "DRAFT - NOT SIGNED"
DRAFT_DETAIL = "AI-generated text, not verified by a radiologist. Not for clinical use until signed."


def format_date(value: str) -> str:
    """DICOM ``YYYYMMDD`` -> ``YYYY-MM-DD`` (other text unchanged)."""
    return dicom_date(value)


def format_name(value: str) -> str:
    """DICOM PN ``Family^Given`` -> ``FAMILY, Given`` (as reading rooms print patient names)."""
    return person_name(value)


def format_utc(iso: str) -> str:
    """``2024-03-15T10:15:00+00:00`` -> ``2024-03-15 10:15 UTC``."""
    text = iso.replace("T", " ")
    return (text[:16] + " UTC") if len(text) >= 16 else text


def header_fields(info: StudyInfo) -> list[tuple[str, str]]:
    """(label, value) pairs of the report header, in print order; empty values shown as a dash."""
    sex = {"M": "male", "F": "female", "O": "other"}.get(info.patient_sex.upper(), info.patient_sex)
    series = " ".join(x for x in (f"#{info.series_number}" if info.series_number is not None else "",
                                   info.series_description) if x)
    pairs = [
        ("Patient", format_name(info.patient_name)), ("Patient ID", info.patient_id),
        ("Birth date", format_date(info.patient_birth_date)), ("Sex", sex),
        ("Study date", format_date(info.study_date)), ("Accession", info.accession),
        ("Modality", info.modality), ("Series", series), ("Institution", info.institution),
    ]
    return [(k, v or "-") for k, v in pairs]


def signature_lines(doc: ReportDocument) -> list[str]:
    """The status block: draft warning, or signer, time and models."""
    if doc.sign_off is None:
        return [DRAFT_BANNER, DRAFT_DETAIL, f"AI: {doc.source.describe()}"]
    s = doc.sign_off
    lines = [f"Signed by {s.radiologist} on {format_utc(s.signed_at)}", f"AI: {s.source.describe()}"]
    if s.accepted_at_signing:
        lines.append(f"{s.accepted_at_signing} AI sentence(s) accepted unchanged at signing")
    if s.acknowledged_flags:
        lines.append(f"{len(s.acknowledged_flags)} grounding flag(s) overridden by the radiologist")
    return lines


def report_text(doc: ReportDocument, info: StudyInfo | None = None, *, title: str = "",
                deid: Deidentifier | None = None) -> str:
    """The whole report as plain text (header, state, sections, addenda, signature)."""
    if deid is not None and info is not None:
        info = deid.study_info(info)
    out: list[str] = []
    heading = title or (info.study_description if info and info.study_description else "Radiology report")
    out.append(heading.upper())
    out.append("=" * len(heading))
    if info is not None:
        out.extend(f"{k}: {v}" for k, v in header_fields(info))
    out.append("")
    if doc.sign_off is None:
        out.extend([f"*** {DRAFT_BANNER} ***", DRAFT_DETAIL, ""])
    out.append(doc.text(include_addenda=False).rstrip())
    for add in doc.addenda:
        out.extend(["", f"ADDENDUM ({format_utc(add.added_at)}, {add.author}):", add.text])
    out.extend(["", "-" * 40, *signature_lines(doc)])
    text = "\n".join(out) + "\n"
    return deid.scrub(text) if deid is not None else text


def write_text(doc: ReportDocument, path: str | Path, info: StudyInfo | None = None, *,
               deid: Deidentifier | None = None, protect: Sequence[str | Path] = ()) -> Path:
    """Write ``report_text`` as UTF-8 to ``path``."""
    target = safe_target(path, protect)
    data = report_text(doc, info, deid=deid).encode("utf-8")
    write_atomic(target, lambda tmp: tmp.write_bytes(data))
    logger.info("wrote report text %s", target.name)
    return target
