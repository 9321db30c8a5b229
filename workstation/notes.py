"""Clinical notes attached to a study, each with where it came from.

Sources: text files (``.txt``, ``.md``) in the study's folder (or beside its
files inside a zip), free-text DICOM fields (reason for the request, patient
history...), and prior reports stored in the study as SR (text content) or
encapsulated PDF.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import document_type

logger = logging.getLogger(__name__)

NOTE_SUFFIXES = (".txt", ".md")
MAX_NOTE_BYTES = 1_000_000


@dataclass(frozen=True)
class Note:
    """One clinical note: its source (file path or DICOM field), kind, and text."""

    source: str
    kind: str
    text: str


def notes_from_headers(headers: Iterable[InstanceHeader]) -> list[Note]:
    """Free-text DICOM fields, once per distinct field and value."""
    seen: set[tuple[str, str]] = set()
    out: list[Note] = []
    for h in headers:
        for name, text in h.texts.items():
            if name == "SeriesDescription" or (name, text) in seen:
                continue
            seen.add((name, text))
            out.append(Note(f"DICOM {name}", "dicom field", text))
    return out


def _decode(data: bytes) -> str:
    for enc in ("utf-8", "cp1252", "latin-1"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def notes_from_folders(refs: Iterable[str]) -> list[Note]:
    """Text files in the folders (or zip folders) that hold the study's files."""
    folders: set[Path] = set()
    zip_dirs: dict[str, set[str]] = {}
    for ref in refs:
        if "::" in ref:
            path, member = ref.split("::", 1)
            zip_dirs.setdefault(path, set()).add(str(PurePosixPath(member).parent))
        else:
            folders.add(Path(ref).parent)
    out: list[Note] = []
    for folder in sorted(folders):
        for f in sorted(folder.iterdir()) if folder.is_dir() else []:
            if f.suffix.lower() in NOTE_SUFFIXES and f.is_file() and f.stat().st_size <= MAX_NOTE_BYTES:
                text = _decode(f.read_bytes()).strip()
                if text:
                    out.append(Note(str(f), "text file", text))
    for zpath, dirs in sorted(zip_dirs.items()):
        with zipfile.ZipFile(zpath) as zf:
            for info in zf.infolist():
                name = PurePosixPath(info.filename)
                if (name.suffix.lower() in NOTE_SUFFIXES and str(name.parent) in dirs
                        and info.file_size <= MAX_NOTE_BYTES):
                    text = _decode(zf.read(info)).strip()
                    if text:
                        out.append(Note(f"{zpath}::{info.filename}", "text file", text))
    return out


def _sr_text(items: Any, depth: int = 0) -> list[str]:
    lines: list[str] = []
    for item in items or []:
        name = ""
        if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence:
            name = str(item.ConceptNameCodeSequence[0].get("CodeMeaning", ""))
        vtype = str(item.get("ValueType", ""))
        value = ""
        if vtype == "TEXT":
            value = str(item.get("TextValue", ""))
        elif vtype == "CODE" and item.get("ConceptCodeSequence"):
            value = str(item.ConceptCodeSequence[0].get("CodeMeaning", ""))
        elif vtype == "NUM" and item.get("MeasuredValueSequence"):
            mv = item.MeasuredValueSequence[0]
            unit = mv.MeasurementUnitsCodeSequence[0].get("CodeValue", "") if mv.get(
                "MeasurementUnitsCodeSequence") else ""
            value = f"{mv.get('NumericValue', '')} {unit}".strip()
        if value:
            lines.append(f"{name}: {value}" if name else value)
        elif vtype == "CONTAINER" and name and depth > 0:
            lines.append(f"{name.upper()}")
        lines.extend(_sr_text(item.get("ContentSequence"), depth + 1))
    return lines


def note_from_document(header: InstanceHeader) -> Note | None:
    """The text of a prior report stored as DICOM SR or encapsulated PDF."""
    import pydicom

    try:
        with header.file_ref.open() as fp:
            ds = pydicom.dcmread(fp)
    except Exception as exc:
        logger.warning("cannot read document %s: %s", header.ref, exc)
        return None
    if document_type(header) == "pdf":
        data = bytes(ds.get("EncapsulatedDocument", b""))
        text = pdf_text(data)
        if text is None:
            return None
        return Note(header.ref, "prior report (PDF)", text)
    title = ""
    if ds.get("ConceptNameCodeSequence"):
        title = str(ds.ConceptNameCodeSequence[0].get("CodeMeaning", ""))
    lines = _sr_text(ds.get("ContentSequence"))
    text = "\n".join([title, *lines] if title else lines).strip()
    return Note(header.ref, "prior report (SR)", text) if text else None


def pdf_text(data: bytes) -> str | None:
    """Plain text of a PDF, or None if it cannot be read."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        return "\n".join((page.extract_text() or "") for page in reader.pages).strip()
    except Exception as exc:
        logger.warning("unreadable encapsulated PDF: %s", exc)
        return None
