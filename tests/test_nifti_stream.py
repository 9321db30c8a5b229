"""``workstation convert`` streams a plain stack into the file: the same bytes as loading it whole, and
anything that needs the whole volume (resampling, a type the slices cannot be rescaled into one by one)
is still loaded whole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests import dicom_factory as f
from workstation.dicomio.nifti import write_nifti
from workstation.dicomio.nifti_stream import prepare_stream
from workstation.dicomio.volume_builder import checked_plan
from workstation.services.studies import convert_series, load_series_volumes, resolve_series

Edit = Callable[[pydicom.Dataset, int], None]


def _series(folder: Path, edit: Edit | None = None, z: list[float] | None = None, n: int = 5) -> Path:
    """``n`` 24x24 CT slices with random stored values, each changed by ``edit`` (slice index given)."""
    rng = np.random.default_rng(3)
    study, series = generate_uid(), generate_uid()
    folder.mkdir()
    for k in range(n):
        path = f.ct_slice(folder / f"s{k}.dcm", study_uid=study, series_uid=series, z=z[k] if z else 2.0 * k,
                          instance_number=k + 1, size=24)
        ds = pydicom.dcmread(path)
        ds.PixelData = rng.integers(0, 3000, size=(24, 24)).astype(np.uint16).tobytes()
        if edit is not None:
            edit(ds, k)
        ds.save_as(path, enforce_file_format=True)
    return folder


def _set(**values: Any) -> Edit:
    def edit(ds: pydicom.Dataset, k: int) -> None:
        for key, value in values.items():
            setattr(ds, key, value(k) if callable(value) else value)
    return edit


def _twelve_bits_with_garbage(ds: pydicom.Dataset, k: int) -> None:
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    ds.PixelData = (np.arange(24 * 24, dtype=np.uint16) * (k + 7) % 4096 | 0xF000).astype(np.uint16).tobytes()


def _intercept_outside_int16(ds: pydicom.Dataset, k: int) -> None:
    """Stored 30000-ish, intercept -40000: HU fit int16 and so does the stored value, not the intercept."""
    ds.PixelData = (30000 + np.arange(24 * 24) % 100).astype(np.uint16).tobytes()
    ds.RescaleIntercept = -40000 + k


CASES: dict[str, tuple[Edit | None, str, str]] = {  # edit, rescale mode, real-value type
    "ct": (None, "view", "int16"),
    "intercept per slice": (_set(RescaleIntercept=lambda k: -1024 + 7 * k), "view", "int16"),
    "slope 2": (_set(RescaleSlope=2), "general", "int16"),
    "slope 0.5": (_set(RescaleSlope=0.5, RescaleIntercept=-3.25), "general", "float32"),
    "12 of 16 bits, signed": (_twelve_bits_with_garbage, "view", "int16"),
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", list(CASES))
def test_streamed_file_is_the_loaded_volumes_file(tmp_path: Path, case: str, suffix: str) -> None:
    edit, mode, dtype = CASES[case]
    source = resolve_series(str(_series(tmp_path / "series", edit)), None)
    stream = prepare_stream(checked_plan(source.headers))
    assert stream is not None and stream.rescale.mode == mode and str(stream.rescale.dtype) == dtype
    done = convert_series(source, tmp_path / f"streamed{suffix}")
    whole = write_nifti(load_series_volumes(source).volumes, tmp_path / f"whole{suffix}")
    assert done.path.read_bytes() == whole.read_bytes()
    assert done.grid == (5, 24, 24) and done.volumes == 1 and done.notes == ()


@pytest.mark.parametrize(("name", "edit", "z"), [
    ("non-uniform spacing", None, [0.0, 2.0, 4.0, 7.0, 9.0]),
    ("tilted stack", _set(ImagePositionPatient=lambda k: [-10.0, -10.0 + 0.5 * k, 2.0 * k]), None),
    ("intercept outside the type", _intercept_outside_int16, None),
])
def test_what_needs_the_whole_volume_is_loaded_whole(tmp_path: Path, name: str, edit: Edit | None,
                                                     z: list[float] | None) -> None:
    source = resolve_series(str(_series(tmp_path / "series", edit, z)), None)
    assert prepare_stream(checked_plan(source.headers)) is None, name
    done = convert_series(source, tmp_path / "out.nii")
    loaded = load_series_volumes(source)
    assert done.path.read_bytes() == write_nifti(loaded.volumes, tmp_path / "whole.nii").read_bytes()
    assert done.notes == loaded.volumes[0].notes


def _positive_after_negative_intercept(ds: pydicom.Dataset, k: int) -> None:
    """Stored 40000-40999, intercept -1000: real values above int16's range, all positive: uint16 out."""
    ds.PixelData = (40000 + np.arange(24 * 24) % 1000).astype(np.uint16).tobytes()
    ds.RescaleIntercept = -1000


def test_a_negative_intercept_into_an_unsigned_type_gives_the_real_values(tmp_path: Path) -> None:
    """It crashed with OverflowError (numpy refuses a negative Python int as uint16) on load and export."""
    folder = _series(tmp_path / "series", _positive_after_negative_intercept)
    source = resolve_series(str(folder), None)
    volume = load_series_volumes(source).volumes[0]
    expected = np.stack([
        pydicom.dcmread(folder / f"s{k}.dcm").pixel_array.astype(np.int64) - 1000 for k in range(5)])
    assert volume.array.dtype.kind == "u"  # the case that crashed: an unsigned output type
    assert np.array_equal(volume.array.astype(np.int64), expected)
    done = convert_series(source, tmp_path / "out.nii")
    assert done.path.read_bytes() == write_nifti([volume], tmp_path / "whole.nii").read_bytes()


def test_a_conversion_that_fails_midway_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice cut between the two streamed reads (a file replaced on a share) must not leave a
    half-written NIfTI that looks complete by its name."""
    from workstation.dicomio import nifti_stream

    folder = _series(tmp_path / "series")
    source = resolve_series(str(folder), None)
    reads = {"n": 0}
    real_read = nifti_stream.read_direct

    def read_then_cut(header: Any, out: Any) -> None:
        reads["n"] += 1
        if reads["n"] == 5 + 2:  # the extremes pass read all 5; the file pass has begun (header written)
            victim = folder / "s3.dcm"
            victim.write_bytes(victim.read_bytes()[:400])
        real_read(header, out)

    monkeypatch.setattr(nifti_stream, "read_direct", read_then_cut)
    with pytest.raises(Exception):  # noqa: B017 - the reader's own error; what matters is what is left
        convert_series(source, tmp_path / "out" / "volume.nii")
    assert reads["n"] > 5  # it failed while writing, not before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
