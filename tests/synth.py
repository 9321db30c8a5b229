"""Synthetic DICOM CT series with known ground truth, for geometry tests.

Every pixel of every written slice holds an analytic, asymmetric phantom
function evaluated at that pixel's LPS position, computed from the geometry
*exactly as written to the file* (ImagePositionPatient, ImageOrientationPatient,
PixelSpacing). A loaded volume is therefore right if, and only if, sampling it
at any world position inside the acquired region gives back ``phantom(position)``
(up to interpolation error of a smooth function).

The files are real DICOM: CT Image Storage (or Enhanced CT Image Storage),
explicit VR little endian, a file meta header, valid UIDs, 12 bits stored in 16
with RescaleIntercept -1024, as CT scanners write them.

Geometry builders return ``SliceSpec`` lists; ``write_series`` and
``write_enhanced`` turn them into files; ``write_bad_files`` makes the kinds of
broken file a loader must reject with a reason.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from inference.errors import UnreadableFileError
from workstation.dicomio.headers import InstanceHeader, read_header_path

FloatArray = npt.NDArray[np.float64]

ROWS = 56
COLUMNS = 64
# PixelSpacing = (spacing between rows, spacing between columns): deliberately
# unequal, and ROWS != COLUMNS, so a swapped or transposed axis cannot pass.
PIXEL_SPACING = (2.0, 1.75)
INTERCEPT = -1024.0
AXIAL_IOP = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as generate_uid uses


def phantom(lps: npt.ArrayLike, t: float = 0.0) -> FloatArray:
    """HU of the analytic phantom at LPS points ``(..., 3)`` in mm, at time/echo ``t``.

    Asymmetric along every axis (two off-centre blobs of opposite sign, a
    gradient, a texture whose in-plane pattern drifts with z), smooth enough
    that linear interpolation between 4-7 mm slices stays within a few HU, and
    structured enough (texture period ~50 mm) that misplacing slices by a few mm
    is visible. ``t`` makes one blob enhance over time (contrast wash-in).
    """
    p = np.asarray(lps, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    blob1 = np.exp(-((x - 18.0) ** 2 + (y + 12.0) ** 2) / (2 * 14.0**2) - (z - 6.0) ** 2 / (2 * 30.0**2))
    blob2 = np.exp(-((x + 22.0) ** 2 + (y - 16.0) ** 2) / (2 * 11.0**2) - (z + 9.0) ** 2 / (2 * 28.0**2))
    texture = np.sin(y / 8.0 + z / 8.0 + 0.4) * np.cos(x / 12.0 - 0.3)
    return np.asarray(
        40.0 + 450.0 * blob1 - 320.0 * blob2 + 110.0 * texture
        + 1.2 * x - 0.8 * y + 0.6 * z + 150.0 * t * blob2,
        dtype=np.float64,
    )


def ds_number(value: float) -> float:
    """The value as it survives a round trip through a DICOM DS string."""
    return float(format_number_as_ds(float(value)))


@dataclass(frozen=True)
class SliceSpec:
    """One slice to write: its geometry and what it is a sample of.

    ``t`` is the phantom's time/echo parameter; ``temporal``/``echo`` the tag
    values written (TemporalPositionIdentifier / EchoNumbers) when not None.
    """

    ipp: tuple[float, float, float]
    iop: tuple[float, float, float, float, float, float] = AXIAL_IOP
    t: float = 0.0
    temporal: int | None = None
    echo: int | None = None
    acquisition: int = 1

    def rounded(self) -> SliceSpec:
        """The spec with geometry as it will read back from DS strings."""
        ipp = (ds_number(self.ipp[0]), ds_number(self.ipp[1]), ds_number(self.ipp[2]))
        iop = tuple(ds_number(v) for v in self.iop)
        return replace(self, ipp=ipp, iop=iop)  # type: ignore[arg-type]

    @property
    def normal(self) -> FloatArray:
        """Unit slice normal (row direction x column direction)."""
        n = np.cross(self.iop[:3], self.iop[3:])
        return np.asarray(n / np.linalg.norm(n), dtype=np.float64)


def pixel_lps(spec: SliceSpec, rows: npt.ArrayLike, cols: npt.ArrayLike,
              pixel_spacing: tuple[float, float] = PIXEL_SPACING) -> FloatArray:
    """LPS of (possibly fractional) pixel ``(row, column)`` of a slice, per the DICOM standard."""
    r = np.asarray(rows, dtype=np.float64)[..., None]
    c = np.asarray(cols, dtype=np.float64)[..., None]
    ipp = np.asarray(spec.ipp, dtype=np.float64)
    row_dir = np.asarray(spec.iop[:3], dtype=np.float64)
    col_dir = np.asarray(spec.iop[3:], dtype=np.float64)
    return np.asarray(ipp + c * pixel_spacing[1] * row_dir + r * pixel_spacing[0] * col_dir, dtype=np.float64)


def slice_hu(spec: SliceSpec, rows: int = ROWS, columns: int = COLUMNS,
             pixel_spacing: tuple[float, float] = PIXEL_SPACING) -> FloatArray:
    """The exact (unrounded) phantom HU of every pixel of a slice."""
    r, c = np.mgrid[0:rows, 0:columns]
    return phantom(pixel_lps(spec, r, c, pixel_spacing), spec.t)


def stored_pixels(spec: SliceSpec, intercept: float = INTERCEPT) -> npt.NDArray[np.uint16]:
    """Stored values (HU - intercept, rounded, 12 bits) of one slice."""
    stored = np.rint(slice_hu(spec) - intercept)
    return np.clip(stored, 0, 4095).astype(np.uint16)


# ----------------------------------------------------------------------------- geometry builders

def _centre_offset(iop: Sequence[float]) -> FloatArray:
    """Vector from the slice centre to its first pixel (so the FOV is centred on the stack axis)."""
    row_dir = np.asarray(iop[:3], dtype=np.float64)
    col_dir = np.asarray(iop[3:], dtype=np.float64)
    return np.asarray(
        -(COLUMNS - 1) / 2 * PIXEL_SPACING[1] * row_dir - (ROWS - 1) / 2 * PIXEL_SPACING[0] * col_dir,
        dtype=np.float64,
    )


def _centred_z(n: int, spacing: float) -> list[float]:
    return [(k - (n - 1) / 2) * spacing for k in range(n)]


def axial_stack(n: int = 20, spacing: float = 4.0, z: Sequence[float] | None = None) -> list[SliceSpec]:
    """Plain axial slices, centred on z=0 (or at the given table positions)."""
    zs = list(z) if z is not None else _centred_z(n, spacing)
    off = _centre_offset(AXIAL_IOP)
    return [SliceSpec((float(off[0]), float(off[1]), float(zk + off[2]))) for zk in zs]


def gapped_stack(gaps: Sequence[float]) -> list[SliceSpec]:
    """Axial slices separated by the given gaps (mm), e.g. ``[4] * 8 + [7] * 4``."""
    z = np.concatenate([[0.0], np.cumsum(gaps)])
    return axial_stack(z=list(z - z[-1] / 2))


def tilted_stack(n: int = 20, table_step: float = 4.0, tilt_deg: float = 15.0,
                 variant: Literal["gantry", "sheared"] = "gantry") -> list[SliceSpec]:
    """A gantry-tilted CT stack; the table advances ``table_step`` mm along z per slice.

    ``gantry``: what tilted CT physically is and what most scanners write: the
    image plane is tilted (IOP row=(1,0,0), column=(0,cos t,sin t)) and IPP
    advances along z only, so successive slices are offset within their own
    plane by ``table_step * sin t`` along the column direction.

    ``sheared``: the variant some scanners (and some anonymisers/converters)
    write: IOP stays axial and IPP moves along y by ``z * tan t``.
    """
    t = math.radians(tilt_deg)
    zs = _centred_z(n, table_step)
    if variant == "gantry":
        iop = (1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t))
        off = _centre_offset(iop)
        return [SliceSpec((float(off[0]), float(off[1]), float(zk + off[2])), iop) for zk in zs]
    off = _centre_offset(AXIAL_IOP)
    return [SliceSpec((float(off[0]), float(off[1] + zk * math.tan(t)), float(zk))) for zk in zs]


def drop(slices: Sequence[SliceSpec], indices: Sequence[int]) -> list[SliceSpec]:
    """The stack without the slices at ``indices`` (missing slices)."""
    gone = set(indices)
    return [s for k, s in enumerate(slices) if k not in gone]


def repeated_stack(base: Sequence[SliceSpec], times: int,
                   kind: Literal["temporal", "echo"] = "temporal") -> list[SliceSpec]:
    """``times`` copies of a stack at the same positions: time points or echoes (phantom ``t`` = index)."""
    out: list[SliceSpec] = []
    for i in range(times):
        for s in base:
            if kind == "temporal":
                out.append(replace(s, t=float(i), temporal=i + 1))
            else:
                out.append(replace(s, t=float(i), echo=i + 1))
    return out


# ----------------------------------------------------------------------------- writing

@dataclass
class SynthSeries:
    """What was written: the folder, the files, and each file's slice as it reads back."""

    folder: Path
    files: list[Path]
    slices: list[SliceSpec]
    enhanced: bool = False

    def headers(self) -> list[InstanceHeader]:
        """Headers of all files, in a shuffled (not written, not position) order."""
        paths = list(self.files)
        random.Random(1234).shuffle(paths)
        return [read_header_path(p) for p in paths]

    def stack(self, t: float = 0.0) -> list[SliceSpec]:
        """The slices of one time point/echo, ordered along the slice normal."""
        chosen = [s for s in self.slices if s.t == t]
        normal = chosen[0].normal
        return sorted(chosen, key=lambda s: float(np.dot(s.ipp, normal)))

    def sample_points(self, n: int = 2000, t: float = 0.0, seed: int = 0,
                      margin: float = 0.25) -> FloatArray:
        """Random LPS points inside the acquired region (not on any grid).

        Each point lies on the segment between the same fractional pixel of two
        adjacent acquired slices, away from the in-plane edges by ``margin`` of
        the field of view, so it is covered by real data whatever the tilt.
        """
        stack = self.stack(t)
        rng = np.random.default_rng(seed)
        k = rng.integers(0, len(stack) - 1, n)
        f = rng.random(n)
        r = rng.uniform(margin * (ROWS - 1), (1 - margin) * (ROWS - 1), n)
        c = rng.uniform(margin * (COLUMNS - 1), (1 - margin) * (COLUMNS - 1), n)
        lo = np.stack([pixel_lps(stack[i], r[j], c[j]) for j, i in enumerate(k)])
        hi = np.stack([pixel_lps(stack[i + 1], r[j], c[j]) for j, i in enumerate(k)])
        return np.asarray(lo + f[:, None] * (hi - lo), dtype=np.float64)


