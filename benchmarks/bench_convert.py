"""DICOM series to uncompressed NIfTI, whole process: ``workstation convert`` vs SimpleITK vs dcm2niix.

Same 300-slice 512x512 CT series (``benchmarks/series_data.py``), same run, warm page cache,
contenders alternated, median of ``--repeats``. Every contender is timed as a fresh process
(interpreter start-up and imports included), since that is what a user waits for:

- ours: ``python -m workstation convert FOLDER --out X.nii``
- SimpleITK: ``ImageSeriesReader`` (GDCM file names) + ``WriteImage`` in ``python -c``
- dcm2niix: ``dcm2niix -z n -b n`` (no BIDS sidecar, like ours)

Also checks that our voxels and affine equal dcm2niix's, and that ``convert`` imports nothing heavy
(torch, MONAI, transformers, scipy, Qt) via ``-X importtime``. Goal: faster than SimpleITK and
within 2x of dcm2niix. ``--gzip`` compares ``.nii.gz`` instead (dcm2niix ``-z y``).

usage: python benchmarks/bench_convert.py [--repeats N] [--slices N] [--gzip]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402
from benchmarks.series_data import ct_series_300  # noqa: E402

HEAVY = ("torch", "monai", "transformers", "scipy", "PySide6", "SimpleITK", "skimage")
SITK_SCRIPT = (
    "import sys, SimpleITK as sitk\n"
    "r = sitk.ImageSeriesReader()\n"
    "r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))\n"
    "sitk.WriteImage(r.Execute(), sys.argv[2])\n"
)

Command = Callable[[Path, Path], list[str]]


def _env(tmp: Path) -> dict[str, str]:
    """The benchmark's own settings and index: never the user's."""
    env = dict(os.environ)
    env["WORKSTATION_CONFIG_DIR"] = str(tmp / "config")
    env["WORKSTATION_DATA_DIR"] = str(tmp / "data")
    return env


def ours_cmd(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "workstation", "convert", str(folder), "--out", str(out)]


def sitk_cmd(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", SITK_SCRIPT, str(folder), str(out)]


def dcm2niix_cmd(folder: Path, out: Path) -> list[str]:
    gz = "y" if out.name.endswith(".gz") else "n"
    return ["dcm2niix", "-z", gz, "-b", "n", "-f", out.name.split(".")[0], "-o", str(out.parent), str(folder)]


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run; CPU time is what a busy machine distorts least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def check_same_as_dcm2niix(ours: Path, theirs: Path) -> str:
    """Our file against dcm2niix's: same shape, affine and real-valued voxels, slice by slice."""
    import nibabel as nib

    a, b = nib.load(str(ours)), nib.load(str(theirs))
    if a.shape != b.shape:
        return f"DIFFERENT shape {a.shape} vs {b.shape}"
    if not np.allclose(a.affine, b.affine, atol=1e-3):
        return f"DIFFERENT affine\n{a.affine}\n{b.affine}"
    for k in range(a.shape[2]):
        if not np.array_equal(np.asanyarray(a.dataobj[:, :, k]), np.asanyarray(b.dataobj[:, :, k])):
            return f"DIFFERENT voxels in slice {k}"
    return "identical voxels and affine"


def heavy_imports(folder: Path, out: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """Total import time of ``convert`` (ms) and the heavy packages it loaded, with their own import time.

    For scipy only its public subpackages count: nibabel imports the bare ``scipy`` package (its
    private helpers, a few ms), which is not what this check is after.
    """
    cmd = [sys.executable, "-X", "importtime", *ours_cmd(folder, out)[1:]]
    err = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stderr
    total, per_package, modules = 0, dict.fromkeys(HEAVY, 0), dict.fromkeys(HEAVY, 0)
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except ValueError:
            continue  # the header line
        total += self_us
        top, _, rest = parts[2].strip().partition(".")
        if top == "scipy" and (not rest or rest.startswith(("_", "version"))):
            continue
        if top in per_package:
            per_package[top] += self_us
            modules[top] += 1
    heavy = [f"{name} ({modules[name]} modules, {us / 1000:.0f} ms)" for name, us in per_package.items()
             if modules[name]]
    return total / 1000, heavy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--gzip", action="store_true", help="write .nii.gz (dcm2niix -z y)")
    args = ap.parse_args()
    folder = ct_series_300(args.slices)
    suffix = ".nii.gz" if args.gzip else ".nii"
    contenders: dict[str, Command] = {"ours": ours_cmd, "simpleitk": sitk_cmd}
    if shutil.which("dcm2niix"):
        contenders["dcm2niix"] = dcm2niix_cmd
    else:
        print("WARNING: dcm2niix not on PATH (Debian package dcm2niix): its column is missing")
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(tmp)
        outs = {name: tmp / name / f"vol{suffix}" for name in contenders}
        for name, cmd in contenders.items():  # warm the page cache and the interpreter's file cache
            outs[name].parent.mkdir(parents=True, exist_ok=True)
            run_once(cmd(folder, outs[name]), env)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, cmd in contenders.items():
                outs[name].unlink(missing_ok=True)
                wall, used = run_once(cmd(folder, outs[name]), env)
                times[name].append(wall)
                cpu[name].append(used)
        same = check_same_as_dcm2niix(outs["ours"], outs["dcm2niix"]) if "dcm2niix" in outs else "not checked"
        import_ms, heavy = heavy_imports(folder, tmp / "imports.nii", env)
        size_mb = outs["ours"].stat().st_size / 1e6
    med = {name: statistics.median(ts) for name, ts in times.items()}
    med_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}")
    print(f"series: {args.slices} x 512 x 512 uncompressed CT -> {suffix} ({size_mb:.0f} MB written by ours)")
    for name, sec in med.items():
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:<10} {sec * 1000:8.0f} ms  (runs {runs} s; CPU {med_cpu[name] * 1000:.0f} ms)")
    print(f"  ours vs SimpleITK: {med['simpleitk'] / med['ours']:.2f}x faster")
    if "dcm2niix" in med:
        print(f"  ours vs dcm2niix:  {med['ours'] / med['dcm2niix']:.2f}x its time (goal <= 2x)")
    print(f"  ours vs dcm2niix output: {same}")
    print(f"  convert's imports: {import_ms:.0f} ms in all; heavy packages loaded: {', '.join(heavy) or 'none'}")
    print(json.dumps({"median_s": med, "median_cpu_s": med_cpu, "imports_ms": import_ms, "heavy_imports": heavy,
                      "same_as_dcm2niix": same}))


if __name__ == "__main__":
    main()
