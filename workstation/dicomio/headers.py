"""The flat record of one DICOM file's header, and how it is built from a parsed data set.

An ``InstanceHeader`` holds what grouping, geometry, pixel reading and notes
need, and serialises to JSON for the study index, so a series can be rebuilt
into a volume later without parsing headers again. Reading a file into one
(guarded against hostile input) is ``workstation.dicomio.reader``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation.dicomio.sources import FileRef

if TYPE_CHECKING:
    from workstation.dicomio.guards import ImportLimits

logger = logging.getLogger(__name__)

PIXEL_DATA_TAG = 0x7FE00010
TEXT_FIELDS = (
    "StudyDescription",
    "SeriesDescription",
    "RequestedProcedureDescription",
    "ReasonForTheRequestedProcedure",
    "AdditionalPatientHistory",
    "AdmittingDiagnosesDescription",
    "ImageComments",
    "PatientComments",
    "RequestedProcedureComments",
    "ImagingServiceRequestComments",
    "ClinicalTrialTimePointDescription",
)

# Every keyword ``header_from_dataset`` reads: the fast scanner keeps exactly these.
KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName",
    "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "SeriesNumber", "Modality", "InstanceNumber", "AcquisitionNumber", "ImageType", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "RescaleType",
    "TemporalPositionIdentifier", "TriggerTime", "EchoNumbers", "EchoTime", "AcquisitionTime",
    "PatientPosition", "GantryDetectorTilt", "ConvolutionKernel", "BodyPartExamined", "ContrastBolusAgent",
    "Manufacturer", "ManufacturerModelName", "WindowCenter", "WindowWidth", *TEXT_FIELDS,
)


@dataclass
class FrameGeometry:
    """Geometry and rescale of one frame of an enhanced multi-frame object."""

    ipp: tuple[float, float, float] | None = None
    iop: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slope: float = 1.0
    intercept: float = 0.0
    temporal: float | None = None
    echo: float | None = None
    stack_id: str = ""


@dataclass
class InstanceHeader:
    """The header fields of one DICOM object that the application uses."""

    ref: str
    transfer_syntax: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_id: str = ""
    accession: str = ""
    study_description: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""
    instance_number: int | None = None
    acquisition_number: int | None = None
    image_type: tuple[str, ...] = ()
    frame_of_reference_uid: str = ""
    ipp: tuple[float, float, float] | None = None
    iop: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    rows: int = 0
    columns: int = 0
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int = 0
    bits_stored: int = 0
    high_bit: int = 0
    pixel_representation: int = 0
    slope: float = 1.0
    intercept: float = 0.0
    rescale_type: str = ""
    temporal_position: float | None = None
    trigger_time: float | None = None
    echo_number: float | None = None
    echo_time: float | None = None
    acquisition_time: str = ""
    patient_position: str = ""
    gantry_tilt: float | None = None
    kernel: str = ""
    body_part: str = ""
    contrast_agent: str = ""
    manufacturer: str = ""
    model: str = ""
    window_center: float | None = None
    window_width: float | None = None
    has_pixels: bool = False
    pixel_offset: int | None = None
    pixel_length: int | None = None
    mosaic_count: int = 0
    mosaic_normal: tuple[float, float, float] | None = None
    frames: list[FrameGeometry] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def file_ref(self) -> FileRef:
        """The file this header was read from."""
        return FileRef.parse(self.ref)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of ``from_dict``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceHeader:
        """Rebuild a header stored by ``to_dict``."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("ipp", "iop", "pixel_spacing", "image_type", "mosaic_normal"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["frames"] = [_frame_from_dict(f) for f in values.get("frames", [])]
        return cls(**values)


def _frame_from_dict(data: dict[str, Any]) -> FrameGeometry:
    out = FrameGeometry(**data)
    out.ipp = tuple(out.ipp) if out.ipp is not None else None  # type: ignore[assignment]
    out.iop = tuple(out.iop) if out.iop is not None else None
    out.pixel_spacing = tuple(out.pixel_spacing) if out.pixel_spacing is not None else None  # type: ignore[assignment]
    return out


