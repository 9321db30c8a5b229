"""Streaming series load: same voxels as the full loader, middle slice first, cancel, clear failures.

The window's path is tested here too (the reading session on its I/O job runner,
answering through the GUI poster): events arrive on the GUI thread in order, the
first slice before the rest, a newer request drops every late event of the older
one, and a bad series reports the file and the reason.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pytestqt.qtbot import QtBot

from inference.cancel import CancelledError
from inference.errors import NotAVolumeError, UnreadableFileError
from inference.volume import Volume
from tests import dicom_factory as f
from tests import synth
from workstation.dicomio.headers import InstanceHeader, read_header_path
from workstation.dicomio.volume_builder import load_series
from workstation.index import StudyIndex, import_paths
from workstation.qt.bridge import GuiPoster
from workstation.services import session_events as ev
from workstation.services.session import ReadingSession
from workstation.services.streaming import (
    StreamingLoad,
    describe_failure,
    open_indexed,
    reading_order,
)
from workstation.services.studies import SeriesSource, load_series_volumes
from workstation.settings import get_settings

REAL_SERIES = {
    "ct_abdomen_jpeg2000": "ct_abdomen_totalseg/example_ct_dicom",
    "cip_chest_ct": "cip_copdgene_10002K_ct64/Testing/Data/Input/ct-64Dicom",
    "mr_sagittal": "mr_decubitus_dcm_qa_decubitus/In/HFDL",
}


def headers_in(folder: Path) -> list[InstanceHeader]:
    return [read_header_path(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".txt"]


def assert_same_volume(ours: Volume, ref: Volume) -> None:
    assert ours.array.dtype == ref.array.dtype
    assert ours.array.shape == ref.array.shape
    assert np.array_equal(ours.array, ref.array)
    assert np.array_equal(ours.affine, ref.affine)
    assert (ours.modality, ours.units, ours.frame_of_reference_uid, ours.notes) == (
        ref.modality, ref.units, ref.frame_of_reference_uid, ref.notes)
    assert ours.metadata == ref.metadata
    assert ours.source == ref.source and ours.source is not None  # the same acquired images, InstanceNumbers


def restore(folder: Path, *, bits_stored: int = 12, signed: bool = False, slope: str = "1",
            intercepts: list[float] | None = None, big_endian: bool = False, add: float = 0.0) -> None:
    """Rewrite a synthetic series' pixel encoding in place, keeping its real values (HU + ``add``)."""
    for i, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float64) - 1024.0 + add
        icpt = intercepts[i % len(intercepts)] if intercepts else -1024.0
        stored = np.rint((hu - icpt) / float(slope))
        ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
        ds.PixelRepresentation = int(signed)
        dtype = np.dtype(">i2" if big_endian else "<i2") if signed else np.dtype(">u2" if big_endian else "<u2")
        ds.PixelData = stored.astype(dtype).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = slope, f"{icpt:g}"
        if big_endian:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
            ds.set_original_encoding(False, False)
            ds.save_as(path, enforce_file_format=True)
        else:
            ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> list[InstanceHeader]:
    folder = tmp_path_factory.mktemp("plain")
    return synth.write_series(folder, synth.axial_stack(21)).headers()


# ----------------------------------------------------------------------------- equality with load_series

@pytest.mark.parametrize("name", list(REAL_SERIES))
def test_real_series_stream_to_the_same_volume(shared_data: Path, name: str) -> None:
    headers = headers_in(shared_data / REAL_SERIES[name])
    load = StreamingLoad(SeriesSource(name, headers), chunk=4)
    assert load.streamed, load.fallback_reason
    assert_same_volume(load.run(), load_series(headers, label=name).volumes[0])
    assert load.loaded.all()


