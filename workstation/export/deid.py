"""De-identification of exported objects for research use (a documented subset of DICOM PS3.15 E.1).

Applied to the objects we write (SEG, SRs) and to the study information and
text of the PDF and plain-text reports; source files are never touched. What
is done, recursively through every sequence:

- Patient ID -> a pseudonym (``ANON-`` + salted hash of the original ID and
  name), patient name -> the same as a person name (``ANON^<hash>``); the
  same for every object of one ``Deidentifier``.
- Removed (X): birth date/time (emptied, type 2), age, size, weight, addresses,
  telephone numbers, other IDs/names, patient comments and history, issuer of
  the patient ID, institution name/address/department, station name,
  physicians and operators,
  requesting/reading physicians, request attributes, referenced study and
  patient sequences, image comments, protocol name, all private tags.
- Emptied (Z): accession number, study ID, referring physician, patient's sex,
  referenced performed procedure step sequence.
- Other person names (verifying observer, observer names in SR content) ->
  ``ANONYMIZED^OBSERVER``.
- UIDs (U): every UID that is not a DICOM-defined one (``1.2.840.10008.*``) or
  a coding-scheme/implementation UID is replaced by ``2.25.`` + a salted
  SHA-256 of it: the mapping is consistent across all objects of one
  ``Deidentifier`` (so the SR's references to the SEG and the source images
  still match), and not reversible without the salt.
- Dates (DA, DT) are shifted back by a whole number of days derived from the
  salt and the patient (1..365 days), keeping intervals between studies of the
  same patient (PS3.15 "Retain Longitudinal Temporal Information with Modified
  Dates"); times are kept.
- Text values (every string element and SR text item) have the patient's name
  parts, ID, accession number and birth date, and the names of the signing
  radiologist and addenda authors, replaced by ``[removed]`` (``identifier_patterns``, the
  same rule that cleans the notes a report drafter sees).
- PatientIdentityRemoved = YES, DeidentificationMethod says the above,
  LongitudinalTemporalInformationModified = MODIFIED.

Not done (so this is a subset, not a conformance claim): pixel data is not
cleaned of burned-in text (our SEG has none), free text is cleaned only of the
identifiers known from the headers and the report, not of every name a person
might type, and dates written inside free text are not shifted.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from workstation.export.sources import StudyInfo

logger = logging.getLogger(__name__)

METHOD = ("radiology-workstation", "PS3.15 E.1 basic profile subset", "patient pseudonymised",
          "UIDs remapped by salted hash", "dates shifted", "known identifiers removed from text")
REDACTED = "[removed]"
OTHER_PERSON = "ANONYMIZED^OBSERVER"

REMOVE = frozenset({
    "PatientBirthTime", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "PatientBirthName", "PatientMotherBirthName", "MedicalRecordLocator", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "MilitaryRank",
    "BranchOfService", "CountryOfResidence", "RegionOfResidence", "EthnicGroup", "PatientReligiousPreference",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord",
    "OperatorsName", "RequestingPhysician", "RequestingService", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "AdmittingDiagnosesDescription", "RequestAttributesSequence",
    "ReferencedStudySequence", "ReferencedPatientSequence",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "ScheduledProcedureStepID",
    "RequestedProcedureID", "ImageComments", "ProtocolName", "StudyComments", "ReasonForTheRequestedProcedure",
    "RequestedProcedureDescription", "PatientState", "PregnancyStatus", "SmokingStatus",
})
EMPTY = frozenset({"PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName", "PatientSex",
                   "ReferencedPerformedProcedureStepSequence"})
KEEP_UIDS = frozenset({"CodingSchemeUID", "ImplementationClassUID", "TransferSyntaxUID", "ContextUID",
                       "ContextGroupExtensionCreatorUID", "MappingResourceUID", "SOPClassUID",
                       "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile"})
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})


class Deidentifier:
    """One consistent de-identification: the same salt gives the same pseudonyms, UIDs and date shift.

    ``salt`` defaults to a random secret, so two export sessions cannot be
    linked unless the caller keeps and reuses ``salt``.
    """

    def __init__(self, salt: str | None = None) -> None:
        self.salt = salt if salt is not None else secrets.token_hex(16)
        self._identifiers: list[str] = []

    def _hash(self, *parts: str) -> str:
        return hashlib.sha256("\x1f".join((self.salt, *parts)).encode("utf-8")).hexdigest()

    def uid(self, uid: str) -> str:
        """The replacement of a UID (DICOM-defined UIDs and empty values are kept)."""
        uid = str(uid).strip()
        if not uid or uid.startswith("1.2.840.10008."):
            return uid
        return f"2.25.{int(self._hash('uid', uid)[:32], 16)}"

    def pseudonym(self, patient_id: str, patient_name: str) -> str:
        """The patient's pseudonym (used as both name and ID)."""
        return "ANON-" + self._hash("patient", patient_id, patient_name)[:12].upper()

    def day_shift(self, patient_id: str, patient_name: str) -> int:
        """Days every date of this patient moves back (1..365)."""
        return 1 + int(self._hash("days", patient_id, patient_name)[:8], 16) % 365

    def learn(self, *identifiers: str) -> None:
        """Add identifiers (names, IDs...) to remove from every text value (see ``identifier_patterns``)."""
        for pattern in identifier_patterns(*identifiers):
            if pattern not in self._identifiers:
                self._identifiers.append(pattern)
        self._identifiers.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every known identifier replaced by ``[removed]`` (``remove_identifiers``)."""
        return remove_identifiers(text, self._identifiers)

    def study_info(self, info: StudyInfo) -> StudyInfo:
        """The report header's study information, de-identified the same way as the DICOM objects."""
        self.learn(info.patient_name, info.patient_id, info.accession, info.patient_birth_date)
        alias = self.pseudonym(info.patient_id, info.patient_name)
        shift = self.day_shift(info.patient_id, info.patient_name)
        return replace(info, patient_name=alias, patient_id=alias, patient_birth_date="", patient_sex="",
                       accession="", institution="", study_date=_shift_da(info.study_date, shift),
                       study_description=self.scrub(info.study_description),
                       series_description=self.scrub(info.series_description))

    def deidentify(self, ds: Any) -> Any:
        """A de-identified deep copy of a pydicom dataset (the input is unchanged)."""
        out = copy.deepcopy(ds)
        pid, name = str(out.get("PatientID", "") or ""), str(out.get("PatientName", "") or "")
        self.learn(name, pid, str(out.get("AccessionNumber", "") or ""), str(out.get("PatientBirthDate", "") or ""))
        alias = self.pseudonym(pid, name)
        shift = self.day_shift(pid, name)
        out.remove_private_tags()
        out.walk(lambda d, e: self._element(d, e, shift))
        meta = getattr(out, "file_meta", None)
        if meta is not None:
            for kw in ("MediaStorageSOPInstanceUID",):
                if kw in meta:
                    setattr(meta, kw, self.uid(str(getattr(meta, kw))))
        out.PatientName = alias.replace("-", "^", 1)
        out.PatientID = alias
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = list(METHOD)
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        return out

    def _element(self, ds: Any, elem: Any, shift: int) -> None:
        kw = elem.keyword
        if kw in REMOVE:
            del ds[elem.tag]
        elif kw in EMPTY:
            elem.value = [] if elem.VR == "SQ" else ""
        elif elem.VR == "PN" and kw != "PatientName":
            elem.value = OTHER_PERSON if elem.value else elem.value
        elif elem.VR == "UI" and kw not in KEEP_UIDS and elem.value:
            elem.value = ([self.uid(v) for v in elem.value] if elem.VM > 1 else self.uid(str(elem.value)))
        elif elem.VR == "DA" and elem.value:
            elem.value = ([_shift_da(str(v), shift) for v in elem.value] if elem.VM > 1
                          else _shift_da(str(elem.value), shift))
        elif elem.VR == "DT" and elem.value:
            elem.value = _shift_dt(str(elem.value), shift)
        elif elem.VR in _TEXT_VRS and elem.value and kw not in ("PatientName", "PatientID"):
            if elem.VM > 1:
                elem.value = [self.scrub(str(v)) for v in elem.value]
            else:
                elem.value = self.scrub(str(elem.value))


