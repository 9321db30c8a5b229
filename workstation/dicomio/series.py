"""Group instance headers into studies and series, robustly.

UIDs may be empty or shared by unrelated objects in the wild, so grouping keys
fall back to other identifying fields, and image series are further split by
geometry (frame of reference, orientation, pixel spacing, rows/columns). Keys
are deterministic: re-importing the same files lands in the same series.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.sopclasses import ENCAPSULATED_PDF, ObjectKind, object_kind

logger = logging.getLogger(__name__)

LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVEY"})


def _digest(*parts: object) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:20]


def instance_kind(h: InstanceHeader) -> str:
    """Kind of one object: image, localizer, secondary_capture, document, ..."""
    kind = object_kind(h.sop_class_uid, h.has_pixels)
    if kind is ObjectKind.IMAGE and LOCALIZER_TYPES.intersection(h.image_type):
        return "localizer"
    if kind is ObjectKind.IMAGE and "SECONDARY" in h.image_type and h.ipp is None:
        return "secondary_capture"
    return kind.value


def document_type(h: InstanceHeader) -> str:
    """``pdf`` or ``sr`` for documents."""
    return "pdf" if h.sop_class_uid == ENCAPSULATED_PDF else "sr"


def patient_key(h: InstanceHeader) -> str:
    """Stable key of the patient (anonymous studies each get their own patient)."""
    if h.patient_id:
        return _digest("pid", h.patient_id, h.patient_name)
    return _digest("anon", h.patient_name, h.patient_birth_date, study_key(h))


def study_key(h: InstanceHeader) -> str:
    """StudyInstanceUID, or a digest of the other study identifiers when it is empty."""
    if h.study_uid:
        return h.study_uid
    return "nouid-" + _digest(h.patient_id, h.patient_name, h.study_date, h.study_time, h.accession, h.study_id)


def _geometry_signature(h: InstanceHeader) -> str:
    if h.iop is None:
        return ""
    iop = tuple(np.round(np.asarray(h.iop, dtype=float), 2).tolist())
    spacing = tuple(round(float(s), 3) for s in h.pixel_spacing) if h.pixel_spacing else ()
    return f"{h.frame_of_reference_uid}|{iop}|{spacing}|{h.rows}x{h.columns}"


def series_key(h: InstanceHeader) -> str:
    """Deterministic key of the series this object belongs to."""
    kind = instance_kind(h)
    # SeriesNumber is part of the key even with a UID: exports that copy one UID
    # into several numbered series exist, and one series never has two numbers.
    base = f"{h.series_uid}|{h.series_number}" if h.series_uid else (
        f"nouid|{h.series_number}|{h.modality}|{h.series_description}")
    split = _geometry_signature(h) if kind == "image" else ""
    if kind == "localizer":
        split = h.frame_of_reference_uid
    return _digest(study_key(h), base, kind, split)


@dataclass
class SeriesGroup:
    """The headers of one series, with its keys and object kind."""

    study_key: str
    series_key: str
    kind: str
    headers: list[InstanceHeader] = field(default_factory=list)

    @property
    def first(self) -> InstanceHeader:
        """A representative header (the lowest instance number)."""
        return min(self.headers, key=lambda h: (h.instance_number is None, h.instance_number or 0, h.ref))


def group_series(headers: Iterable[InstanceHeader]) -> list[SeriesGroup]:
    """Group headers into series, in a stable order."""
    groups: dict[str, SeriesGroup] = {}
    for h in headers:
        key = series_key(h)
        if key not in groups:
            groups[key] = SeriesGroup(study_key(h), key, instance_kind(h))
        groups[key].headers.append(h)
    return sorted(groups.values(), key=lambda g: (g.study_key, g.first.series_number or 0, g.series_key))


def group_studies(groups: Iterable[SeriesGroup]) -> dict[str, list[SeriesGroup]]:
    """Series groups by study key."""
    out: dict[str, list[SeriesGroup]] = defaultdict(list)
    for g in groups:
        out[g.study_key].append(g)
    return dict(out)
