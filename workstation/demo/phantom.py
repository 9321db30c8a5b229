"""Write the demo study: a synthetic chest CT series, its clinical notes and its truth.

The application needs something to open on a fresh machine with no data, and
the analysis tests need a study whose answers are known. This module writes the
phantom of ``workstation.demo.anatomy`` as a plain CT DICOM series (one file per
slice, Explicit VR Little Endian, uncompressed), a ``notes.txt`` with invented
clinical notes, and ``truth.json`` (see ``workstation.demo.truth``).

Output is deterministic: the same seed and shape give byte-identical files
(fixed dates and times, UIDs derived from the seed, seeded noise).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workstation.demo.anatomy import Grid, build_phantom
from workstation.demo.truth import DemoTruth, compute_truth

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
"""Bump whenever the generated study changes: cached demos are then regenerated."""

DEMO_FOLDER_NAME = "chest_ct_phantom"
VERSION_FILE = "generator_version.json"  # not a DICOM name: imports list it as ignored, not as bad input
NOTES_FILE = "notes.txt"
TRUTH_FILE = "truth.json"
PRIOR_FOLDER_NAME = "prior"  # the prior study a year earlier (``workstation.demo.prior``), inside the demo folder
FOLLOWUP_TRUTH_FILE = "followup_truth.json"
STALE_TEMP_SECONDS = 3600.0

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
RESCALE_INTERCEPT = -1024

PATIENT_NAME = "Demo^Phantom"
PATIENT_ID = "DEMO0001"
STUDY_DATE, STUDY_TIME = "20240315", "101500"
STUDY_DESCRIPTION = "CT CHEST WITHOUT CONTRAST"
SERIES_DESCRIPTION = "Thorax 2.5 B30f"
REQUESTED_PROCEDURE = "CT chest without contrast"
REASON_FOR_REQUEST = "Follow-up right upper lobe nodule; evaluate emphysema"
PATIENT_HISTORY = (
    "68-year-old former smoker, 40 pack-years, stopped 2015. Progressive dyspnoea on "
    "exertion over 12 months. Right upper lobe nodule on prior chest CT, follow-up requested."
)
NOTES_TEXT = """\
Clinical notes (synthetic demo patient, not a real person)

68-year-old man, former smoker, 40 pack-years, stopped smoking in 2015.
Progressive dyspnoea on exertion over the last 12 months; no haemoptysis,
no weight loss. Spirometry: FEV1/FVC 0.62, consistent with obstruction.

Prior chest CT reported a right upper lobe nodule; follow-up CT requested to
assess interval change in nodule size.

