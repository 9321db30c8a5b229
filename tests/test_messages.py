"""Messages that say what happened: a DICOMDIR with missing files, a symbolic link loop, a series without a
description in ``workstation list`` (the PACS ones are in ``test_pacs_messages``)."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from tests import dicom_factory as f
from workstation.cli import main
from workstation.index import StudyIndex, import_paths


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _cd(tmp_path: Path, n: int) -> Path:
    f.ct_series(tmp_path / "raw", n)
    fs = FileSet()
    for p in sorted((tmp_path / "raw").glob("*.dcm")):
        fs.add(pydicom.dcmread(p))
    fs.write(tmp_path / "cd")
    return tmp_path / "cd" / "DICOMDIR"


def test_dicomdir_with_missing_files_says_so(tmp_path: Path) -> None:
    dicomdir = _cd(tmp_path, 4)
    files = sorted(p for p in dicomdir.parent.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    for p in files[:3]:
        p.unlink()
    with StudyIndex(tmp_path / "index.sqlite") as index:
        result = import_paths([dicomdir], index)
    assert result.added == 1
    (reason,) = [s.reason for s in result.skipped if s.file.endswith("DICOMDIR")]
    assert "its files were imported" not in reason
    assert "3 of the 4 file(s) it lists are missing" in reason

    for p in files[3:]:
        p.unlink()
    with StudyIndex(tmp_path / "index2.sqlite") as index:
        result = import_paths([dicomdir], index)
    (reason,) = [s.reason for s in result.skipped if s.file.endswith("DICOMDIR")]
    assert result.added == 0 and "none of the 4 file(s) it lists exist" in reason


def test_complete_dicomdir_is_described_as_read(tmp_path: Path) -> None:
    dicomdir = _cd(tmp_path, 3)
    with StudyIndex(tmp_path / "index.sqlite") as index:
        result = import_paths([dicomdir], index)
    (reason,) = [s.reason for s in result.skipped if s.file.endswith("DICOMDIR")]
    assert result.added == 3 and "the 3 file(s) it lists were read" in reason


def test_symbolic_link_loop_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop_a, loop_b = tmp_path / "a", tmp_path / "b"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    for argv in (["qa", str(loop_a)], ["convert", str(loop_a), "--out", str(tmp_path / "x.nii.gz")],
                 ["analyze", str(loop_a), "--out", str(tmp_path / "o")], ["models", "install", str(loop_a)]):
        code, _out, err = _run(capsys, *argv)
        assert code == 2 and "symbolic link loop" in err and "no such file" not in err, (argv, err)
    code, out, _err = _run(capsys, "import", str(loop_a))
    assert f"skipped {loop_a}: symbolic link loop" in out
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", dangling)
    code, _out, err = _run(capsys, "qa", str(dangling))
    assert code == 2 and "broken symbolic link" in err


def test_list_never_prints_none_for_a_missing_description(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f.ct_series(tmp_path / "s", 3)  # no SeriesDescription, no StudyDescription
    assert _run(capsys, "import", str(tmp_path / "s"))[0] == 0
    code, out, _ = _run(capsys, "list")
    assert code == 0 and "None" not in out
    assert "(no description)" in out
