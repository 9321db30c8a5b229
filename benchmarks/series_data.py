"""Benchmark input: a 300-slice 512x512 uncompressed CT series (and many small files for import).

Built from the real CT slices in ../shared/data when present (decoded from JPEG 2000
and written uncompressed at new positions), otherwise from a synthetic phantom.
Cached under benchmarks/.cache (git-ignored).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from benchmarks.machine import SHARED_DATA

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
REAL = SHARED_DATA / "ct_abdomen_totalseg" / "example_ct_dicom"


def _templates() -> list[pydicom.Dataset]:
    if REAL.is_dir():
        out = []
        for p in sorted(REAL.iterdir()):
            ds = pydicom.dcmread(p)
            arr = ds.pixel_array
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.PixelData = arr.astype(np.uint16).tobytes()
            out.append(ds)
        return out
    from tests.dicom_factory import ct_slice  # pragma: no cover - fallback without shared data

    tmp = CACHE / "template.dcm"
    ct_slice(tmp, study_uid=generate_uid(), series_uid=generate_uid(), size=512)
    return [pydicom.dcmread(tmp)]


def ct_series_300(n: int = 300) -> Path:
    """Folder with ``n`` uncompressed 512x512 CT slices (shuffled file names)."""
    folder = CACHE / f"ct{n}"
    if folder.is_dir() and len(list(folder.glob("*.dcm"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    templates = _templates()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    for k in range(n):
        ds = copy.deepcopy(templates[k % len(templates)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.ImagePositionPatient = [-249.51171875, -437.51171875, -900.0 + 1.25 * k]
        ds.InstanceNumber = k + 1
        ds.SeriesNumber = 1
        ds.save_as(folder / f"IM{order[k]:05d}.dcm", enforce_file_format=True)
    return folder


def many_small_files(n: int = 3000) -> Path:
    """Folder with ``n`` small CT files in 10 series (index throughput)."""
    folder = CACHE / f"small{n}"
    if folder.is_dir() and len(list(folder.rglob("*.dcm"))) == n:
        return folder
    from tests.dicom_factory import ct_series

    per = n // 10
    for s in range(10):
        ct_series(folder / f"s{s}", per, series_number=s + 1, size=64)
    return folder