Request: CT chest without contrast. Follow-up of right upper lobe nodule.
Evaluate for emphysema (extent and distribution).
"""


def _uid(seed: int, shape: tuple[int, int, int], *parts: object) -> str:
    """A deterministic ``2.25.`` UID (a name-based UUID) from seed, shape, version and a role.

    ``pydicom.uid.generate_uid(prefix=None, ...)`` ignores its entropy sources and
    returns a random UUID, so the name-based UUID (ISO/IEC 9834-8, DICOM PS3.5 B.2)
    is built here directly: reproducible, and needing no organisation root.
    """
    name = "|".join(["workstation-demo", GENERATOR_VERSION, str(seed), "x".join(map(str, shape)),
                     *(str(p) for p in parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) for a rounded coordinate."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _base_dataset(grid: Grid, seed: int, role: tuple[str, ...] = ()) -> Any:
    """The attributes shared by every slice of the series.

    ``role`` (e.g. ``("prior",)``) enters every UID, so another study of the
    same patient gets its own study, series, frame-of-reference and instance
    UIDs; empty for the current demo study, whose UIDs it leaves unchanged.
    """
    from pydicom.dataset import Dataset, FileMetaDataset

    _, nr, nc = grid.shape
    dz, dy, dx = grid.spacing
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    meta.ImplementationClassUID = _uid(0, (0, 0, 0), "implementation")
    meta.ImplementationVersionName = f"WSDEMO_{GENERATOR_VERSION}"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    for name in ("Study", "Series", "Acquisition", "Content"):
        setattr(ds, f"{name}Date", STUDY_DATE)
        setattr(ds, f"{name}Time", STUDY_TIME)
    ds.AccessionNumber = "DEMOACC0001"
    ds.Modality = "CT"
    ds.Manufacturer = "Workstation Demo"
    ds.ManufacturerModelName = "Synthetic Chest Phantom"
    ds.InstitutionName = "Demo Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19560210"
    ds.PatientSex = "M"
    ds.PatientAge = "068Y"
    ds.AdditionalPatientHistory = PATIENT_HISTORY
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = _ds(dz)
    ds.KVP = "120"
    ds.SpacingBetweenSlices = _ds(dz)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = _ds(max(nr * dy, nc * dx))
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(seed, grid.shape, *role, "study")
    ds.SeriesInstanceUID = _uid(seed, grid.shape, *role, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = _uid(seed, grid.shape, *role, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = nr
    ds.Columns = nc
    ds.PixelSpacing = [_ds(dy), _ds(dx)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    # Top level (where many exports put them, and where the notes reader looks) and in the
    # standard's Request Attributes Sequence.
    ds.RequestedProcedureDescription = REQUESTED_PROCEDURE
    ds.ReasonForTheRequestedProcedure = REASON_FOR_REQUEST
    request = Dataset()
    request.RequestedProcedureID = "DEMORP0001"
    request.ScheduledProcedureStepID = "DEMOSPS0001"
    request.RequestedProcedureDescription = REQUESTED_PROCEDURE
    request.ReasonForTheRequestedProcedure = REASON_FOR_REQUEST
    ds.RequestAttributesSequence = [request]
    return ds


def _write_series(folder: Path, grid: Grid, hu: npt.NDArray[np.int16], seed: int, role: tuple[str, ...] = (),
                  attributes: dict[str, Any] | None = None) -> list[Path]:
    """One file per slice, numbered from the top of the chest down as a scanner would.

    ``role`` and ``attributes`` (top-level keywords overriding the defaults, e.g.
    StudyDate) let ``workstation.demo.prior`` write another study of the same patient.
    """
    ds = _base_dataset(grid, seed, role)
    for keyword, value in (attributes or {}).items():
        setattr(ds, keyword, value)
    stored = (hu.astype(np.int32) - RESCALE_INTERCEPT).astype("<u2")
    z, _, _ = grid.axes()
    x0, y0, _ = grid.origin
    ns = grid.shape[0]
    paths: list[Path] = []
    for number in range(1, ns + 1):
        k = ns - number  # instance 1 is the most superior slice
        uid = _uid(seed, grid.shape, *role, "instance", number)
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPInstanceUID = uid
        ds.InstanceNumber = number
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(float(z[k]))]
        ds.SliceLocation = _ds(float(z[k]))
        ds.PixelData = stored[k].tobytes()
        path = folder / f"IM{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def generate_demo_study(
    folder: Path, *, shape: tuple[int, int, int] = (120, 256, 256), seed: int = 0
) -> DemoTruth:
    """Write the demo chest CT series, ``notes.txt`` and ``truth.json`` into ``folder``.

    ``folder`` is created if missing and must be empty: stale slices of another
    shape would otherwise join the series. The field of view is fixed (384 mm
    square, 300 mm long); ``shape`` (slices, rows, columns) sets the resolution,
    1.5 mm pixels and 2.5 mm slices by default. Returns the ground truth, which
    is also written as ``truth.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"the demo study needs an empty folder: {folder}")
    start = time.perf_counter()
    phantom = build_phantom(shape, seed)
    truth = compute_truth(phantom, GENERATOR_VERSION)
    _write_series(folder, phantom.grid, phantom.hu, seed)
    (folder / NOTES_FILE).write_bytes(NOTES_TEXT.encode("utf-8"))
    (folder / TRUTH_FILE).write_bytes(truth.to_json().encode("utf-8"))
    logger.info("wrote demo study (%d slices) to %s in %.2f s",
                phantom.grid.shape[0], folder, time.perf_counter() - start)
    return truth


def _current(study: Path) -> bool:
    try:
        data = json.loads((study / VERSION_FILE).read_text(encoding="utf-8"))
        with_prior = (study / PRIOR_FOLDER_NAME / FOLLOWUP_TRUTH_FILE).is_file()  # cached before the prior existed
        return isinstance(data, dict) and data.get("generator_version") == GENERATOR_VERSION and with_prior
    except (OSError, ValueError):
        return False


def _remove_stale(cache_dir: Path) -> None:
    """Remove leftovers of crashed or replaced generations (old enough not to be in use)."""
    now = time.time()
    for entry in cache_dir.glob(f".{DEMO_FOLDER_NAME}.*"):
        try:
            if now - entry.stat().st_mtime > STALE_TEMP_SECONDS or entry.name.endswith(".old"):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def ensure_demo_study(cache_dir: Path) -> Path:
    """Return the demo study folder in ``cache_dir``, generating it if missing or outdated.

    The study is generated in a temporary folder beside the target and renamed
    into place with its ``VERSION`` stamp already inside, so a crash never leaves
    a half-written demo that looks complete.
    """
    cache_dir = Path(cache_dir)
    study = cache_dir / DEMO_FOLDER_NAME
    if _current(study):
        return study
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_FOLDER_NAME}.", suffix=".tmp", dir=cache_dir))
    try:
        current = generate_demo_study(tmp)
        from workstation.demo.prior import generate_demo_prior  # builds on this module

        generate_demo_prior(tmp / PRIOR_FOLDER_NAME, current)
        (tmp / VERSION_FILE).write_text(json.dumps({"generator_version": GENERATOR_VERSION}) + "\n",
                                        encoding="utf-8")
        if study.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{DEMO_FOLDER_NAME}.", suffix=".old", dir=cache_dir))
            study.replace(old / DEMO_FOLDER_NAME)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.replace(study)
        except OSError:
            if not _current(study):  # another process did not win the race either
                raise
            logger.info("demo study was generated concurrently; keeping that one")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("demo study ready at %s (generator version %s)", study, GENERATOR_VERSION)
    return study
