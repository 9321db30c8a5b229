"""Several writers on one study index at once, and an import killed midway (issue 13, fault 1).

Writers are real: ``workstation import`` processes, the storage listener fed
by a C-STORE sender (dcmtk's storescu, or pynetdicom when dcmtk is not
installed), and an import on a thread of this process (what a drop in the
window does). Every instance must be indexed and every writer
must succeed; a killed import keeps the series it had committed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

from tests import dicom_factory as f
from workstation.index import StudyIndex, import_paths
from workstation.pacs.listener import Arrival, StorageListener
from workstation.pacs.nodes import LocalAE

REPO = Path(__file__).resolve().parents[1]
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _env(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["WORKSTATION_DB"] = str(db)
    env["PYTHONPATH"] = str(REPO)
    return env


def _importer(folder: Path, db: Path, commit_every_s: float | None = None) -> subprocess.Popen[str]:
    env = _env(db)
    if commit_every_s is not None:
        env["WORKSTATION_IMPORT_COMMIT_EVERY_S"] = str(commit_every_s)
    return subprocess.Popen([sys.executable, "-m", "workstation", "import", str(folder), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


STORESCU = shutil.which("storescu")


def _send(files: list[Path], port: int, called: str) -> None:
    """C-STORE ``files`` to our listener: dcmtk's storescu when installed, else pynetdicom."""
    if STORESCU:
        subprocess.run([STORESCU, "-aet", "SENDER", "-aec", called, "127.0.0.1", str(port), *map(str, files)],
                       check=True, capture_output=True, timeout=120)
        return
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established, "the listener refused the association"
    try:
        for p in files:
            status = assoc.send_c_store(pydicom.dcmread(p))
            assert status and status.Status == 0, f"C-STORE of {p.name} failed: {status}"
    finally:
        assoc.release()


def _one_patient_series(root: Path, n_series: int, n_slices: int) -> list[Path]:
    """``n_series`` series of one patient and study, each in its own folder."""
    study = generate_uid()
    folders = []
    for s in range(n_series):
        folder = root / f"series{s}"
        f.ct_series(folder, n_slices, study_uid=study, series_number=s + 1)
        folders.append(folder)
    return folders


def _count(db: Path) -> dict[str, int]:
    with StudyIndex(db) as index:
        return index.counts()


def _committed(table: str, db: Path) -> int:
    """Rows of ``table`` committed so far (0 while the index does not exist yet); read-only."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _window_drop(folder: Path, db: Path, errors: list[BaseException]) -> None:
    """What a drop on the window does: ``import_paths`` on a thread, with its own connection."""
    try:
        with StudyIndex(db) as index:
            import_paths([folder], index, workers=1)
    except BaseException as exc:
        errors.append(exc)


def _one_round(root: Path, slices: int) -> None:
    """Three import processes, the listener and an in-process import, all at once on one new index."""
    folders = _one_patient_series(root / "src", 5, slices)
    db = root / "index.sqlite"
    arrived = threading.Event()
    arrivals: list[Arrival] = []

    def on_arrival(a: Arrival) -> None:
        arrivals.append(a)
        arrived.set()

    local = LocalAE(ae_title="WSCONC", port=0, bind_address="127.0.0.1")
    window_errors: list[BaseException] = []
    with StorageListener(local, root / "received", db, allowed_callers=None, on_arrival=on_arrival) as listener:
        procs = [_importer(folder, db) for folder in folders[:3]]
        drop = threading.Thread(target=_window_drop, args=(folders[3], db, window_errors))
        sender = threading.Thread(target=_send, args=(sorted(folders[4].glob("*.dcm")), listener.port,
                                                      local.ae_title))
        # The processes race each other to create the patient; the listener and the window join in
        # as soon as one of them has committed, while the others are still writing.
        deadline = time.monotonic() + 60
        while _committed("patients", db) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        drop.start()
        sender.start()
        outputs = [p.communicate(timeout=120) for p in procs]
        drop.join(120)
        sender.join(120)
        assert arrived.wait(60), "the listener never imported what it received"
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"an import process failed:\n{err[-3000:]}"
        assert json.loads(out)["added"] == slices
    assert not window_errors, f"the in-process import failed: {window_errors[0]!r}"
    assert not arrivals[0].error and arrivals[0].added == slices, arrivals[0]
    counts = _count(db)
    assert counts["instances"] == 5 * slices, counts
    assert (counts["patients"], counts["studies"], counts["series"]) == (1, 1, 5), counts
    with StudyIndex(db) as index:
        assert sorted(s.summary["instances"] for s in index.series()) == [slices] * 5


@pytest.mark.slow
@pytest.mark.parametrize("round_no", range(3))
def test_importers_listener_and_window_at_once_index_every_instance(tmp_path: Path, round_no: int) -> None:
    # Before the fix, two processes importing 100-slice series of one new patient crashed 4 times in 6.
    _one_round(tmp_path, slices=100)




@pytest.mark.slow
def test_an_import_killed_midway_keeps_the_series_it_finished(tmp_path: Path) -> None:
    n_series, n_slices = 60, 20
    study = generate_uid()
    for s in range(n_series):
        f.ct_series(tmp_path / "src" / f"s{s:03d}", n_slices, study_uid=study, series_number=s + 1)
    db = tmp_path / "index.sqlite"
    # a commit at every folder: however fast this machine reads headers, the kill lands between commits
    proc = _importer(tmp_path / "src", db, commit_every_s=0.0)
    deadline = time.monotonic() + 60
    while _committed("series", db) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the import ended before it could be killed midway"
    with StudyIndex(db) as index:
        kept = index.series()
        assert 0 < len(kept) < n_series, f"{len(kept)} series committed before the kill"
        print(f"killed midway: {len(kept)} of {n_series} series were committed, each complete")
        for row in kept:
            headers = index.series_headers(row.id)
            assert len(headers) == n_slices, f"series {row.number} was committed half-done"
            assert row.summary["instances"] == n_slices, "a committed series has its QA summary too"
    with StudyIndex(db) as index:
        again = import_paths([tmp_path / "src"], index, workers=1)
        assert again.added == (n_series - len(kept)) * n_slices
        assert again.already_indexed == len(kept) * n_slices
        assert index.counts()["instances"] == n_series * n_slices
