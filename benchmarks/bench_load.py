"""Load a 300-slice 512x512 uncompressed CT series: ours vs SimpleITK's ImageSeriesReader.

Same files, same run, warm page cache; median of repeats. Also: pydicom alone
(the naive way), a raw-read ceiling, loading from the index (headers stored),
peak RSS of each loader in a fresh process, and header-only import throughput
of 3000 files. Prints ratios; see benchmarks/RESULTS.md.

usage: python benchmarks/bench_load.py [--repeats N] [--slices N] [--files N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from benchmarks.series_data import ct_series_300, many_small_files  # noqa: E402

_KEEP: list[object] = []


def ours(folder: Path) -> np.ndarray:
    from workstation.dicomio.sources import expand_paths
    from workstation.dicomio.volume_builder import load_series
    from workstation.index import read_headers

    refs, _ = expand_paths([folder])
    headers, _ = read_headers([str(r) for r in refs], workers=1)
    return load_series(headers).volumes[0].array


def simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk  # noqa: N813 - the library's own convention

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    _KEEP[:] = [image]  # the zero-copy view below lives only as long as the image
    return sitk.GetArrayViewFromImage(image)


def pydicom_naive(folder: Path) -> np.ndarray:
    import pydicom

    dss = [pydicom.dcmread(p) for p in folder.iterdir()]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])


def raw_ceiling(folder: Path) -> np.ndarray:
    files = sorted(folder.iterdir())
    out = np.empty((len(files), 512, 512), dtype=np.int16)
    for k, p in enumerate(files):
        with open(p, "rb", buffering=0) as fp:
            fp.seek(-512 * 512 * 2, 2)
            fp.readinto(memoryview(out[k]).cast("B"))
    return out


def timed(fn: Callable[[Path], np.ndarray], folder: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(folder)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# VmHWM (peak resident set) is per address space, so unlike ru_maxrss it is not
# inherited from the parent across exec.
RSS_SNIPPET = """
import sys
sys.path.insert(0, {root!r})
from benchmarks.bench_load import {name}, vm_hwm
from pathlib import Path
base = vm_hwm()
arr = {name}(Path({folder!r}))
print(base, vm_hwm(), arr.nbytes)
"""


def vm_hwm() -> int:
    """Peak resident set size of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss(name: str, folder: Path) -> tuple[int, int, int]:
    code = RSS_SNIPPET.format(root=str(ROOT), name=name, folder=str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    base, peak, nbytes = (int(x) for x in out.split())
    return base, peak, nbytes


def import_throughput(files: int, repeats: int) -> dict[str, float]:
    from workstation.index import StudyIndex, import_paths, importer

    folder = many_small_files(files)
    out = {}
    importer.PARALLEL_THRESHOLD = 0  # measure both paths whatever the default cut-over
    for workers in (1, 0):
        rates = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp, StudyIndex(Path(tmp) / "i.sqlite") as index:
                t = time.perf_counter()
                res = import_paths([folder], index, workers=workers)
                rates.append(res.added / (time.perf_counter() - t))
        out["serial" if workers == 1 else "parallel"] = statistics.median(rates)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--files", type=int, default=3000)
    args = ap.parse_args()
    folder = ct_series_300(args.slices)
    a, b = ours(folder), simpleitk(folder)
    assert np.array_equal(a, b), "ours and SimpleITK disagree on the voxels"
    for fn in (ours, simpleitk, raw_ceiling):  # warm the page cache
        fn(folder)
    loaders = [("ours", ours), ("simpleitk", simpleitk), ("pydicom_naive", pydicom_naive),
               ("raw_ceiling", raw_ceiling)]
    t = {name: timed(fn, folder, args.repeats) for name, fn in loaders}
    gb = a.nbytes / 1e9
    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.node()} {cpu}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"series: {args.slices} x 512 x 512 uncompressed ({gb * 1000:.0f} MB of int16)")
    for name, sec in t.items():
        ratio = t["simpleitk"] / sec
        print(f"  {name:<14} {sec * 1000:8.1f} ms  {gb / sec:5.2f} GB/s  speed-up vs SimpleITK {ratio:5.2f}x")
    rss = {name: peak_rss(name, folder) for name in ("ours", "simpleitk")}
    for name, (base, peak, nbytes) in rss.items():
        limit = 1.3 * nbytes + 300e6
        print(f"  peak RSS {name:<10} {peak / 1e6:7.0f} MB (after imports {base / 1e6:.0f} MB; "
              f"target <= 1.3 x {nbytes / 1e6:.0f} MB + 300 MB = {limit / 1e6:.0f} MB)")
    rates = import_throughput(args.files, max(1, args.repeats // 2))
    for mode, rate in rates.items():
        print(f"  header-only import of {args.files} files, {mode:<8}: {rate:7.0f} files/s")
    print(json.dumps({"ratio_vs_simpleitk": t["simpleitk"] / t["ours"],
                      "peak_rss_ours_mb": rss["ours"][1] / 1e6, "import_files_per_s": rates}))


if __name__ == "__main__":
    main()
