"""Fuzz corpus import (issue 13): every file ends imported or rejected with a reason, nothing crashes.

The corpus (``tests/fuzz_corpus.py``) is generated at test time: pydicom's test
files, truncations of every transfer syntax, zero-filled and random files,
huge declared dimensions, hostile zips. The import runs in a fresh process so
its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_hostile_import import PEAK_RSS
from tests.fuzz_corpus import GB, Corpus, build_corpus, zero_zip

REPO = Path(__file__).resolve().parents[1]
MAX_RSS_MB = 500
MAX_SECONDS = 30

# Imports ``folder`` into ``db`` and prints what became of every file, its time and its own peak RSS.
CHILD = PEAK_RSS + r"""
from workstation.index import StudyIndex, import_paths
t0 = time.perf_counter()
with StudyIndex(sys.argv[2]) as index:
    result = import_paths([sys.argv[1]], index)
    imported = [h.ref for row in index.series() for h in index.series_headers(row.id)]
print(json.dumps({
    "seconds": time.perf_counter() - t0,
    "peak_rss_mb": peak_rss_mb(),
    "files_seen": result.files_seen,
    "imported": imported,
    "rejected": [[r.file, r.reason] for r in result.rejected],
    "skipped": [[r.file, r.reason] for r in result.skipped],
}))
"""


def run_import(folder: Path, db: Path, timeout: float = 120) -> dict[str, object]:
    """Import ``folder`` in a fresh interpreter; its report (see ``CHILD``)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(db)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, f"the import crashed:\n{proc.stderr[-4000:]}"
    report: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Corpus:
    bomb = zero_zip(tmp_path_factory.getbasetemp() / "zip_bomb_2gb.zip", 2 * GB)
    return build_corpus(tmp_path_factory.mktemp("fuzz") / "corpus", shared_data, bomb)


@pytest.mark.slow
def test_every_hostile_file_is_imported_or_rejected_with_a_reason(corpus: Corpus, tmp_path: Path) -> None:
    report = run_import(corpus.root, tmp_path / "index.sqlite")
    imported = set(report["imported"])  # type: ignore[call-overload]
    rejected = dict(report["rejected"])  # type: ignore[call-overload]
    skipped = dict(report["skipped"])  # type: ignore[call-overload]
    print(f"\nfuzz corpus: {report['files_seen']} files, {len(imported)} imported, {len(rejected)} rejected, "
          f"{len(skipped)} skipped in {report['seconds']:.2f} s, peak RSS {report['peak_rss_mb']:.0f} MB")
    assert not imported & set(rejected), "a file was both imported and rejected"
    assert all(reason.strip() for reason in [*rejected.values(), *skipped.values()]), "a reason is empty"
    wrong = []
    for ref, want in corpus.expect.items():
        got = ("imported" if ref in imported else "rejected" if ref in rejected else
               "skipped" if ref in skipped else "lost")
        if got == "lost" or (want != "any" and got != want):
            wrong.append(f"{ref}: expected {want}, got {got} ({rejected.get(ref) or skipped.get(ref) or ''})")
    assert not wrong, "\n".join(wrong)
    ct = {r for r in imported if "/ct/" in r}
    assert len(ct) == 20, "the real CT beside the hostile files must import whole"
    budget_hits = [ref for ref, reason in rejected.items() if "time budget" in reason]
    assert not budget_hits, f"these needed the time budget instead of being turned away at once: {budget_hits}"
    assert report["peak_rss_mb"] < MAX_RSS_MB  # type: ignore[operator]
    assert report["seconds"] < MAX_SECONDS  # type: ignore[operator]


@pytest.mark.slow
def test_truncations_name_the_reason(corpus: Corpus, tmp_path: Path) -> None:
    """Each cut file says it is truncated (or not DICOM when cut inside its file meta)."""
    report = run_import(corpus.root / "truncated", tmp_path / "index.sqlite")
    rejected = dict(report["rejected"])  # type: ignore[call-overload]
    for ref, reason in rejected.items():
        if ref.endswith("_meta.dcm"):
            continue
        assert "truncated" in reason or "runs past the end" in reason, f"{Path(ref).name}: {reason}"
    assert len(report["imported"]) == 9  # type: ignore[arg-type]