def _s(ds: Any, name: str) -> str:
    value = ds.get(name, "")
    if type(value) is str:  # the fast scanner's values: first, as ~40 fields a file come here
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _f(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _i(value: Any) -> int | None:
    f = _f(value)
    return int(f) if f is not None else None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _frames(ds: Any) -> list[FrameGeometry]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return []
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else None

    def group(item: Any, name: str) -> Any:
        for source in (item, shared_item):
            if source is not None and name in source and len(source[name].value):
                return source[name][0]
        return None

    out: list[FrameGeometry] = []
    for item in per_frame:
        fg = FrameGeometry()
        pos = group(item, "PlanePositionSequence")
        if pos is not None:
            fg.ipp = _floats(pos.get("ImagePositionPatient"), 3)  # type: ignore[assignment]
        ori = group(item, "PlaneOrientationSequence")
        if ori is not None:
            fg.iop = _floats(ori.get("ImageOrientationPatient"), 6)
        meas = group(item, "PixelMeasuresSequence")
        if meas is not None:
            fg.pixel_spacing = _floats(meas.get("PixelSpacing"), 2)  # type: ignore[assignment]
        pvt = group(item, "PixelValueTransformationSequence")
        if pvt is not None:
            fg.slope = _f(pvt.get("RescaleSlope")) or 1.0
            fg.intercept = _f(pvt.get("RescaleIntercept")) or 0.0
        content = group(item, "FrameContentSequence")
        if content is not None:
            fg.temporal = _f(content.get("TemporalPositionIndex"))
            fg.stack_id = str(content.get("StackID", "") or "")
        echo = group(item, "MREchoSequence")
        if echo is not None:
            fg.echo = _f(echo.get("EffectiveEchoTime"))
        out.append(fg)
    return out


def _mosaic(ds: Any, header: InstanceHeader) -> None:
    if "MOSAIC" not in header.image_type:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from nibabel.nicom import csareader

        csa = csareader.get_csa_header(ds, "image")
        n = csareader.get_n_mosaic(csa) if csa else None
        normal = csareader.get_slice_normal(csa) if csa else None
    except Exception as exc:  # a broken private header must not stop the import
        logger.info("unreadable Siemens CSA header in %s: %s", header.ref, exc)
        n, normal = None, None
    if not n:
        n = _i(ds.get((0x0019, 0x100A)).value) if (0x0019, 0x100A) in ds else None
    if n and n > 1:
        header.mosaic_count = int(n)
        if normal is not None and len(normal) == 3:
            header.mosaic_normal = tuple(float(v) for v in normal)  # type: ignore[assignment]


def header_from_dataset(ds: Any, ref: str) -> InstanceHeader:
    """Build the flat header record from a pydicom dataset (pixels not needed)."""
    meta = getattr(ds, "file_meta", None)
    h = InstanceHeader(ref=ref)
    h.transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta else ""
    h.sop_class_uid = _s(ds, "SOPClassUID") or (str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else "")
    h.sop_instance_uid = _s(ds, "SOPInstanceUID") or (
        str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "") if meta else ""
    )
    h.study_uid = _s(ds, "StudyInstanceUID")
    h.series_uid = _s(ds, "SeriesInstanceUID")
    h.patient_id = _s(ds, "PatientID")
    h.patient_name = _s(ds, "PatientName")
    h.patient_birth_date = _s(ds, "PatientBirthDate")
    h.patient_sex = _s(ds, "PatientSex")
    h.study_date = _s(ds, "StudyDate")
    h.study_time = _s(ds, "StudyTime")
    h.study_id = _s(ds, "StudyID")
    h.accession = _s(ds, "AccessionNumber")
    h.study_description = _s(ds, "StudyDescription")
    h.series_number = _i(ds.get("SeriesNumber"))
    h.series_description = _s(ds, "SeriesDescription")
    h.modality = _s(ds, "Modality").upper()
    h.instance_number = _i(ds.get("InstanceNumber"))
    h.acquisition_number = _i(ds.get("AcquisitionNumber"))
    h.image_type = tuple(str(v).strip().upper() for v in (ds.get("ImageType") or []))
    h.frame_of_reference_uid = _s(ds, "FrameOfReferenceUID")
    h.ipp = _floats(ds.get("ImagePositionPatient"), 3)  # type: ignore[assignment]
    h.iop = _floats(ds.get("ImageOrientationPatient"), 6)
    h.pixel_spacing = _floats(ds.get("PixelSpacing"), 2)  # type: ignore[assignment]
    h.slice_thickness = _f(ds.get("SliceThickness"))
    h.spacing_between_slices = _f(ds.get("SpacingBetweenSlices"))
    h.rows = _i(ds.get("Rows")) or 0
    h.columns = _i(ds.get("Columns")) or 0
    h.number_of_frames = _i(ds.get("NumberOfFrames")) or 1
    h.samples_per_pixel = _i(ds.get("SamplesPerPixel")) or 1
    h.photometric = _s(ds, "PhotometricInterpretation")
    h.bits_allocated = _i(ds.get("BitsAllocated")) or 0
    h.bits_stored = _i(ds.get("BitsStored")) or h.bits_allocated
    h.high_bit = _i(ds.get("HighBit")) or max(h.bits_stored - 1, 0)
    h.pixel_representation = _i(ds.get("PixelRepresentation")) or 0
    h.slope = _f(ds.get("RescaleSlope")) or 1.0
    h.intercept = _f(ds.get("RescaleIntercept")) or 0.0
    h.rescale_type = _s(ds, "RescaleType")
    h.temporal_position = _f(ds.get("TemporalPositionIdentifier"))
    h.trigger_time = _f(ds.get("TriggerTime"))
    h.echo_number = _f(ds.get("EchoNumbers"))
    h.echo_time = _f(ds.get("EchoTime"))
    h.acquisition_time = _s(ds, "AcquisitionTime")
    h.patient_position = _s(ds, "PatientPosition")
    h.gantry_tilt = _f(ds.get("GantryDetectorTilt"))
    h.kernel = _s(ds, "ConvolutionKernel")
    h.body_part = _s(ds, "BodyPartExamined")
    h.contrast_agent = _s(ds, "ContrastBolusAgent")
    h.manufacturer = _s(ds, "Manufacturer")
    h.model = _s(ds, "ManufacturerModelName")
    h.window_center = _f(_first(ds.get("WindowCenter")))
    h.window_width = _f(_first(ds.get("WindowWidth")))
    h.frames = _frames(ds)
    h.texts = {name: text for name in TEXT_FIELDS if (text := _s(ds, name))}
    _mosaic(ds, h)
    return h


def read_header(ref: FileRef, limits: ImportLimits | None = None) -> InstanceHeader:
    """Read one file's header, guarded against hostile input (``workstation.dicomio.reader``)."""
    from workstation.dicomio.reader import read_header as _read_header

    return _read_header(ref, limits)


def read_header_path(path: str | Path, limits: ImportLimits | None = None) -> InstanceHeader:
    """Convenience: ``read_header`` for a plain file path."""
    return read_header(FileRef(str(path)), limits)
