"""The source images of an export: their headers as pydicom datasets, matched to the volume's slices.

Exports reference the images an analysis was made from. This module reads
those files' headers (never pixels, never writing to them), repairs in memory
what DICOM references need and real files sometimes lack, and works out which
file holds each slice of the analysed volume, by geometry alone.

Repairs (in the in-memory copies only; each is listed in ``SourceSeries.repairs``):

- empty SOPClassUID / SOPInstanceUID: taken from the file meta
  (MediaStorageSOPClassUID / MediaStorageSOPInstanceUID), which is what the
  files are stored as;
- empty StudyInstanceUID / SeriesInstanceUID: a ``2.25.`` UID derived from the
  index's study / series key (name-based UUID), so every export of the same
  study gets the same derived UIDs;
- missing type 2 patient/study attributes: present and empty.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.errors import GeometryError, WorkstationError
from inference.volume import Volume
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import series_key, study_key
from workstation.dicomio.slices import planes_of

logger = logging.getLogger(__name__)

POSITION_TOL_MM = 0.05
DIRECTION_TOL = 1e-3
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "AccessionNumber", "StudyID", "ReferringPhysicianName")


class ExportError(WorkstationError):
    """An export that cannot be made; the message says which and why."""


@dataclass(frozen=True)
class StudyInfo:
    """What a report header shows about the patient and study (from the first source header)."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession: str = ""
    modality: str = ""
    series_description: str = ""
    series_number: int | None = None
    institution: str = ""

    @classmethod
    def from_header(cls, h: InstanceHeader, institution: str = "") -> StudyInfo:
        """Study information from one instance header."""
        return cls(h.patient_name, h.patient_id, h.patient_birth_date, h.patient_sex, h.study_date,
                   h.study_time, h.study_description, h.accession, h.modality, h.series_description,
                   h.series_number, institution)


@dataclass
class SourceSeries:
    """The analysed series' source headers, repaired, and the slice -> file mapping.

    ``datasets`` holds every image instance of the series sorted along the
    slice normal. ``slice_map[k]`` is the index in ``datasets`` of the file
    holding volume slice ``k``, or ``slice_map`` is ``None`` when the volume's
    grid is not the files' own (resampled, multi-frame or ambiguous): exports
    then reference the frame of reference and the series instead of per-slice
    images (see ``workstation.export.seg``).
    """

    datasets: list[Any]
    slice_map: list[int] | None
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    info: StudyInfo
    repairs: list[str] = field(default_factory=list)
    reason_unmapped: str = ""

    @property
    def mapped(self) -> bool:
        """Whether every volume slice is exactly one source file."""
        return self.slice_map is not None

    def slice_datasets(self) -> list[Any]:
        """The source dataset of each volume slice (only when ``mapped``)."""
        if self.slice_map is None:
            raise ExportError(f"the volume's slices are not the source files' own: {self.reason_unmapped}")
        return [self.datasets[i] for i in self.slice_map]

    @property
    def sop_instance_uids(self) -> list[str]:
        """Every source instance's (repaired) SOPInstanceUID, in ``datasets`` order."""
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def derived_uid(kind: str, key: str) -> str:
    """A deterministic ``2.25.`` UID for a missing study/series UID (PS3.5 B.2, name-based UUID)."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'radiology-workstation|derived|{kind}|{key}').int}"


def _read_dataset(h: InstanceHeader) -> Any:
    import pydicom

    with h.file_ref.open() as fh:
        return pydicom.dcmread(fh, stop_before_pixels=True)


def read_sources(headers: Sequence[InstanceHeader], volume: Volume) -> SourceSeries:
    """Read and repair the headers of the image files in ``headers`` and map ``volume``'s slices to them."""
    images = [h for h in headers if h.has_pixels and planes_of(h)]
    if not images:
        raise ExportError("no source image files with geometry were given")
    first = images[0]
    study_uid = first.study_uid or derived_uid("study", study_key(first))
    series_uid = first.series_uid or derived_uid("series", series_key(first))
    repairs: list[str] = []
    if not first.study_uid:
        repairs.append("StudyInstanceUID empty in the source files: a UID derived from the study key is used")
    if not first.series_uid:
        repairs.append("SeriesInstanceUID empty in the source files: a UID derived from the series key is used")
    datasets = []
    for h in images:
        ds = _read_dataset(h)
        _repair(ds, study_uid, series_uid, repairs)
        datasets.append(ds)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    if len(set(uids)) != len(uids):
        raise ExportError("several source files share one SOPInstanceUID; they cannot be referenced apart")
    normal = np.asarray(volume.direction[:, 0])
    order = sorted(range(len(images)), key=lambda i: float(np.asarray(planes_of(images[i])[0].ipp) @ normal))
    images = [images[i] for i in order]
    datasets = [datasets[i] for i in order]
    slice_map, reason = _map_slices(images, volume)
    if slice_map is None:
        logger.info("export: volume slices are not the source files' own (%s)", reason)
    for note in repairs:
        logger.info("export source repair: %s", note)
    for_uid = volume.frame_of_reference_uid or first.frame_of_reference_uid
    info = StudyInfo.from_header(first, str(datasets[0].get("InstitutionName", "") or ""))
    return SourceSeries(datasets, slice_map, study_uid, series_uid, for_uid, info, sorted(set(repairs)), reason)


