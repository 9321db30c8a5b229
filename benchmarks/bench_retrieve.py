"""Retrieve a 300-slice series from a local Orthanc: ours (C-GET) vs dcmtk's getscu, same run.

A throw-away Orthanc (tests/pacs_fixtures.py) runs in a private network
namespace when permitted; the series (benchmarks/series_data.py: 300
uncompressed 512x512 CT slices, 157 MB) is uploaded once over REST. Each
repeat retrieves the series at SERIES level into a fresh temporary folder,
alternating the contenders; medians are compared. Ours: ``DimseClient.get``
(files written as received, the transfer only) and the whole
``retrieve_study`` (C-FIND planning + transfer + index import). getscu
runs as installed and with ``TCP_NODELAY=1`` (Debian's dcmtk leaves Nagle's
algorithm on, which costs ~45 ms per instance on loopback: the fair comparison
is with it off). Also timed, for information: our pynetdicom C-GET path,
WADO-RS and C-MOVE.

usage: python benchmarks/bench_retrieve.py [--repeats N] [--slices N]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.series_data import ct_series_300  # noqa: E402
from tests.pacs_fixtures import Orthanc, free_port, private_network  # noqa: E402

OUR_AET, GETSCU_AET = "BENCHWS", "GETSCU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()
    if shutil.which("getscu") is None:
        print("getscu not found: bash scripts/install_pacs_tools.sh")
        return 1
    folder = ct_series_300(args.slices)
    files = sorted(folder.glob("*.dcm"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-") as tmp, private_network() as isolated:
        work = Path(tmp)
        orthanc = Orthanc(work / "orthanc", modalities={OUR_AET: ("127.0.0.1", free_port()),
                                                        GETSCU_AET: ("127.0.0.1", free_port())},
                          locked_down=not isolated).start()
        try:
            t0 = time.perf_counter()
            orthanc.upload(files)
            print(f"uploaded {len(files)} files ({size_mb:.0f} MB) in {time.perf_counter() - t0:.1f} s; "
                  f"private network namespace: {isolated}")
            return run(orthanc, work, len(files), size_mb, args.repeats)
        finally:
            orthanc.stop()


def run(orthanc: Orthanc, work: Path, n: int, size_mb: float, repeats: int) -> int:
    import os

    import pydicom

    from tests.pacs_fixtures import ORTHANC_PASSWORD, ORTHANC_USER
    from workstation.pacs.dicomweb import DicomWebClient
    from workstation.pacs.dimse import DimseClient
    from workstation.pacs.nodes import LocalAE, PacsNode
    from workstation.pacs.retrieve import retrieve_study
    from workstation.pacs.storage import InstanceWriter

    first = pydicom.dcmread(next(iter(sorted(ct_series_300(n).glob("*.dcm")))), stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    node = PacsNode(name="bench", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port, timeout_s=60,
                    dicomweb_url=orthanc.dicomweb_url, username=ORTHANC_USER,
                    password=ORTHANC_PASSWORD)  # type: ignore[arg-type]
    local = LocalAE(ae_title=OUR_AET, port=orthanc.modalities[OUR_AET][1], bind_address="127.0.0.1")
    client = DimseClient(node, local)
    ct = ["1.2.840.10008.5.1.4.1.1.2"]
    counter = iter(range(10_000))

    def fresh() -> Path:
        d = work / f"out{next(counter)}"
        d.mkdir()
        return d

    def ours(fast: bool) -> Callable[[], int]:
        def call() -> int:
            writer = InstanceWriter(fresh())
            client.get(writer, study, series, sop_classes=ct, expected=n, fast=fast)
            return len(writer.received)
        return call

    def ours_wado() -> int:
        writer = InstanceWriter(fresh())
        return DicomWebClient(node).retrieve(writer, study, series)

    def ours_full(method: str) -> Callable[[], int]:
        def call() -> int:
            out = fresh()
            result = retrieve_study(node, local, study, db_path=out / "index.sqlite", storage_dir=out / "pacs",
                                    method=method)  # type: ignore[arg-type]
            return result.received
        return call

    def getscu(nodelay: bool) -> Callable[[], int]:
        def call() -> int:
            out = fresh()
            cmd = ["getscu", "-S", "-aet", GETSCU_AET, "-aec", orthanc.aet, "-od", str(out),
                   "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
                   "-k", f"SeriesInstanceUID={series}", "127.0.0.1", str(orthanc.dicom_port)]
            env = {**os.environ, **({"TCP_NODELAY": "1"} if nodelay else {})}
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            return sum(1 for _ in out.iterdir())
        return call

    contenders: dict[str, Callable[[], int]] = {
        "ours C-GET (lean upper layer)": ours(True),
        "getscu, TCP_NODELAY=1": getscu(True),
        "getscu as installed (Nagle on)": getscu(False),
        "ours C-GET via pynetdicom": ours(False),
        "ours WADO-RS (one multipart stream)": ours_wado,
        "ours retrieve_study C-GET (+find, index)": ours_full("get"),
        "ours retrieve_study C-MOVE (+find, index)": ours_full("move"),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():  # warm-up: Orthanc's cache, page cache, imports
        assert fn() == n
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            got = fn()
            times[name].append(time.perf_counter() - t0)
            assert got == n, f"{name} retrieved {got} of {n}"
        for d in work.glob("out*"):
            shutil.rmtree(d)
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{n} slices ({size_mb:.0f} MB), median of {repeats}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"  {name:<44} {t * 1000:7.0f} ms  ({size_mb / t:5.0f} MB/s)  runs: "
              + ", ".join(f"{x * 1000:.0f}" for x in times[name]))
    ours_t = med["ours C-GET (lean upper layer)"]
    print(f"\nours C-GET vs getscu: {med['getscu, TCP_NODELAY=1'] / ours_t:.2f}x (getscu with TCP_NODELAY=1), "
          f"{med['getscu as installed (Nagle on)'] / ours_t:.2f}x (getscu as installed); >= 1: ours at least as fast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
