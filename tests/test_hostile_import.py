"""Hostile and broken files at import (issue 13, faults 2 and 3).

A zero-filled file, a zip bomb or a pathologically long header is turned away
at once with its reason; a cut-short JPEG 2000 slice is rejected at import and
its series loads with the gap reported, instead of every later load failing
with a misleading "no Pixel Data".
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from benchmarks.bench_hostile_import import build_hostile_folder, measure_import
from inference.errors import UnreadableFileError
from tests import dicom_factory as f
from tests.fuzz_corpus import GB, zero_file, zero_zip
from workstation.cli import main
from workstation.dicomio.guards import MIB, ImportLimits
from workstation.dicomio.pixels import decode_instance
from workstation.dicomio.reader import read_header, read_header_path
from workstation.dicomio.sources import FileRef
from workstation.index import StudyIndex, import_paths


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _ct_with_cut_slice(shared_data: Path, dest: Path, k: int = 9) -> tuple[Path, Path]:
    """The real JPEG 2000 CT with its ``k``-th slice (by position) cut to two thirds; (folder, cut file)."""
    shutil.copytree(shared_data / "ct_abdomen_totalseg" / "example_ct_dicom", dest)
    for p in dest.iterdir():
        p.chmod(0o644)
    files = sorted(dest.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                        .ImagePositionPatient[2]))
    cut = files[k]
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    return dest, cut


def test_a_cut_jpeg2000_slice_is_rejected_and_the_series_loads_with_the_gap(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, cut = _ct_with_cut_slice(shared_data, tmp_path / "ct")
    code, out, _ = _run(capsys, "import", str(folder), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["added"] == 19
    assert [r["file"] for r in data["rejected"]] == [str(cut)]
    assert "truncated" in data["rejected"][0]["reason"]
    series_id = data["studies"][0]["series"][0]["id"]
    code, out, _ = _run(capsys, "qa", str(series_id), "--json")
    qa = {q["check"]: q for q in json.loads(out)["qa"]}
    assert qa["missing slices"]["status"] == "warning" and "1 slice(s) missing" in qa["missing slices"]["detail"]
    code, out, err = _run(capsys, "convert", str(series_id), "--out", str(tmp_path / "ct.nii.gz"))
    assert code == 0, err
    import nibabel as nib

    assert nib.load(tmp_path / "ct.nii.gz").shape == (512, 512, 20), "the gap is filled on the regular grid"


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")  # pydicom's, expected here
def test_a_slice_cut_after_import_says_truncated_not_no_pixel_data(shared_data: Path, tmp_path: Path) -> None:
    src = sorted((shared_data / "ct_abdomen_totalseg" / "example_ct_dicom").iterdir())[3]
    header = read_header_path(src)
    cut = tmp_path / "cut.dcm"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) - 5000])
    header.ref = str(cut)
    with pytest.raises(UnreadableFileError, match="truncated") as info:
        decode_instance(header)
    assert "no 'Pixel Data'" not in str(info.value)


@pytest.mark.parametrize("cut", ["delimiter", "fragment"])
def test_encapsulated_fragments_must_end_inside_the_file(shared_data: Path, tmp_path: Path, cut: str) -> None:
    src = sorted((shared_data / "ct_abdomen_totalseg" / "example_ct_dicom").iterdir())[0]
    data = bytearray(src.read_bytes())
    assert data[-8:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", "the file ends with its sequence delimiter"
    if cut == "delimiter":
        data = data[:-8]
    else:  # the last fragment claims 64 kB more than it holds; the delimiter is still there
        offset = read_header_path(src).pixel_offset
        assert offset is not None
        pos = offset
        while True:
            _tag, length = struct.unpack_from("<II", data, pos)
            if pos + 8 + length == len(data) - 8:
                struct.pack_into("<I", data, pos + 4, length + 65536)
                break
            pos += 8 + length
    path = tmp_path / "bad.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="truncated"):
        read_header_path(path)


def test_a_zero_filled_64_mb_file_is_rejected_at_once(tmp_path: Path) -> None:
    path = zero_file(tmp_path / "zeros.dcm", 64 * MIB)
    t0 = time.perf_counter()
    with pytest.raises(UnreadableFileError, match="zero") as info:
        read_header_path(path)
    assert time.perf_counter() - t0 < 0.5, "a zero-filled file must not be parsed"
    assert "not a DICOM file" in info.value.reason


def test_zero_filled_data_after_a_valid_file_meta_is_rejected_at_once(tmp_path: Path) -> None:
    good = f.ct_slice(tmp_path / "good.dcm", study_uid="1.2.3", series_uid="1.2.3.4")
    data = good.read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", data, 140)[0]
    path = tmp_path / "meta_zeros.dcm"
    path.write_bytes(data[:meta_end] + bytes(32 * MIB))
    t0 = time.perf_counter()
    with pytest.raises(UnreadableFileError, match="zero-filled"):
        read_header_path(path)
    assert time.perf_counter() - t0 < 0.5


def test_a_zip_bomb_member_is_refused_unread_and_a_zero_member_is_streamed(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    bomb = zero_zip(tmp_path_factory.getbasetemp() / "zip_bomb_2gb.zip", 2 * GB)
    t0 = time.perf_counter()
    with pytest.raises(UnreadableFileError, match="import_max_zip_member_mb") as info:
        read_header(FileRef(str(bomb), "bomb.dcm"))
    assert time.perf_counter() - t0 < 0.5 and "2,048 MB" in info.value.reason
    small = zero_zip(tmp_path / "zeros.zip", 200 * MIB, "zeros.dcm")
    t0 = time.perf_counter()
    with pytest.raises(UnreadableFileError, match="zero"):
        read_header(FileRef(str(small), "zeros.dcm"))
    assert time.perf_counter() - t0 < 0.5, "only the member's head may be inflated"
    with pytest.raises(UnreadableFileError, match="zero"):  # under a raised limit it is read, from its head only
        read_header(FileRef(str(bomb), "bomb.dcm"), ImportLimits(max_member_bytes=4 * GB))


def _many_elements(path: Path, n: int, *, preamble: bool) -> Path:
    """A plausible header followed by ``n`` empty private elements: slow to walk element by element."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    if preamble:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    with path.open("ab") as fh:
        fh.write(struct.pack("<HHI", 0x0009, 0x1000, 0) * n)
    return path