def _repair(ds: Any, study_uid: str, series_uid: str, repairs: list[str]) -> None:
    meta = getattr(ds, "file_meta", None)
    if not str(ds.get("SOPClassUID", "") or ""):
        ds.SOPClassUID = str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
        repairs.append("SOPClassUID empty in the source files: MediaStorageSOPClassUID of the file meta is used")
    if not str(ds.get("SOPInstanceUID", "") or ""):
        uid = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "")
        if not uid:
            raise ExportError("a source file has neither SOPInstanceUID nor MediaStorageSOPInstanceUID")
        ds.SOPInstanceUID = uid
        repairs.append("SOPInstanceUID empty in the source files: MediaStorageSOPInstanceUID is used")
    if not str(ds.get("StudyInstanceUID", "") or ""):
        ds.StudyInstanceUID = study_uid
    if not str(ds.get("SeriesInstanceUID", "") or ""):
        ds.SeriesInstanceUID = series_uid
    for name in _TYPE2:
        if name not in ds:
            setattr(ds, name, "")


def _map_slices(images: Sequence[InstanceHeader], volume: Volume) -> tuple[list[int] | None, str]:
    """Volume slice -> source file index, when each slice is exactly one single-frame file."""
    if any("resampled" in note for note in volume.notes):
        return None, "the grid was resampled when the series was loaded"
    if any(h.frames or h.mosaic_count > 1 for h in images):
        return None, "the source is multi-frame or a mosaic"
    _, rows, cols = volume.shape
    col_axis = volume.affine[:3, 2] / np.linalg.norm(volume.affine[:3, 2])
    row_axis = volume.affine[:3, 1] / np.linalg.norm(volume.affine[:3, 1])
    _, dr, dc = volume.spacing
    planes = [planes_of(h)[0] for h in images]
    positions = np.array([p.ipp for p in planes])
    out = []
    for k in range(volume.shape[0]):
        target = volume.index_to_lps([k, 0, 0])
        dist = np.linalg.norm(positions - target, axis=1)
        hits = np.nonzero(dist <= POSITION_TOL_MM)[0]
        if len(hits) != 1:
            what = "no source file" if len(hits) == 0 else f"{len(hits)} source files (time points or echoes)"
            return None, f"slice {k} lies at {what}"
        p = planes[int(hits[0])]
        same = (p.rows == rows and p.columns == cols
                and np.allclose(p.row_direction, col_axis, atol=DIRECTION_TOL)
                and np.allclose(p.column_direction, row_axis, atol=DIRECTION_TOL)
                and np.allclose(p.pixel_spacing, (dr, dc), rtol=1e-4))
        if not same:
            return None, f"slice {k} differs from its source file in size, orientation or pixel spacing"
        out.append(int(hits[0]))
    if len(set(out)) != len(out):
        raise GeometryError("two volume slices map to the same source file")
    return out, ""
