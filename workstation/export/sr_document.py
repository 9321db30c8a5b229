"""DICOM SR of the report text: an Enhanced SR following TID 2000 (Basic Diagnostic Imaging Report).

Content tree:

- root CONTAINER "Diagnostic imaging report" (LOINC 18748-4), template 2000;
- language (en-US) and observation context: the signing radiologist as
  person observer once signed, and the drafting software as device observer;
- a TEXT "Comment" saying the state: ``DRAFT - not signed ...`` before
  sign-off, ``Signed by NAME on DATE ...`` with the models after;
- one CONTAINER per section with its prose as a TEXT item, headings from CID
  7001 (History, Current Procedure Descriptions, Prior Procedure Descriptions,
  Findings, Impressions, Recommendations, Conclusions; a local code for any
  other heading);
- after sign-off, each addendum as an "Addendum" (DCM 121078) section.

VerificationFlag is VERIFIED (verifying observer = the signer, at the signing
time) only when the document is signed; a draft is UNVERIFIED, PARTIAL and
PRELIMINARY, and its series description ends in "(draft)". The source images,
the SEG and the measurement SR (when given) are listed as evidence, so the
report is linked to what it describes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workstation.document.editing import ReportDocument
from workstation.export import codes
from workstation.export.deid import Deidentifier
from workstation.export.files import APPLICATION, REPORT_SR_SERIES_NUMBER, save_dataset, software_version
from workstation.export.sources import ExportError, SourceSeries
from workstation.export.sr import apply_sign_off, device_uid, person_name

logger = logging.getLogger(__name__)

REPORT_TITLE = ("18748-4", "LN", "Diagnostic imaging report")
COMMENT = ("121106", "DCM", "Comment")
ADDENDUM = ("121078", "DCM", "Addendum")
DRAFT_MARKER = "DRAFT - not signed. AI-generated text, not verified by a radiologist."

# section title (lower case) -> (heading container code, text item code)
SECTION_CODES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "clinical information": (("121060", "DCM", "History"), ("121060", "DCM", "History")),
    "history": (("121060", "DCM", "History"), ("121060", "DCM", "History")),
    "indication": (("121109", "DCM", "Indications for Procedure"), ("121109", "DCM", "Indications for Procedure")),
    "technique": (("121064", "DCM", "Current Procedure Descriptions"), ("121065", "DCM", "Procedure Description")),
    "comparison": (("121066", "DCM", "Prior Procedure Descriptions"), ("121065", "DCM", "Procedure Description")),
    "findings": (("121070", "DCM", "Findings"), ("121071", "DCM", "Finding")),
    "impression": (("121072", "DCM", "Impressions"), ("121073", "DCM", "Impression")),
    "recommendation": (("121074", "DCM", "Recommendations"), ("121075", "DCM", "Recommendation")),
    "recommendations": (("121074", "DCM", "Recommendations"), ("121075", "DCM", "Recommendation")),
    "conclusion": (("121076", "DCM", "Conclusions"), ("121077", "DCM", "Conclusion")),
}


def section_codes(title: str) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """Heading and text concept of a section; a local code keeps an unknown heading's title."""
    known = SECTION_CODES.get(title.strip().lower())
    if known is not None:
        return known
    code = codes.local(title.strip() or "Section")
    return code, code


def status_text(doc: ReportDocument) -> str:
    """The state line written into the SR (and echoed by the PDF and text exports)."""
    if doc.sign_off is None:
        return f"{DRAFT_MARKER} AI: {doc.source.describe()}."
    s = doc.sign_off
    return f"Signed by {s.radiologist} on {s.signed_at} (UTC). AI: {s.source.describe()}."


def _observers(doc: ReportDocument) -> Any:
    import highdicom as hd

    person = None
    if doc.sign_off is not None:
        person = hd.sr.ObserverContext(
            observer_type=codes.concept(("121006", "DCM", "Person")),
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=person_name(doc.sign_off.radiologist)))
    drafter = doc.source.drafter or APPLICATION
    version = doc.source.drafter_version or software_version()
    device = hd.sr.ObserverContext(
        observer_type=codes.concept(("121007", "DCM", "Device")),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(drafter, version), name=drafter[:64], manufacturer_name=APPLICATION,
            model_name=f"{drafter} {version}"[:64]))
    return hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)


def build_report_content(doc: ReportDocument) -> Any:
    """The TID 2000 content tree of ``doc`` (root container dataset)."""
    import highdicom as hd

    root = hd.sr.ContainerContentItem(name=codes.concept(REPORT_TITLE), template_id="2000")
    items: list[Any] = list(hd.sr.LanguageOfContentItemAndDescendants(
        language=codes.concept(("en-US", "RFC5646", "English (United States)"))))
    items.extend(_observers(doc))
    items.append(hd.sr.TextContentItem(name=codes.concept(COMMENT), value=status_text(doc),
                                       relationship_type="CONTAINS"))
    for sec in doc.sections:
        text = sec.text()
        if not text:
            continue
        heading, item = section_codes(sec.title)
        container = hd.sr.ContainerContentItem(name=codes.concept(heading), relationship_type="CONTAINS")
        container.ContentSequence = hd.sr.ContentSequence(
            [hd.sr.TextContentItem(name=codes.concept(item), value=text, relationship_type="CONTAINS")])
        items.append(container)
    for add in doc.addenda:
        container = hd.sr.ContainerContentItem(name=codes.concept(ADDENDUM), relationship_type="CONTAINS")
        container.ContentSequence = hd.sr.ContentSequence([hd.sr.TextContentItem(
            name=codes.concept(ADDENDUM), value=f"{add.text}\n({add.author}, {add.added_at} UTC)",
            relationship_type="CONTAINS")])
        items.append(container)
    root.ContentSequence = hd.sr.ContentSequence(items)
    return root


def build_report_sr(doc: ReportDocument, sources: SourceSeries, *, evidence: Sequence[Any] = (),
                    organization: str = "") -> Any:
    """The Enhanced SR of the report text; ``evidence`` adds e.g. the SEG and measurement SR datasets."""
    import highdicom as hd

    if not any(True for _ in doc.sentences()):
        raise ExportError("the report has no text to export")
    signed = doc.sign_off is not None
    sr = hd.sr.EnhancedSR(
        evidence=[*sources.datasets, *evidence], content=build_report_content(doc),
        series_instance_uid=str(hd.UID()), series_number=REPORT_SR_SERIES_NUMBER, sop_instance_uid=str(hd.UID()),
        instance_number=1, manufacturer=APPLICATION, is_complete=signed, is_final=signed, is_verified=signed,
        verifying_observer_name=person_name(doc.sign_off.radiologist) if doc.sign_off else None,
        verifying_organization=(organization or sources.info.institution or "Unknown")[:64] if signed else None,
        series_description="Radiology report" if signed else "Radiology report (draft)")
    apply_sign_off(sr, doc.sign_off)
    codes.declare_local_scheme(sr)
    return sr


def write_report_sr(doc: ReportDocument, sources: SourceSeries, path: str | Path, *, evidence: Sequence[Any] = (),
                    organization: str = "", deid: Deidentifier | None = None,
                    protect: Sequence[str | Path] = ()) -> tuple[Path, Any]:
    """Build and write the report SR; with ``deid``, report text is cleaned of the known identifiers."""
    sr = build_report_sr(doc, sources, evidence=evidence, organization=organization)
    written = save_dataset(deid.deidentify(sr) if deid is not None else sr, Path(path), protect)
    return written, sr