@pytest.mark.parametrize("preamble", [True, False], ids=["fast scanner", "pydicom"])
def test_the_time_budget_stops_a_header_that_takes_too_long(tmp_path: Path, preamble: bool) -> None:
    path = _many_elements(tmp_path / "slow.dcm", 2_000_000, preamble=preamble)
    limits = ImportLimits(file_budget_s=0.5)
    t0 = time.perf_counter()
    with pytest.raises(UnreadableFileError, match="time budget"):
        read_header_path(path, limits)
    assert time.perf_counter() - t0 < 2.0


def test_the_header_byte_cap(tmp_path: Path) -> None:
    path = _many_elements(tmp_path / "long.dcm", 300_000, preamble=False)  # 2.4 MB of header
    with pytest.raises(UnreadableFileError, match="import_max_header_mb"):
        read_header_path(path, ImportLimits(max_header_bytes=MIB))
    # A large value that is not needed is skipped, not read: it does not count against the cap.
    big = f.ct_slice(tmp_path / "big.dcm", study_uid="1.2.3", series_uid="1.2.3.4")
    ds = pydicom.dcmread(big)
    ds.add_new((0x0011, 0x0010), "LO", "BIG PRIVATE")
    ds.add_new((0x0011, 0x1001), "OB", b"\x01" * (3 * MIB))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(big)
    header = read_header_path(big, ImportLimits(max_header_bytes=MIB))
    assert header.has_pixels and header.rows == 16


def test_zip_members_with_traversal_names_are_skipped_with_the_reason(tmp_path: Path) -> None:
    import zipfile

    good = f.ct_slice(tmp_path / "src" / "a.dcm", study_uid="1.2.3", series_uid="1.2.3.4")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # writestr keeps the names as given (write would clean them)
        for name in ("../../etc/x", "/abs/y.dcm", "fine/a.dcm"):
            zf.writestr(name, good.read_bytes())
    with StudyIndex(tmp_path / "index.sqlite") as index:
        result = import_paths([archive], index)
    assert result.added == 1
    reasons = {r.file.split("::", 1)[1]: r.reason for r in result.skipped}
    assert set(reasons) == {"../../etc/x", "/abs/y.dcm"} and all("unsafe name" in r for r in reasons.values())


@pytest.mark.slow
def test_hostile_folder_imports_its_ct_fast_and_small(shared_data: Path,
                                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """The issue's benchmark: 20 real CT slices + a 64 MB zero-filled file + a 2 GB zip bomb."""
    bomb = zero_zip(tmp_path_factory.getbasetemp() / "zip_bomb_2gb.zip", 2 * GB)
    folder = build_hostile_folder(tmp_path_factory.mktemp("hostile"), shared_data, bomb)
    report = measure_import(folder)
    print(f"\nhostile folder: {report['added']} slices indexed, {len(report['rejected'])} rejected "
          f"in {report['seconds']:.2f} s, peak RSS {report['peak_rss_mb']:.0f} MB")
    for ref, reason in report["rejected"]:
        print(f"  rejected {Path(ref.split('::')[0]).name}: {reason}")
    assert report["added"] == 20
    assert len(report["rejected"]) == 2 and all(reason for _, reason in report["rejected"])
    assert report["seconds"] < 5.0
    assert report["peak_rss_mb"] < 500
