"""How the study browser labels patients, studies and series for readers: names, dates, ages, kinds. No Qt.

Pure text from the index's typed rows (``workstation.index.rows``) and the DICOM
display helpers, kept apart from the widget so the browser only draws. Patient
names appear here for the reader's eyes only; nothing here logs.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from workstation.dicomio.display import dicom_date, person_name

if TYPE_CHECKING:
    from workstation.index.rows import PatientRow, SeriesRow

logger = logging.getLogger(__name__)

KIND_TEXT = {
    "volume": "3-D volume",
    "multi_volume": "4-D / multi-echo",
    "single_image": "single image",
    "localizer": "localizer",
    "secondary_capture": "screen capture",
    "document": "document",
    "not_volume": "images (no volume)",
    "mixed": "mixed objects",
}


def display_name(pn: str | None) -> str:
    """A DICOM person name (``Family^Given^Middle``) as readers expect it: ``FAMILY, Given Middle``."""
    if not pn or pn.strip().lower() == "anonymous":
        return "Anonymous"
    return person_name(pn) or "Anonymous"


def text_or_none(value: str | None) -> str:
    """A description, with the literal ``None`` some exporters write treated as missing."""
    text = (value or "").strip()
    return "" if text in ("None", "none", "NONE") else text


def display_date(da: str | None) -> str:
    """A DICOM date (``YYYYMMDD``) as ``YYYY-MM-DD``."""
    return dicom_date(da)


def age_at(birth: str | None, on: str | None) -> str:
    """Age in whole years on a date (both DICOM dates), or "" when either is missing."""
    try:
        b = dt.datetime.strptime(birth or "", "%Y%m%d").date()
        d = dt.datetime.strptime(on or "", "%Y%m%d").date()
    except ValueError:
        return ""
    if d < b:
        return ""
    months = (d.year - b.year) * 12 + d.month - b.month - (d.day < b.day)
    if months < 1:
        return f"{(d - b).days} d"
    if months < 24:
        return f"{months} mo"
    years = months // 12
    return f"{years} y" if years < 150 else ""


def patient_text(patient: PatientRow, latest_date: str | None) -> str:
    """``FAMILY, Given — ID 123 · M · 68 y · born 1956-02-10`` (only the parts the data has)."""
    bits = [f"ID {patient.patient_id}" if patient.patient_id else "no ID"]
    if patient.sex:
        bits.append(patient.sex)
    age = age_at(patient.birth_date, latest_date)
    if age:
        bits.append(age)
    if patient.birth_date:
        bits.append(f"born {display_date(patient.birth_date)}")
    return f"{display_name(patient.name)} — {' · '.join(bits)}"


def series_tooltip(row: SeriesRow, summary: dict[str, Any]) -> str:
    """A series row's tooltip: number, description, kind, instances, grid, spacing and why it is not a volume."""
    lines = [
        f"Series {row.number if row.number is not None else '–'}: "
        f"{text_or_none(row.description) or '(no description)'}",
        f"{row.modality} · {KIND_TEXT.get(row.kind, row.kind)} · {summary.get('instances', '?')} instances",
    ]
    if summary.get("shape"):
        lines.append("Grid " + " × ".join(str(x) for x in summary["shape"]) + " (slices × rows × columns)")
    if summary.get("spacing_mm"):
        lines.append("Spacing " + " × ".join(f"{x:g}" for x in summary["spacing_mm"]) + " mm")
    if summary.get("reason"):
        lines.append(str(summary["reason"]))
    return "\n".join(lines)
