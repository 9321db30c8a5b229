"""Hostile input and concurrent writers at import (issue 13).

1. A folder holding the 20-slice real CT (``../shared/data/ct_abdomen_totalseg``), a 64 MB zero-filled
   ``.dcm`` and a zip whose one member inflates to 2 GB of zeros (2 MB on disk): imported in a fresh
   process, which reports its wall time and its own peak RSS (targets: all 20 slices indexed, both bad
   files rejected with reasons, under 5 s and 500 MB).
2. Two ``workstation import`` processes started together on one new index, each with a different
   series of the same patient, repeated: every instance indexed, both exit 0.

usage: python benchmarks/bench_hostile_import.py [--runs N] [--slices N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import SHARED_DATA, cpu_name  # noqa: E402

SHARED = SHARED_DATA
GB = 1024 ** 3

PEAK_RSS = r"""
import json, resource, sys, time


def peak_rss_mb():
    # VmHWM belongs to this process image alone; ru_maxrss of RUSAGE_SELF would carry the parent's peak
    # across fork+exec (a test run at 1.4 GB would be measured, not the import). Import workers count too.
    with open("/proc/self/status") as fh:
        own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)

"""
"""The start of a child script that measures its own peak memory (shared with tests/test_fuzz_import.py)."""

CHILD = PEAK_RSS + r"""
t0 = time.perf_counter()
from workstation.index import StudyIndex, import_paths
with StudyIndex(sys.argv[2]) as index:
    result = import_paths([sys.argv[1]], index)
    instances = index.counts()["instances"]
print(json.dumps({"seconds": time.perf_counter() - t0, "import_seconds": result.seconds,
                  "peak_rss_mb": peak_rss_mb(),
                  "added": result.added, "instances": instances,
                  "rejected": [[r.file, r.reason] for r in result.rejected]}))
"""


def zip_bomb(path: Path, member_bytes: int = 2 * GB) -> Path:
    """A zip whose one member is ``member_bytes`` of zeros, streamed through deflate at level 9."""
    if not path.exists():
        chunk = bytes(1 << 20)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
                zf.open("bomb.dcm", "w", force_zip64=True) as out:
            for _ in range(member_bytes // len(chunk)):
                out.write(chunk)
    return path


def build_hostile_folder(dest: Path, shared_data: Path, bomb: Path) -> Path:
    """``dest/hostile``: the real CT, a 64 MB zero-filled file and ``bomb`` (copied)."""
    folder = dest / "hostile"
    shutil.copytree(shared_data / "ct_abdomen_totalseg" / "example_ct_dicom", folder / "ct")
    with (folder / "zeros.dcm").open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    shutil.copyfile(bomb, folder / "bomb.zip")
    return folder


def measure_import(folder: Path) -> dict[str, Any]:
    """Import ``folder`` into a new index in a fresh interpreter; its report (time, peak RSS, rejects)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(Path(tmp) / "index.sqlite")],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the import failed:\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def concurrent_imports(slices: int, work: Path) -> tuple[list[int], int, int]:
    """Two import processes at once on one new index; ``(exit codes, instances indexed, expected)``."""
    from pydicom.uid import generate_uid

    from tests import dicom_factory as f

    study = generate_uid()
    folders = [work / f"series{s}" for s in range(2)]
    for s, folder in enumerate(folders):
        f.ct_series(folder, slices, study_uid=study, series_number=s + 1)
    env = dict(os.environ, WORKSTATION_DB=str(work / "index.sqlite"), PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-m", "workstation", "import", str(folder)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for folder in folders]
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        if p.returncode:
            print(err.strip().splitlines()[-1], file=sys.stderr)
        codes.append(p.returncode)
    from workstation.index import StudyIndex

    with StudyIndex(work / "index.sqlite") as index:
        return codes, index.counts()["instances"], 2 * slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rounds of two concurrent imports")
    parser.add_argument("--slices", type=int, default=100, help="slices per series in the concurrent imports")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bomb = zip_bomb(work / "bomb.zip")
        print(f"zip bomb: {bomb.stat().st_size / 1e6:.1f} MB on disk, 2048 MB inflated")
        folder = build_hostile_folder(work, SHARED, bomb)
        report = measure_import(folder)
        print(f"hostile folder: {report['added']} of 20 CT slices indexed, {len(report['rejected'])} rejected, "
              f"{report['seconds']:.2f} s in the child (import itself {report['import_seconds']:.2f} s), "
              f"peak RSS {report['peak_rss_mb']:.0f} MB")
        for ref, reason in report["rejected"]:
            print(f"  rejected {Path(ref.split('::')[0]).name}: {reason}")
        ok = 0
        for run in range(args.runs):
            codes, got, want = concurrent_imports(args.slices, work / f"run{run}")
            good = codes == [0, 0] and got == want
            ok += good
            print(f"concurrent run {run + 1}: exit codes {codes}, {got} of {want} instances indexed"
                  f"{'' if good else '  <-- FAILED'}")
        print(f"concurrent imports: {ok} of {args.runs} runs indexed every instance with both processes exiting 0")


if __name__ == "__main__":
    main()
