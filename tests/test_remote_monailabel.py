"""Remote inference on a real MONAI Label server: the same bundle gives the same labels remotely as locally.

The server is MONAI Label 0.8.5 in its own virtualenv (``scripts/monailabel_env.sh``),
started once for this module on 127.0.0.1 (``tests/monailabel_fixtures.py``),
serving a tiny UNet bundle built here and a bundle that fails on the server.
Tests that need no server (server down, bad settings, a label map on another grid)
run everywhere.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from inference.cancel import CancelledError, CancelToken
from inference.contract import AnalysisRequest
from inference.engine import Engine
from inference.remote import (
    RemoteConfigError,
    RemoteModels,
    RemoteModelUnknownError,
    RemoteNode,
    RemoteResultError,
    RemoteServerError,
    RemoteUnavailableError,
    parse_nodes,
)
from inference.remote.model import decode_labels, encode_nifti
from tests import bundle_factory as bf
from tests.dicom_factory import ct_series
from tests.gui_steps import import_and_open
from tests.monailabel_fixtures import BROKEN, MODEL, MonaiLabelServer, free_port
from workstation.cli import main
from workstation.qt.main_window import MainWindow
from workstation.services.remote_models import remote_models, remote_rows
from workstation.settings import SETTINGS_VERSION, config_dir, get_settings


@pytest.fixture(scope="module")
def models_dir(monailabel_models: Path) -> Path:
    return monailabel_models


@pytest.fixture(scope="module")
def server(monailabel: MonaiLabelServer) -> MonaiLabelServer:
    return monailabel


def _wait_idle(server: MonaiLabelServer) -> None:
    """Wait for the server to finish requests earlier tests dropped (it answers /info/ only between inferences)."""
    with urllib.request.urlopen(f"{server.url}/info/", timeout=120) as resp:
        resp.read()


def _engine(server: MonaiLabelServer, **node: object) -> Engine:
    return Engine(None, remote=RemoteModels([RemoteNode("lab", server.url, **node)]))  # type: ignore[arg-type]


@pytest.mark.parametrize("make_volume", [bf.axial_volume, bf.oblique_sagittal_volume, bf.coronal_flipped_volume])
def test_remote_labels_equal_the_local_run_voxel_for_voxel(
    server: MonaiLabelServer, models_dir: Path, make_volume: object
) -> None:
    volume = make_volume()  # type: ignore[operator]
    local = Engine(models_dir).run(AnalysisRequest(volume, f"bundle.{MODEL}", "cpu"))
    stages: list[str] = []
    remote = _engine(server).run(AnalysisRequest(volume, f"remote:lab/{MODEL}"), progress=lambda f, s: stages.append(s))
    assert remote.labelmap.shape == volume.shape
    assert len(np.unique(local.labelmap)) == 3  # the comparison is not between two empty maps
    np.testing.assert_array_equal(remote.labelmap, local.labelmap)
    assert [(lab.value, lab.name) for lab in remote.label_table] == [(1, "liver"), (2, "spleen")]
    assert remote.provenance.model_id == f"remote:lab/{MODEL}"
    assert remote.provenance.device == "remote:lab" and server.url in remote.provenance.device_name
    state = r"lab: (connecting|uploading.*|waiting for the server|receiving the result), \d+ s"
    assert any(re.fullmatch(state, s) for s in stages), stages  # the exchange's state and the time elapsed
    # measured like a local result: the same findings from the same voxels
    assert remote.findings.to_dict()["measurements"] == local.findings.to_dict()["measurements"]


def test_only_voxels_and_geometry_travel() -> None:
    volume = bf.axial_volume()
    payload, affine, shape = encode_nifti(volume)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(payload))
    assert bytes(image.header["descrip"]).strip(b"\0") == b""
    assert bytes(image.header["db_name"]).strip(b"\0") == b""
    assert image.header.extensions == []
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)
    # the voxels are the volume's, in RAS order: the flipped axes put the bright corner back where it was
    assert sorted(np.asarray(image.dataobj).shape) == sorted(shape) == sorted(volume.shape)
    assert np.asarray(image.dataobj).sum() == volume.array.sum()


def test_models_are_listed_next_to_local_ones(
    server: MonaiLabelServer, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_file = config_dir() / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        json.dumps(
            {"version": SETTINGS_VERSION, "models_dir": str(models_dir), "inference": {"remote": {"lab": server.url}}}
        )
    )
    get_settings.cache_clear()
    _wait_idle(server)
    rows = remote_rows(remote_models(get_settings()))
    ids = {r["id"]: r for r in rows}
    assert set(ids) == {f"remote:lab/{MODEL}", f"remote:lab/{BROKEN}"}
    assert ids[f"remote:lab/{MODEL}"]["labels"] == ["liver", "spleen"]
    assert ids[f"remote:lab/{MODEL}"]["problem"] is None
    assert main(["models", "list", "--json"]) == 0
    listed = [r["id"] for r in json.loads(capsys.readouterr().out)]
    assert listed.index("builtin.ct") < listed.index(f"bundle.{MODEL}") < listed.index(f"remote:lab/{MODEL}")


def test_analyze_on_the_command_line_remote_equals_local(
    server: MonaiLabelServer, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "series"
    study.mkdir()
    ct_series(study, n=12, size=32, spacing=2.5)
    settings_file = config_dir() / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        json.dumps(
            {
                "version": SETTINGS_VERSION,
                "models_dir": str(models_dir),
                "inference": {"remote": {"lab": {"url": server.url, "timeout_s": 120}}},
            }
        )
    )
    get_settings.cache_clear()
    outs = {}
    for name, model in (("local", f"bundle.{MODEL}"), ("remote", f"remote:lab/{MODEL}")):
        outs[name] = tmp_path / name
        code = main(["analyze", str(study), "--model", model, "--device", "cpu", "--out", str(outs[name])])
        captured = capsys.readouterr()
        assert code == 0, captured.err
    local = nib.load(str(outs["local"] / "labels.nii.gz"))
    remote = nib.load(str(outs["remote"] / "labels.nii.gz"))
    np.testing.assert_array_equal(np.asarray(remote.dataobj), np.asarray(local.dataobj))
    np.testing.assert_array_equal(remote.affine, local.affine)
    findings = json.loads((outs["remote"] / "findings.json").read_text())
    assert findings["provenance"]["model_id"] == f"remote:lab/{MODEL}"
    assert findings["provenance"]["device"] == "remote:lab"


def test_unknown_model_names_what_the_server_offers(server: MonaiLabelServer) -> None:
    with pytest.raises(RemoteModelUnknownError) as info:
        _engine(server).run(AnalysisRequest(bf.axial_volume(), "remote:lab/no_such_model"))
    text = str(info.value)
    assert "no model 'no_such_model'" in text and MODEL in text and server.url in text


def test_server_error_is_reported_with_the_server_s_reason(server: MonaiLabelServer) -> None:
    with pytest.raises(RemoteServerError) as info:
        _engine(server).run(AnalysisRequest(bf.axial_volume(), f"remote:lab/{BROKEN}"))
    assert "HTTP 500" in str(info.value)
    # the node still serves its other model afterwards
    result = _engine(server).run(AnalysisRequest(bf.axial_volume(), f"remote:lab/{MODEL}"))
    assert result.labelmap.shape == bf.axial_volume().shape


def test_cancel_drops_the_request_at_once(server: MonaiLabelServer) -> None:
    big = bf.axial_volume(shape=(64, 128, 128))  # seconds of work on the server
    token = CancelToken()
    cancelled_at: list[float] = []

    def progress(fraction: float, stage: str) -> None:
        if "waiting for the server" in stage and not cancelled_at:
            cancelled_at.append(time.monotonic())
            token.cancel()

    with pytest.raises(CancelledError):
        _engine(server).run(AnalysisRequest(big, f"remote:lab/{MODEL}"), progress=progress, cancel=token)
    assert cancelled_at, "the request never reached the server"
    assert time.monotonic() - cancelled_at[0] < 1.0  # not after the server's answer
    # the server is still usable, and a new request gets its own answer
    result = _engine(server).run(AnalysisRequest(bf.axial_volume(), f"remote:lab/{MODEL}"))
    assert result.labelmap.shape == bf.axial_volume().shape


def test_a_time_out_is_an_error_not_a_hang() -> None:
    """A server that takes the upload and then never answers (a busy GPU box): an error after the time-out.

    A stand-in server, since how long the real one takes depends on the machine: this one answers
    ``/info/`` like MONAI Label and holds every inference request for 30 s.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from inference.remote import RemoteTimeoutError

    release = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"models": {MODEL: {"labels": {"organ": 1}}}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            release.wait(30)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        node = RemoteNode("lab", f"http://127.0.0.1:{httpd.server_address[1]}", timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(RemoteTimeoutError, match="did not answer within 1 s"):
            Engine(None, remote=RemoteModels([node])).run(  # type: ignore[arg-type]
                AnalysisRequest(bf.axial_volume(shape=(64, 128, 128)), f"remote:lab/{MODEL}"))
        assert time.monotonic() - start < 5.0
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


# --- no server needed -------------------------------------------------------------------------------


def test_server_down_is_a_clear_error_after_retries_with_back_off() -> None:
    port = free_port()  # nothing listens there
    node = RemoteNode("down", f"http://127.0.0.1:{port}", retries=2, backoff_s=0.2, connect_timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(RemoteUnavailableError) as info:
        Engine(None, remote=RemoteModels([node])).run(AnalysisRequest(bf.axial_volume(), "remote:down/x"))
    elapsed = time.monotonic() - start
    text = str(info.value)
    assert "cannot be reached (connection refused)" in text and "tried 3 time(s)" in text
    assert f"127.0.0.1:{port}" in text
    assert 0.6 <= elapsed < 5.0  # back-off 0.2 s then 0.4 s, no hang


def test_cancel_during_back_off_stops_the_retries() -> None:
    node = RemoteNode("down", f"http://127.0.0.1:{free_port()}", retries=10, backoff_s=5.0)
    token = CancelToken()
    threading.Timer(0.5, token.cancel).start()
    start = time.monotonic()
    with pytest.raises(CancelledError):
        Engine(None, remote=RemoteModels([node])).run(AnalysisRequest(bf.axial_volume(), "remote:down/x"), cancel=token)
    assert time.monotonic() - start < 2.0


def test_unconfigured_node_and_missing_token_are_refused_before_any_connection() -> None:
    engine = Engine(None, remote=RemoteModels([RemoteNode("lab", "http://127.0.0.1:9", token_env="NO_SUCH_TOKEN_VAR")]))
    with pytest.raises(RemoteConfigError, match="'elsewhere' is not configured"):
        engine.get("remote:elsewhere/model")
    with pytest.raises(RemoteConfigError, match="NO_SUCH_TOKEN_VAR is not set"):
        engine.run(AnalysisRequest(bf.axial_volume(), "remote:lab/model"))
    # without remote nodes a remote id is simply unknown, as any other
    with pytest.raises(Exception, match="unknown model 'remote:lab/model'"):
        Engine(None).get("remote:lab/model")


def test_bad_nodes_in_settings_are_dropped_and_the_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    nodes = parse_nodes(
        {
            "good": "http://gpu-box:8000/",
            "ftp": "ftp://x",
            "creds": "http://u:p@h:1",
            "slow": {"url": "https://h", "timeout_s": -1},
            "full": {"url": "https://h:9443/ml", "token_env": "ML_TOKEN", "retries": 4},
        }
    )
    assert [(n.name, n.url) for n in nodes] == [("good", "http://gpu-box:8000"), ("full", "https://h:9443/ml")]
    assert nodes[1].token_env == "ML_TOKEN" and nodes[1].retries == 4
    for name in ("ftp", "creds", "slow"):
        assert f"ignoring node '{name}'" in caplog.text


def test_a_label_map_on_another_grid_or_with_probabilities_is_refused() -> None:
    volume = bf.axial_volume()
    _payload, affine, shape = encode_nifti(volume)
    labels = np.zeros(shape, dtype=np.float32)
    shifted = affine.copy()
    shifted[:3, 3] += 0.5
    with pytest.raises(RemoteResultError, match="another grid"):
        decode_labels(nib.Nifti1Image(labels, shifted).to_bytes(), affine, shape, "test")
    with pytest.raises(RemoteResultError, match="shape"):
        decode_labels(nib.Nifti1Image(labels[:-1], affine).to_bytes(), affine, shape, "test")
    with pytest.raises(RemoteResultError, match="fractional"):
        decode_labels(nib.Nifti1Image(labels + 0.4, affine).to_bytes(), affine, shape, "test")
    with pytest.raises(RemoteResultError, match="not a NIfTI"):
        decode_labels(b"<html>gateway error</html>", affine, shape, "test")
    ok = decode_labels(gzip.compress(nib.Nifti1Image(labels + 2, affine).to_bytes()), affine, shape, "test")
    assert ok.dtype == np.uint8 and (ok == 2).all()


# --- the window ---------------------------------------------------------------------------------------


def _configure(server: MonaiLabelServer, models_dir: Path, nodes: dict[str, object]) -> None:
    settings_file = config_dir() / "settings.json"
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        json.dumps({"version": SETTINGS_VERSION, "models_dir": str(models_dir), "inference": {"remote": nodes}})
    )
    get_settings.cache_clear()
    _wait_idle(server)



def _pick(qtbot: QtBot, win: MainWindow, model: str) -> None:
    bar = win.analysis_bar
    qtbot.waitUntil(lambda: model in bar.model_ids(), timeout=30_000)
    bar.picker.setCurrentIndex(bar.model_ids().index(model))
    assert bar.current_model_id() == model


def test_the_window_runs_a_remote_model_from_its_picker(
    qtbot: QtBot, make_window: Callable[..., MainWindow], server: MonaiLabelServer, models_dir: Path, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    _configure(server, models_dir, {"lab": server.url, "down": {"url": down, "retries": 0}})
    ct_series(tmp_path / "series", n=12, size=32, spacing=2.5)
    win = make_window()
    series_id = import_and_open(qtbot, win, tmp_path / "series")
    _pick(qtbot, win, f"remote:lab/{MODEL}")
    # the node that is down is listed as unusable, saying why; the local models are still offered
    bar = win.analysis_bar
    assert "remote:down/*" in bar.model_ids() and "remote:down/*" not in bar.enabled_model_ids()
    assert {"builtin.ct", f"bundle.{MODEL}"} <= set(bar.enabled_model_ids())
    with qtbot.waitSignal(win.session.worker.finished, timeout=60_000):
        qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: win.browser.ai_status(series_id).value == "done", timeout=10_000)
    result = win.session.model.result(series_id)
    assert result.provenance.model_id == f"remote:lab/{MODEL}"
    assert result.labelmap.shape == win.viewer.volume().shape
    # a model failing on the server is a message in the bar; the series stays open and the result shown
    _pick(qtbot, win, f"remote:lab/{BROKEN}")
    with qtbot.waitSignal(win.session.worker.failed, timeout=60_000):
        qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    assert "HTTP 500" in bar.message_text
    assert win.viewer.volume() is not None and win.session.model.result(series_id) is result


def test_cancel_in_the_window_leaves_no_stale_result(
    qtbot: QtBot, make_window: Callable[..., MainWindow], server: MonaiLabelServer, models_dir: Path, tmp_path: Path
) -> None:
    _configure(server, models_dir, {"lab": server.url})
    folder = tmp_path / "big"
    ct_series(folder, n=60, size=128, spacing=2.0)
    win = make_window()
    series_id = import_and_open(qtbot, win, folder)
    _pick(qtbot, win, f"remote:lab/{MODEL}")
    bar = win.analysis_bar
    qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "waiting for the server" in bar.progress.format(), timeout=30_000)
    with qtbot.waitSignal(win.session.worker.cancelled, timeout=5_000):
        qtbot.mouseClick(bar.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.wait(3000)  # long enough for the server to have answered the dropped request
    assert win.browser.ai_status(series_id).value == "none"
    assert win.findings.row_count() == 0


def test_the_bearer_token_comes_from_the_named_variable_and_never_shows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain HTTP server standing in for an authenticating proxy: it sees the header, refuses a wrong token."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Bearer s3cret-token"
            body = json.dumps({"models": {}} if ok else {"detail": "Not authenticated"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        remote = RemoteModels([RemoteNode("lab", url, token_env="LAB_TOKEN")])
        monkeypatch.setenv("LAB_TOKEN", "s3cret-token")
        with pytest.raises(RemoteModelUnknownError):  # authenticated; the (empty) server has no such model
            Engine(None, remote=remote).run(AnalysisRequest(bf.axial_volume(), "remote:lab/x"))
        monkeypatch.setenv("LAB_TOKEN", "wrong-token")
        with pytest.raises(
            RemoteServerError, match="refused the request \\(HTTP 401: check its token variable LAB_TOKEN\\)"
        ) as info:
            Engine(None, remote=remote).run(AnalysisRequest(bf.axial_volume(), "remote:lab/x"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen == ["Bearer s3cret-token", "Bearer wrong-token"]
    assert "s3cret" not in str(info.value) and "wrong-token" not in str(info.value)
    assert "s3cret" not in caplog.text and "wrong-token" not in caplog.text


def test_only_configured_nodes_are_contacted(server: MonaiLabelServer, models_dir: Path) -> None:
    """Every socket connection made while listing models and analysing goes to the one configured node."""
    connects: list[object] = []
    watching = [False]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if watching[0] and event == "socket.connect":
            connects.append(args[1])

    sys.addaudithook(hook)  # hooks cannot be removed: it records only while ``watching``
    _wait_idle(server)
    watching[0] = True
    try:
        assert remote_rows(RemoteModels(())) == []  # none configured: nothing contacted
        assert connects == []
        remote = RemoteModels(parse_nodes({"lab": server.url}))
        remote_rows(remote)
        Engine(models_dir, remote=remote).run(AnalysisRequest(bf.axial_volume(), f"remote:lab/{MODEL}"))
    finally:
        watching[0] = False
    port = int(server.url.rsplit(":", 1)[1])
    assert connects and set(map(tuple, connects)) == {("127.0.0.1", port)}  # type: ignore[arg-type]