_MIN_VALUE = 3  # whole values shorter than this (an ID "12") would eat measurements out of the text
_MIN_NAME_PART = 2  # name parts as short as "Li" or "Ng" are real surnames


def identifier_patterns(*identifiers: str) -> list[str]:
    """Regular expressions for a patient's (or a signer's) known identifiers, longest first.

    The one rule for removing known identifiers from free text, used by the
    exports (``Deidentifier``) and by the notes a report drafter sees:

    - each value of 3+ characters whole, in any case (IDs, accession numbers,
      the name as stored, ``DOE^JOHN``), and a person name with its ``^`` as
      spaces (``DOE JOHN``);
    - each name part of 2+ letters where written capitalised (``Doe``, ``DOE``),
      so that "demo patient" survives a patient called ``Demo^Phantom``;
    - an 8-digit date (a birth date ``19500201``) also as ``1950-02-01``,
      ``01/02/1950``, ``02/01/1950`` and ``01.02.1950``.
    """
    out: list[str] = []
    for identifier in identifiers:
        text = str(identifier).strip()
        values = [text] if len(text) >= _MIN_VALUE else []
        if "^" in text or " " in text:
            joined = " ".join(p for p in re.split(r"[\^ ]+", text) if p)
            values += [joined] if len(joined) >= _MIN_VALUE else []
            parts = [p for p in re.split(r"[\^\s,]+", text) if len(p) >= _MIN_NAME_PART]
            out += [f"(?-i:[{re.escape(p[0].upper())}]){re.escape(p[1:])}" for p in parts]
        if len(text) == 8 and text.isdigit():
            y, m, d = text[:4], text[4:6], text[6:]
            values += [f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}"]
        out += [re.escape(v) for v in values]
    return sorted(dict.fromkeys(out), key=len, reverse=True)


def remove_identifiers(text: str, patterns: Sequence[str]) -> str:
    """``text`` with each ``identifier_patterns`` pattern (whole words) replaced by ``[removed]``."""
    for pattern in patterns:
        text = re.sub(rf"(?i)(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])", REDACTED, text)
    return text


def _shift_da(value: str, days: int) -> str:
    try:
        day = dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day - dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_dt(value: str, days: int) -> str:
    value = value.strip()
    shifted = _shift_da(value[:8], days)
    return shifted + value[8:] if shifted else ""