# name: (encoding, (read in place?, dtype predicted from the headers, dtype of the finished volume))
VARIANTS: dict[str, tuple[dict[str, Any], tuple[bool, str, str]]] = {
    "ct_12bit_unsigned": ({}, (True, "int16", "int16")),
    "signed_16bit_narrowed_at_the_end": ({"bits_stored": 16, "signed": True}, (False, "int32", "int16")),
    "mr_like_unsigned_no_rescale": ({"bits_stored": 16, "intercepts": [0.0], "add": 1024.0},
                                    (True, "uint16", "int16")),
    "float_slope": ({"slope": "0.5"}, (False, "float32", "float32")),
    "integer_slope": ({"slope": "2"}, (False, "int16", "int16")),
    "per_slice_intercepts": ({"intercepts": [-1024.0, -1000.0, -1030.0]}, (True, "int16", "int16")),
    "big_endian": ({"bits_stored": 16, "signed": True, "big_endian": True}, (False, "int32", "int16")),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_synthetic_encodings_stream_to_the_same_volume(tmp_path: Path, variant: str) -> None:
    encoding, (inplace, predicted, final) = VARIANTS[variant]
    series = synth.write_series(tmp_path / variant, synth.axial_stack(23), name=variant)
    restore(series.folder, **encoding)
    headers = series.headers()
    load = StreamingLoad(SeriesSource(variant, headers), chunk=3, workers=3)
    assert load.streamed and load.layout is not None and load.volume is not None
    assert (load.layout.inplace, str(load.volume.array.dtype)) == (inplace, predicted)
    preallocated = load.volume.array
    volume = load.run()
    assert str(volume.array.dtype) == final and volume is load.volume
    assert (volume.array is preallocated) == (predicted == final), "converted only when the data allow narrower"
    assert_same_volume(volume, load_series(headers).volumes[0])


def test_real_sized_series_from_the_index_equals_the_full_loader(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    f.ct_series(folder, 40, size=128)
    with StudyIndex(tmp_path / "index.sqlite") as index:
        sid = import_paths([folder], index).series_ids[0]
    load = open_indexed(tmp_path / "index.sqlite", sid)
    assert load.label.startswith(f"series {sid} (")
    ref = load_series_volumes(load.source).volumes[0]
    assert_same_volume(load.run(), ref)


@pytest.mark.parametrize("kind", ["tilt", "non-uniform", "multi-frame", "multi-volume"])
def test_series_that_need_the_whole_stack_fall_back_to_the_full_loader(tmp_path: Path, kind: str) -> None:
    if kind == "tilt":
        series = synth.write_series(tmp_path / kind, synth.tilted_stack(12), name=kind)
    elif kind == "non-uniform":
        series = synth.write_series(tmp_path / kind, synth.gapped_stack([4] * 6 + [6] * 4), name=kind)
    elif kind == "multi-frame":
        series = synth.write_enhanced(tmp_path / kind, synth.axial_stack(10), name=kind)
    else:
        series = synth.write_series(tmp_path / kind, synth.repeated_stack(synth.axial_stack(6), 3), name=kind)
    headers = series.headers()
    load = StreamingLoad(SeriesSource(kind, headers))
    assert not load.streamed and kind.split("-")[-1] in load.fallback_reason
    assert load.volume is None
    calls: list[tuple[int, int]] = []
    volume = load.run(lambda a, b: calls.append((a, b)))
    ref = load_series(headers)
    assert calls == [(0, volume.shape[0])] and load.loaded.all()
    assert_same_volume(volume, ref.volumes[0])
    assert len(load.volumes) == len(ref.volumes)


def test_a_mosaic_falls_back_to_the_full_loader(shared_data: Path) -> None:
    path = next(p for p in sorted((shared_data / "codec_dcm_qa_ts" / "In").rglob("*")) if p.is_file())
    headers = [read_header_path(path)]
    load = StreamingLoad(SeriesSource("mosaic", headers))
    assert not load.streamed and "mosaic" in load.fallback_reason
    assert_same_volume(load.run(), load_series(headers).volumes[0])


# ----------------------------------------------------------------------------- order, cancel, failures

def test_reading_order_starts_in_the_middle_and_covers_every_slice_once() -> None:
    for n in (1, 2, 7, 16, 300):
        order = reading_order(n, 4)
        assert order[0] == (n // 2, n // 2 + 1)
        covered = np.zeros(n, dtype=int)
        for a, b in order:
            assert 0 <= a < b <= n and b - a <= 4
            covered[a:b] += 1
        assert (covered == 1).all()
    assert reading_order(9, 2) == [(4, 5), (5, 7), (2, 4), (7, 9), (0, 2)]
    assert reading_order(0) == []


def test_middle_slice_is_in_before_anything_else(plain: list[InstanceHeader]) -> None:
    load = StreamingLoad(SeriesSource("plain", plain), chunk=4, workers=2)
    assert load.volume is not None and load.volume.shape == (21, synth.ROWS, synth.COLUMNS)
    ref = load_series(plain).volumes[0]
    np.testing.assert_array_equal(load.volume.affine, ref.affine)  # geometry is final before any pixel
    seen: list[tuple[int, int, int]] = []
    first: dict[str, Any] = {}

    def on_slices(a: int, b: int) -> None:
        seen.append((a, b, int(load.loaded.sum())))
        if not first:
            assert load.volume is not None
            first["middle"] = load.volume.array[a].copy()
            first["others"] = int(np.count_nonzero(np.delete(load.volume.array, a, axis=0)))

    volume = load.run(on_slices)
    assert seen[0] == (10, 11, 1) and load.first_slice == 10
    np.testing.assert_array_equal(first["middle"], ref.array[10])
    assert first["others"] == 0, "only the middle slice is filled when the viewer is first told"
    assert sorted((a, b) for a, b, _ in seen) == sorted(reading_order(21, 4))
    assert sum(b - a for a, b, _ in seen) == 21 and seen[-1][2] == 21
    assert volume is load.volume


def test_cancel_after_the_middle_slice_reads_nothing_more(plain: list[InstanceHeader]) -> None:
    load = StreamingLoad(SeriesSource("plain", plain), chunk=1, workers=2)
    stop = threading.Event()
    calls: list[tuple[int, int]] = []

    def on_slices(a: int, b: int) -> None:
        calls.append((a, b))
        stop.set()

    with pytest.raises(CancelledError, match="loading plain was cancelled"):
        load.run(on_slices, stop.is_set)
    assert calls == [(10, 11)]
    assert load.loaded.tolist() == [k == 10 for k in range(21)]
    assert load.volume is not None and not load.volume.array[:10].any() and not load.volume.array[11:].any()


def test_no_callback_arrives_after_a_cancel(plain: list[InstanceHeader]) -> None:
    load = StreamingLoad(SeriesSource("plain", plain), chunk=1, workers=1)
    stop = threading.Event()
    calls: list[tuple[int, int]] = []

    def on_slices(a: int, b: int) -> None:
        calls.append((a, b))
        if len(calls) == 3:
            stop.set()

    with pytest.raises(CancelledError):
        load.run(on_slices, stop.is_set)
    assert len(calls) == 3 and int(load.loaded.sum()) >= 3


def test_cancel_before_start_reads_nothing(plain: list[InstanceHeader]) -> None:
    load = StreamingLoad(SeriesSource("plain", plain))
    with pytest.raises(CancelledError):
        load.run(cancel=lambda: True)
    assert not load.loaded.any()


def test_a_truncated_file_names_the_file_and_the_reason(tmp_path: Path) -> None:
    series = synth.write_series(tmp_path / "s", synth.axial_stack(9), name="trunc")
    headers = series.headers()
    victim = series.files[3]
    victim.write_bytes(victim.read_bytes()[:-500])
    load = StreamingLoad(SeriesSource("series 7 (trunc)", headers), chunk=2)
    with pytest.raises(UnreadableFileError) as info:
        load.run()
    message = describe_failure(load.label, info.value)
    assert message.startswith("series 7 (trunc) cannot be read: ")
    assert victim.name in message and "truncated" in message
    assert not load.loaded.all()


def test_a_series_without_geometry_cannot_form_a_volume(tmp_path: Path) -> None:
    path = f.secondary_capture(tmp_path / "sc.dcm", study_uid="1.2.3", series_uid="1.2.3.4")
    with pytest.raises(NotAVolumeError) as info:
        StreamingLoad(SeriesSource("series 3 (screen)", [read_header_path(path)]))
    message = describe_failure("series 3 (screen)", info.value)
    assert message.startswith("series 3 (screen) cannot form a volume: ")
    assert "position and orientation" in message and "series 3 (screen): " not in message


# ----------------------------------------------------------------------------- the window's path

def session_for(qtbot: QtBot) -> tuple[ReadingSession, list[Any], GuiPoster]:
    """The reading session as the window makes it: the GUI poster's ``post``, events recorded with their thread."""
    poster = GuiPoster()
    session = ReadingSession(get_settings(), poster.post)
    events: list[Any] = []
    session.subscribe(lambda event: events.append((event, threading.get_ident())))
    return session, events, poster


def index_series(*folders: Path) -> list[int]:
    with StudyIndex(get_settings().db_path) as index:
        return [import_paths([folder], index).series_ids[0] for folder in folders]


def io_idle(qtbot: QtBot, session: ReadingSession) -> None:
    """Wait until every load queued on the session's I/O runner has ended and its answers were delivered."""
    probe: list[bool] = []
    session.io.submit("probe", lambda _ctx: None, supersede=False,
                      on_done=lambda _d: session._post(lambda: probe.append(True)))
    qtbot.waitUntil(lambda: bool(probe), timeout=20_000)


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [e for e, _ in events if isinstance(e, kind)]


def test_session_events_arrive_in_order_on_the_gui_thread(qtbot: QtBot, tmp_path: Path) -> None:
    plain = synth.write_series(tmp_path / "plain", synth.axial_stack(21), name="plain")
    (sid,) = index_series(plain.folder)
    session, events, _poster = session_for(qtbot)
    assert session.open_series(sid) and session.current is not None
    was_loading = session.loading
    qtbot.waitUntil(lambda: bool(of_type(events, ev.SeriesOpened)), timeout=20_000)
    assert was_loading and not session.loading
    gui = threading.get_ident()
    assert {thread for _, thread in events} == {gui}, "every event is delivered on the GUI thread"
    kinds = [type(e).__name__ for e, _ in events if isinstance(e, ev.VolumeReady | ev.SlicesLoaded | ev.SeriesOpened)]
    assert kinds[0] == "VolumeReady" and kinds[-1] == "SeriesOpened", "the first slice is shown before the rest"
    (ready,) = of_type(events, ev.VolumeReady)
    (opened,) = of_type(events, ev.SeriesOpened)
    assert ready.series_id == opened.series_id == sid
    assert ready.volume.shape == opened.volume.shape and ready.loaded.dtype == bool
    assert ready.loaded.all(), "the mask handed out is the live one: complete by the time the load finished"
    slices = of_type(events, ev.SlicesLoaded)
    assert (slices[0].start, slices[0].stop) == (10, 11) and sum(e.stop - e.start for e in slices) == 21
    assert_same_volume(opened.volume, load_series(plain.headers()).volumes[0])
    assert session.shutdown()


def test_opening_another_series_drops_the_old_ones_events(qtbot: QtBot, tmp_path: Path) -> None:
    big = synth.write_series(tmp_path / "big", synth.axial_stack(60), name="big", seed=1)
    plain = synth.write_series(tmp_path / "plain", synth.axial_stack(21), name="plain", seed=2)
    big_id, plain_id = index_series(big.folder, plain.folder)
    session, events, _poster = session_for(qtbot)
    session.open_series(big_id)
    session.open_series(plain_id)
    qtbot.waitUntil(lambda: bool(of_type(events, ev.SeriesOpened)), timeout=20_000)
    io_idle(qtbot, session)  # the old load has ended and everything it posted was delivered
    shown = {e.series_id for e, _ in events if isinstance(e, ev.VolumeReady | ev.SlicesLoaded | ev.SeriesOpened)}
    assert shown == {plain_id}
    assert [e.series_id for e in of_type(events, ev.SeriesOpened)] == [plain_id]
    assert session.shutdown()


def test_session_reports_a_bad_indexed_series_and_keeps_working(qtbot: QtBot, tmp_path: Path) -> None:
    good = synth.write_series(tmp_path / "good", synth.axial_stack(8), name="good")
    bad = synth.write_series(tmp_path / "bad", synth.axial_stack(8), name="bad")
    good_id, bad_id = index_series(good.folder, bad.folder)
    victim = bad.files[2]
    victim.write_bytes(victim.read_bytes()[:-300])
    session, events, _poster = session_for(qtbot)
    session.open_series(bad_id)
    qtbot.waitUntil(lambda: bool(of_type(events, ev.Problem)), timeout=20_000)
    (problem,) = of_type(events, ev.Problem)
    assert problem.title == "Series could not be opened"
    assert problem.text.startswith(f"series {bad_id} (bad) cannot be read: ") and victim.name in problem.text
    assert session.current is None and not session.loading
    events.clear()
    assert not session.open_series(9999)
    assert [(p.title, p.text) for p in of_type(events, ev.Problem)] == [
        ("Series not found", "Series 9999 is no longer in the study index.")]
    session.open_series(good_id)
    qtbot.waitUntil(lambda: bool(of_type(events, ev.SeriesOpened)), timeout=20_000)
    (opened,) = of_type(events, ev.SeriesOpened)
    assert opened.series_id == good_id and opened.volume.shape[0] == 8
    assert session.shutdown()
    assert not session.io.is_running()