def _uid(*parts: object) -> str:
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts]))


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _common(ds: Dataset, name: str, study_uid: str, series_uid: str, frame_uid: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-" + name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = "A" + name[:15]
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.Manufacturer = "Synthetic"
    ds.SeriesNumber = 3
    ds.SeriesDescription = name
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "ABDOMEN"
    ds.KVP = "120"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _ds_list(values: Sequence[float]) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_series(
    folder: Path,
    slices: Sequence[SliceSpec],
    *,
    name: str = "synthetic",
    seed: int = 0,
    instance_numbers: Literal["position", "reversed", "random"] = "random",
    shuffle_names: bool = True,
    empty_uids: bool = False,
    gantry_tilt: float | None = None,
) -> SynthSeries:
    """Write one CT Image Storage file per slice into ``folder``.

    File names are random-numbered (``shuffle_names``) and InstanceNumber follows
    ``instance_numbers``, so neither says where a slice is. ``empty_uids`` writes
    empty Study/Series/SOP Instance UIDs (only the file meta
    MediaStorageSOPInstanceUID is set), as some anonymisers do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    specs = [s.rounded() for s in slices]
    rng = random.Random(seed)
    n = len(specs)
    if instance_numbers == "position":
        numbers = list(range(1, n + 1))
    elif instance_numbers == "reversed":
        numbers = list(range(n, 0, -1))
    else:
        numbers = list(range(1, n + 1))
        rng.shuffle(numbers)
    names = list(range(n))
    if shuffle_names:
        rng.shuffle(names)
    study_uid, series_uid = _uid(name, "study"), _uid(name, "series")
    frame_uid = _uid(name, "frame")
    files: list[Path] = []
    for k, spec in enumerate(specs):
        sop_uid = _uid(name, "sop", k)
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        _common(ds, name, "" if empty_uids else study_uid, "" if empty_uids else series_uid, frame_uid)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = "" if empty_uids else sop_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = numbers[k]
        ds.AcquisitionNumber = spec.acquisition
        ds.ImagePositionPatient = _ds_list(spec.ipp)
        ds.ImageOrientationPatient = _ds_list(spec.iop)
        ds.PixelSpacing = _ds_list(PIXEL_SPACING)
        ds.SliceThickness = "3"
        ds.SliceLocation = format_number_as_ds(float(np.dot(spec.ipp, spec.normal)))
        ds.RescaleIntercept = format_number_as_ds(INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        if gantry_tilt is not None:
            ds.GantryDetectorTilt = format_number_as_ds(gantry_tilt)
        if spec.temporal is not None:
            ds.TemporalPositionIdentifier = spec.temporal
            ds.NumberOfTemporalPositions = max(s.temporal or 0 for s in specs)
            ds.AcquisitionTime = f"1015{10 * spec.temporal:02d}"
        if spec.echo is not None:
            ds.EchoNumbers = spec.echo
        ds.PixelData = stored_pixels(spec).tobytes()
        path = folder / f"IM{names[k]:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SynthSeries(folder, files, specs)


def _rescale_item(intercept: float) -> Dataset:
    item = Dataset()
    item.RescaleIntercept = format_number_as_ds(intercept)
    item.RescaleSlope = "1"
    item.RescaleType = "HU"
    return item


def write_enhanced(folder: Path, slices: Sequence[SliceSpec], *, name: str = "enhanced",
                   seed: int = 0, shuffle_frames: bool = True, per_frame_rescale: bool = False) -> SynthSeries:
    """Write the slices as the frames of one Enhanced CT Image Storage object.

    Orientation, pixel measures and the rescale live in the Shared Functional
    Groups; position and frame content (stack position, temporal index) per
    frame. Frames are stored in shuffled order unless ``shuffle_frames`` is off.
    ``per_frame_rescale`` moves the Pixel Value Transformation into each frame,
    with a different (whole-number) intercept per frame, as some scanners write it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    specs = [s.rounded() for s in slices]
    order = list(range(len(specs)))
    if shuffle_frames:
        random.Random(seed).shuffle(order)
    specs = [specs[i] for i in order]
    iops = {s.iop for s in specs}
    if len(iops) != 1:
        raise ValueError("write_enhanced puts one orientation in the shared groups")
    sop_uid = _uid(name, "sop")
    ds = Dataset()
    ds.file_meta = _file_meta(EnhancedCTImageStorage, sop_uid)
    _common(ds, name, _uid(name, "study"), _uid(name, "series"), _uid(name, "frame"))
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.InstanceNumber = 1
    ds.ContentDate = "20240102"
    ds.ContentTime = "101500"
    ds.AcquisitionNumber = 1
    ds.NumberOfFrames = len(specs)
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"

    dim_uid = _uid(name, "dimensions")
    ds.DimensionOrganizationSequence = DicomSequence([Dataset()])
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_uid
    dim = Dataset()
    dim.DimensionOrganizationUID = dim_uid
    dim.DimensionIndexPointer = pydicom.tag.Tag("ImagePositionPatient")
    dim.FunctionalGroupPointer = pydicom.tag.Tag("PlanePositionSequence")
    ds.DimensionIndexSequence = DicomSequence([dim])

    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds_list(specs[0].iop)
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    measures = Dataset()
    measures.PixelSpacing = _ds_list(PIXEL_SPACING)
    measures.SliceThickness = "3"
    shared.PixelMeasuresSequence = DicomSequence([measures])
    intercepts = [INTERCEPT + (8.0 * (i % 3) if per_frame_rescale else 0.0) for i in range(len(specs))]
    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = DicomSequence([_rescale_item(INTERCEPT)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    normal = specs[0].normal
    along = [float(np.dot(s.ipp, normal)) for s in specs]
    rank = {i: r for r, i in enumerate(sorted(range(len(specs)), key=lambda i: along[i]))}
    per_frame: list[Dataset] = []
    for i, spec in enumerate(specs):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = _ds_list(spec.ipp)
        item.PlanePositionSequence = DicomSequence([position])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = rank[i] + 1
        content.DimensionIndexValues = [rank[i] + 1]
        if spec.temporal is not None:
            content.TemporalPositionIndex = spec.temporal
        item.FrameContentSequence = DicomSequence([content])
        if per_frame_rescale:
            item.PixelValueTransformationSequence = DicomSequence([_rescale_item(intercepts[i])])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.stack([stored_pixels(s, b) for s, b in zip(specs, intercepts, strict=True)]).tobytes()
    path = folder / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return SynthSeries(folder, [path], specs, enhanced=True)


def write_bad_files(folder: Path, spec: SliceSpec | None = None) -> dict[str, Path]:
    """The broken files a loader meets in the wild (keys of the returned dict).

    ``text`` is a plain text file; ``truncated`` is a complete CT header whose pixel data stops half way;
    ``cut_header`` a CT file cut off inside its header (600 bytes);
    ``cut_preamble`` one cut just after the preamble and "DICM" marker (140 bytes);
    ``no_pixels`` a CT Image Storage object whose Pixel Data element was removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = spec or axial_stack(1)[0]
    good = write_series(folder / "_tmp", [spec], name="bad", shuffle_names=False).files[0]
    out: dict[str, Path] = {}

    text = folder / "notes.txt"
    text.write_text("Clinical history: cough for three weeks.\nThis is not DICOM.\n", encoding="utf-8")
    out["text"] = text

    raw = good.read_bytes()
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(raw[: len(raw) - ROWS * COLUMNS])  # half of the 2-byte pixels are gone
    out["truncated"] = truncated
    cut = folder / "cut_header.dcm"
    cut.write_bytes(raw[:600])
    out["cut_header"] = cut
    stub = folder / "cut_preamble.dcm"
    stub.write_bytes(raw[:140])
    out["cut_preamble"] = stub

    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.SOPInstanceUID = _uid("bad", "no pixels")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    no_pixels = folder / "no_pixels.dcm"
    ds.save_as(no_pixels, enforce_file_format=True)
    out["no_pixels"] = no_pixels

    good.unlink()
    (folder / "_tmp").rmdir()
    return out


def read_headers(paths: Sequence[Path]) -> tuple[list[InstanceHeader], dict[Path, str]]:
    """Headers of the readable files, and the reason for each unreadable one."""
    headers: list[InstanceHeader] = []
    errors: dict[Path, str] = {}
    for p in paths:
        try:
            headers.append(read_header_path(p))
        except UnreadableFileError as exc:
            errors[p] = exc.reason
    return headers, errors
