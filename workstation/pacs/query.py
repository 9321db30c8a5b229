"""Query parameters and results shared by C-FIND and QIDO-RS (and shown by the dialog).

A ``StudyQuery`` becomes a C-FIND identifier or QIDO-RS query parameters; the
answers of both protocols become the same ``StudyResult``/``SeriesResult``
records, so the rest of the application does not care which protocol found them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DATE = re.compile(r"^\d{8}$")

STUDY_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
              "StudyTime", "StudyDescription", "AccessionNumber", "StudyID", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances", "BodyPartExamined")
INSTANCE_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber")


def _date(value: str, what: str) -> str:
    value = value.strip().replace("-", "")
    if value and not _DATE.match(value):
        raise ValueError(f"{what} {value!r} is not a date (YYYYMMDD or YYYY-MM-DD)")
    return value


@dataclass(frozen=True)
class StudyQuery:
    """What to search for; empty fields match anything.

    ``patient_name`` and ``patient_id`` may hold DICOM wildcards (``*``, ``?``);
    a name without a wildcard matches names starting with it.
    """

    patient_name: str = ""
    patient_id: str = ""
    date_from: str = ""
    date_to: str = ""
    modality: str = ""
    accession: str = ""
    study_uid: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "date_from", _date(self.date_from, "from date"))
        object.__setattr__(self, "date_to", _date(self.date_to, "to date"))

    @property
    def name_pattern(self) -> str:
        """The patient name as a DICOM matching pattern (a prefix match unless it has wildcards)."""
        name = self.patient_name.strip()
        if not name or "*" in name or "?" in name:
            return name
        return name + "*"

    @property
    def date_range(self) -> str:
        """DICOM range matching: ``A-B``, ``A-``, ``-B``, ``A`` (same day) or empty."""
        if self.date_from and self.date_to:
            return self.date_from if self.date_from == self.date_to else f"{self.date_from}-{self.date_to}"
        if self.date_from:
            return f"{self.date_from}-"
        if self.date_to:
            return f"-{self.date_to}"
        return ""

    def matching(self) -> dict[str, str]:
        """The non-empty matching keys by DICOM keyword."""
        keys = {"PatientName": self.name_pattern, "PatientID": self.patient_id.strip(),
                "StudyDate": self.date_range, "ModalitiesInStudy": self.modality.strip().upper(),
                "AccessionNumber": self.accession.strip(), "StudyInstanceUID": self.study_uid.strip()}
        return {k: v for k, v in keys.items() if v}


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class StudyResult:
    """One study found on a PACS."""

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    date: str = ""
    time: str = ""
    description: str = ""
    accession: str = ""
    study_id: str = ""
    modalities: tuple[str, ...] = ()
    series_count: int | None = None
    instance_count: int | None = None

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> StudyResult:
        """From a keyword -> value mapping (see ``dataset_values`` / ``json_values``)."""
        mods = v.get("ModalitiesInStudy") or ()
        mods = (mods,) if isinstance(mods, str) else tuple(str(m) for m in mods)
        return cls(str(v.get("StudyInstanceUID") or ""), str(v.get("PatientName") or ""),
                   str(v.get("PatientID") or ""), str(v.get("PatientBirthDate") or ""),
                   str(v.get("PatientSex") or ""), str(v.get("StudyDate") or ""), str(v.get("StudyTime") or ""),
                   str(v.get("StudyDescription") or ""), str(v.get("AccessionNumber") or ""),
                   str(v.get("StudyID") or ""), tuple(m for m in mods if m),
                   _int(v.get("NumberOfStudyRelatedSeries")), _int(v.get("NumberOfStudyRelatedInstances")))


@dataclass(frozen=True)
class SeriesResult:
    """One series found on a PACS."""

    study_uid: str
    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    instance_count: int | None = None
    body_part: str = ""

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> SeriesResult:
        """From a keyword -> value mapping."""
        return cls(str(v.get("StudyInstanceUID") or ""), str(v.get("SeriesInstanceUID") or ""),
                   str(v.get("Modality") or ""), _int(v.get("SeriesNumber")), str(v.get("SeriesDescription") or ""),
                   _int(v.get("NumberOfSeriesRelatedInstances")), str(v.get("BodyPartExamined") or ""))


@dataclass(frozen=True)
class InstanceResult:
    """One instance found on a PACS (what a resumable retrieve needs)."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""
    number: int | None = None

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> InstanceResult:
        """From a keyword -> value mapping."""
        return cls(str(v.get("StudyInstanceUID") or ""), str(v.get("SeriesInstanceUID") or ""),
                   str(v.get("SOPInstanceUID") or ""), str(v.get("SOPClassUID") or ""),
                   _int(v.get("InstanceNumber")))


def dataset_values(ds: Dataset, keys: tuple[str, ...]) -> dict[str, Any]:
    """Keyword -> value (str, or list of str for multi-valued) from a C-FIND response identifier."""
    out: dict[str, Any] = {}
    for key in keys:
        if key not in ds:
            continue
        value = ds[key].value
        if value is None:
            continue
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            out[key] = [str(x) for x in value]
        else:
            out[key] = str(value)
    return out


def json_values(item: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """Keyword -> value from a DICOM JSON (QIDO-RS) object."""
    from pydicom.datadict import tag_for_keyword

    out: dict[str, Any] = {}
    for key in keys:
        tag = tag_for_keyword(key)
        if tag is None:
            continue
        element = item.get(f"{tag:08X}")
        if not isinstance(element, Mapping):
            continue
        values = element.get("Value") or []
        flat: list[str] = []
        for v in values:
            if isinstance(v, Mapping):  # PN: {"Alphabetic": "..."}
                flat.append(str(v.get("Alphabetic", "")))
            else:
                flat.append(str(v))
        if not flat:
            continue
        out[key] = flat if key == "ModalitiesInStudy" or len(flat) > 1 else flat[0]
    return out


def identifier(level: str, keys: tuple[str, ...], matching: Mapping[str, str]) -> Dataset:
    """A C-FIND identifier: ``QueryRetrieveLevel``, the return keys (empty) and the matching values."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key in keys:
        setattr(ds, key, "")
    for key, value in matching.items():
        setattr(ds, key, value)
    return ds
