"""Opening a 300-slice 512x512 CT series: time to the first slice drawn, and to fully loaded.

Ours: the window's path. The reading session (``workstation.services.session``)
opens the indexed series as a streaming load on its I/O job runner and answers
through the GUI poster (``workstation.qt.bridge``), as in the main window; on
``VolumeReady`` the MPR viewer gets the volume and the whole 2x2 viewer is
rendered offscreen (``grab``), which is "first slice drawn"; ``SeriesOpened`` is
"fully loaded". Also the Qt-free ``StreamingLoad`` alone (no event loop).

Baseline, same files and same run: headers from the index, then the full
``load_series_volumes``, then the same viewer draw. Warm page cache; median of
``--repeats`` runs, alternating which loader goes first. Target (issue 4): first
slice drawn in under 0.3 s.

usage: python benchmarks/bench_first_slice.py [--repeats N] [--slices N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.series_data import ct_series_300  # noqa: E402

TARGET_FIRST_S = 0.3


def make_index(folder: Path, db: Path) -> int:
    from workstation.index import StudyIndex, import_paths

    with StudyIndex(db) as index:
        result = import_paths([folder], index)
    return result.series_ids[0]


def draw(viewer: Any, volume: Any, loaded: Any = None) -> None:
    """Give the viewer the volume and render it (offscreen) as the screen would."""
    viewer.set_volume(volume, loaded=loaded)
    image = viewer.grab()
    assert not image.isNull()


def baseline(db: Path, sid: int, viewer: Any) -> tuple[float, float]:
    """(first slice drawn, fully loaded) with the full loader: both wait for every slice."""
    from workstation.index import StudyIndex
    from workstation.services.streaming import indexed_source
    from workstation.services.studies import load_series_volumes

    t0 = time.perf_counter()
    with StudyIndex(db) as index:
        source = indexed_source(index, sid)
    volume = load_series_volumes(source).volumes[0]
    loaded = time.perf_counter() - t0
    draw(viewer, volume)
    return time.perf_counter() - t0, loaded


class QtRun:
    """Times one reading-session open: (VolumeReady, first slice drawn, SeriesOpened) from ``open_series``.

    The session's events are drawn on the viewer as ``workstation.qt.reading`` does; each ``__call__`` runs an
    event loop until the series is open.
    """

    def __init__(self, session: Any, viewer: Any) -> None:
        from PySide6.QtCore import QEventLoop

        self.session, self.viewer = session, viewer
        self.loop = QEventLoop()
        self.t0 = 0.0
        self.marks: dict[str, float] = {}
        session.subscribe(self._event)

    def __call__(self, sid: int) -> tuple[float, float, float]:
        from PySide6.QtCore import QTimer

        self.marks = {}
        watchdog = QTimer()
        watchdog.setSingleShot(True)
        watchdog.timeout.connect(self.loop.quit)
        watchdog.start(60_000)
        self.t0 = time.perf_counter()
        self.session.open_series(sid)
        self.loop.exec()
        watchdog.stop()
        if "finished" not in self.marks:
            raise SystemExit("the streaming load did not finish")
        return self.marks["ready"], self.marks["drawn"], self.marks["finished"]

    def _event(self, event: Any) -> None:
        from workstation.services import session_events as ev

        if isinstance(event, ev.VolumeReady):
            self.marks["ready"] = time.perf_counter() - self.t0
            draw(self.viewer, event.volume, event.loaded)
            self.marks["drawn"] = time.perf_counter() - self.t0
        elif isinstance(event, ev.SlicesLoaded):
            self.viewer.mark_loaded(event.start, event.stop)
        elif isinstance(event, ev.SeriesOpened):
            self.marks["finished"] = time.perf_counter() - self.t0
            if self.viewer.volume() is not event.volume:
                self.viewer.set_volume(event.volume)
            self.loop.quit()
        elif isinstance(event, ev.Problem):
            print("load failed:", event.text)
            self.loop.quit()


def ours_headless(db: Path, sid: int) -> tuple[float, float]:
    """(middle slice in, fully loaded) with StreamingLoad alone, no Qt."""
    from workstation.services.streaming import open_indexed

    t0 = time.perf_counter()
    first: list[float] = []
    load = open_indexed(db, sid)
    load.run(lambda a, b: first.append(time.perf_counter() - t0) if not first else None)
    return first[0], time.perf_counter() - t0


def check_identical(db: Path, sid: int) -> None:
    import numpy as np

    from workstation.index import StudyIndex
    from workstation.services.streaming import indexed_source, open_indexed
    from workstation.services.studies import load_series_volumes

    ours = open_indexed(db, sid).run()
    with StudyIndex(db) as index:
        ref = load_series_volumes(indexed_source(index, sid)).volumes[0]
    assert ours.array.dtype == ref.array.dtype and np.array_equal(ours.array, ref.array), "voxels differ"
    assert np.array_equal(ours.affine, ref.affine), "affines differ"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()

    from workstation.qt.app import ensure_app
    from workstation.qt.bridge import GuiPoster
    from workstation.qt.viewer import MprViewer
    from workstation.services.session import ReadingSession
    from workstation.settings import Settings

    folder = ct_series_300(args.slices)
    app = ensure_app()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "index.sqlite"
        sid = make_index(folder, db)
        check_identical(db, sid)
        viewer = MprViewer()
        viewer.resize(1200, 1000)
        poster = GuiPoster()
        session = ReadingSession(Settings(data_dir=Path(tmp) / "data", db=db), poster.post)
        ours_qt = QtRun(session, viewer)
        baseline(db, sid, viewer)  # warm the page cache and the code paths
        ours_qt(sid)
        rows: dict[str, list[float]] = {k: [] for k in (
            "base_drawn", "base_loaded", "qt_ready", "qt_drawn", "qt_finished", "headless_first", "headless_total")}
        for r in range(args.repeats):
            order = ("base", "ours") if r % 2 == 0 else ("ours", "base")
            for which in order:
                if which == "base":
                    drawn, loaded = baseline(db, sid, viewer)
                    rows["base_drawn"].append(drawn)
                    rows["base_loaded"].append(loaded)
                else:
                    ready, qdrawn, finished = ours_qt(sid)
                    rows["qt_ready"].append(ready)
                    rows["qt_drawn"].append(qdrawn)
                    rows["qt_finished"].append(finished)
            first, total = ours_headless(db, sid)
            rows["headless_first"].append(first)
            rows["headless_total"].append(total)
        session.shutdown()
        viewer.close()
        viewer.deleteLater()
        app.processEvents()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}")
    print(f"series: {args.slices} x 512 x 512 uncompressed CT, opened from the study index; "
          f"median of {args.repeats}")
    print(f"  baseline (full load, then draw):  first slice drawn {med['base_drawn'] * 1000:7.1f} ms, "
          f"fully loaded {med['base_loaded'] * 1000:7.1f} ms")
    print(f"  reading session + viewer:        VolumeReady {med['qt_ready'] * 1000:7.1f} ms, "
          f"first slice drawn {med['qt_drawn'] * 1000:7.1f} ms, fully loaded {med['qt_finished'] * 1000:7.1f} ms")
    print(f"  StreamingLoad alone (no Qt):      middle slice in {med['headless_first'] * 1000:7.1f} ms, "
          f"fully loaded {med['headless_total'] * 1000:7.1f} ms")
    ratio = med["base_drawn"] / med["qt_drawn"]
    print(f"  first slice drawn: {ratio:.1f}x sooner than the baseline; "
          f"target < {TARGET_FIRST_S * 1000:.0f} ms: {'met' if med['qt_drawn'] < TARGET_FIRST_S else 'MISSED'}")
    print(f"  fully loaded: streaming takes {med['qt_finished'] / med['base_loaded']:.2f}x the baseline's time")
    print(json.dumps({k: round(v, 4) for k, v in med.items()} | {"first_drawn_speedup": round(ratio, 2)}))


if __name__ == "__main__":
    main()
