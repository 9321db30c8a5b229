"""The Qt-free services the window's views are given: the catalog (the study index as typed rows) and thumbnails.

No ``QApplication`` here: answers come through a ``CallQueue``, the way a script or the command line would
drive these services, and prove that the browser's and the notes panel's work needs no Qt. The import rules
that keep Qt out of the index and the DICOM decoders are checked with import-linter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests import synth
from workstation.services.catalog import Catalog, NoteEdit
from workstation.services.dispatch import CallQueue
from workstation.services.thumbnails import ThumbnailFailed, ThumbnailReady, ThumbnailService
from workstation.settings import get_settings

REPO = Path(__file__).resolve().parents[1]


def test_catalog_lists_studies_and_keeps_notes(demo_folder: Path) -> None:
    catalog = Catalog.for_settings(get_settings())
    assert catalog.listing().studies == []
    result = catalog.import_paths([demo_folder])
    listing = catalog.listing()
    (study,) = listing.studies
    (series,) = listing.series
    assert series.id == result.series_ids[0] and series.study_id == study.id
    assert listing.analysed == frozenset(), "nothing analysed yet"
    assert catalog.study_of_series(series.id) == study == catalog.study_by_key(study.study_key)
    assert catalog.study_title(study.study_key) == "DEMO, Phantom – CT CHEST WITHOUT CONTRAST – 2024-03-15"
    assert catalog.series_details(series.id)["instances"] == 40
    notes = catalog.notes(study.id)
    assert notes, "the demo study comes with its request and history"
    edited, empty, typed = catalog.save_notes(
        study.id, [NoteEdit(notes[0].id, "Edited by the reader."), NoteEdit(None, "  "), NoteEdit(None, "Typed.")]
    )
    assert empty is None, "an empty new note is not stored"
    assert edited is not None and edited.text == "Edited by the reader." and edited.source == notes[0].source
    assert typed is not None and typed.kind == "typed note" and typed.text == "Typed."
    assert [n.text for n in catalog.notes(study.id)].count("Typed.") == 1


def test_thumbnails_are_made_off_the_owner_thread_and_cached(tmp_path: Path, demo_folder: Path) -> None:
    catalog = Catalog.for_settings(get_settings())
    good_id = catalog.import_paths([demo_folder]).series_ids[0]
    broken = synth.write_series(tmp_path / "broken", synth.axial_stack(5), name="broken")
    broken_id = catalog.import_paths([broken.folder]).series_ids[0]
    shutil.rmtree(broken.folder)  # the files went away after the import
    rows = {row.id: row for row in catalog.listing().series}
    calls = CallQueue()
    service = ThumbnailService(catalog, catalog.thumbnails_dir, calls.post)
    events: list[tuple[object, int]] = []
    service.subscribe(lambda event: events.append((event, threading.get_ident())))
    for sid in (good_id, broken_id):
        assert service.request(sid, rows[sid].series_key, 40 if sid == good_id else 5) is None
    was_busy = service.busy
    assert calls.wait_until(lambda: len(events) == 2, timeout_s=30)
    assert {thread for _, thread in events} == {threading.get_ident()}, "answers arrive on the owner's thread"
    by_kind = {type(event): event for event, _ in events}
    ready, failed = by_kind[ThumbnailReady], by_kind[ThumbnailFailed]
    assert isinstance(ready, ThumbnailReady) and isinstance(failed, ThumbnailFailed)
    assert ready.series_id == good_id and ready.pixels.shape == (128, 128) and ready.pixels.dtype == np.uint8
    assert ready.pixels.std() > 20, "a picture, not a blank square"
    assert failed.series_id == broken_id and failed.message
    assert was_busy and not service.busy and service.cached(good_id) is ready.pixels
    assert service.shutdown() and not service.runner.is_running()
    cache = service.cache_file(rows[good_id].series_key, 40)
    assert cache.is_file()
    again = ThumbnailService(catalog, catalog.thumbnails_dir, calls.post)  # a restart takes it from the disk
    later: list[object] = []
    again.subscribe(later.append)
    again.request(good_id, rows[good_id].series_key, 40)
    assert calls.wait_until(lambda: bool(later), timeout_s=30)
    (event,) = later
    assert isinstance(event, ThumbnailReady) and np.array_equal(event.pixels, ready.pixels)
    assert again.shutdown()


def test_import_rules_keep_qt_out_of_the_index_decoders_and_drafting_internals() -> None:
    """The layers contract of issue 14: Qt takes typed rows and display helpers only; drafting needs no torch."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.is_file():
        pytest.fail(f"import-linter is a dev dependency; {lint} is missing")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    flat = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Qt never opens the study index, decodes DICOM or reaches into drafting internals: services do KEPT" in flat
    assert "Report drafting imports neither scipy nor torch at import" in flat
