"""Small, real DICOM objects for index and import tests (CT slices, SR, PDF, SC, KOS, PR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _base(sop_class: str, study_uid: str, series_uid: str, series_number: int, modality: str,
          patient_id: str = "P001", **extra: Any) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.Modality = modality
    ds.PatientName = "Test^Patient"
    ds.PatientID = patient_id
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def write(ds: Dataset, path: Path) -> Path:
    """Save with a preamble and file meta."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_slice(path: Path, *, study_uid: str, series_uid: str, series_number: int = 1, z: float = 0.0,
             instance_number: int = 1, size: int = 16, image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
             iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0), value: int = 100,
             ipp: tuple[float, float, float] | None = None, **extra: Any) -> Path:
    """A small axial CT slice whose stored values are ``value`` + a ramp (HU = stored - 1024)."""
    ds = _base(CT, study_uid, series_uid, series_number, "CT", **extra)
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = extra.get("FrameOfReferenceUID", generate_uid(entropy_srcs=[study_uid, "for"]))
    ds.ImagePositionPatient = list(ipp) if ipp is not None else [-10.0, -10.0, z]
    ds.ImageOrientationPatient = list(iop)
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    arr = (np.arange(size * size, dtype=np.uint16).reshape(size, size) + value).astype(np.uint16)
    ds.PixelData = arr.tobytes()
    return write(ds, path)


def secondary_capture(path: Path, *, study_uid: str, series_uid: str, series_number: int = 99) -> Path:
    """A secondary capture image (no geometry)."""
    ds = _base(SC, study_uid, series_uid, series_number, "OT")
    ds.ConversionType = "WSD"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(64)
    return write(ds, path)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def text_sr(path: Path, *, study_uid: str, series_uid: str, text: str, series_number: int = 50) -> Path:
    """A Basic Text SR holding a prior report's findings text."""
    ds = _base(BASIC_TEXT_SR, study_uid, series_uid, series_number, "SR")
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    item.TextValue = text
    ds.ContentSequence = Sequence([item])
    return write(ds, path)


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica (enough for text extraction)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def pdf_document(path: Path, *, study_uid: str, series_uid: str, text: str, series_number: int = 51) -> Path:
    """An Encapsulated PDF holding a prior report."""
    ds = _base(PDF, study_uid, series_uid, series_number, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Prior report"
    data = minimal_pdf(text)
    ds.EncapsulatedDocument = data + (b"\x00" if len(data) % 2 else b"")
    return write(ds, path)


def key_objects(path: Path, *, study_uid: str, series_uid: str, series_number: int = 52) -> Path:
    """A Key Object Selection document."""
    ds = _base(KOS, study_uid, series_uid, series_number, "KO")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("113000", "DCM", "Of Interest")])
    return write(ds, path)


def presentation_state(path: Path, *, study_uid: str, series_uid: str, series_number: int = 53) -> Path:
    """A Grayscale Softcopy Presentation State."""
    ds = _base(GSPS, study_uid, series_uid, series_number, "PR")
    ds.ContentLabel = "PS"
    return write(ds, path)


def ct_series(folder: Path, n: int = 5, *, study_uid: str | None = None, series_number: int = 1,
              spacing: float = 2.0, **extra: Any) -> tuple[str, str]:
    """A small uniform CT series in ``folder``; returns (study_uid, series_uid)."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    for k in range(n):
        ct_slice(folder / f"ct{series_number}_{k:03d}.dcm", study_uid=study_uid, series_uid=series_uid,
                 series_number=series_number, z=k * spacing, instance_number=k + 1, **extra)
    return study_uid, series_uid
