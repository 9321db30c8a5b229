"""A real MONAI Label server for the remote-inference tests, started privately on 127.0.0.1.

The server runs from its own virtualenv (``scripts/monailabel_env.sh`` builds it,
cached under ``~/.cache/workstation-tests/monailabel-venv`` or ``MONAILABEL_VENV``):
MONAI Label 0.8.5 pins older MONAI and pydicom than the application's. Each
server gets a copy of the ``monaibundle`` app with the test's bundles in its
``model/`` folder, its own studies folder and its own home (MONAI Label writes a
cache there), and the options that keep it offline (``zoo_source github``,
``sam2 false``, ``skip_trainers true``). Without the virtualenv the tests are
``missing`` (they fail under ``CI=true``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.requirements import REPO, missing

logger = logging.getLogger(__name__)

ENV_FIX = (
    "bash scripts/monailabel_env.sh (a MONAI Label virtualenv, ~3 min and 3.7 GB; bash scripts/setup.sh test runs it)"
)
START_TIMEOUT_S = 120.0
MODEL = "tiny_seg"
BROKEN = "broken_on_server"


def venv_path() -> Path:
    """Where ``scripts/monailabel_env.sh`` builds the server's virtualenv."""
    env = os.environ.get("MONAILABEL_VENV")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "workstation-tests" / "monailabel-venv"


def require_venv() -> Path:
    """The server's virtualenv, ready (stamp written, app copied); ``missing`` otherwise."""
    venv = venv_path()
    if not (venv / ".monailabel-env-stamp").is_file() or not (venv / "apps" / "monaibundle").is_dir():
        missing(f"MONAI Label test server not installed in {venv}", ENV_FIX)
    return venv


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MonaiLabelServer:
    """A running server: its URL, its log, and the bundles it serves."""

    url: str
    log: Path
    models: tuple[str, ...]

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's output, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"MONAI Label exited with {proc.returncode} while starting:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/info/", timeout=2) as resp:
                json.loads(resp.read())
                return
        except (OSError, ValueError):
            time.sleep(0.5)
    raise RuntimeError(f"MONAI Label did not answer /info/ within {START_TIMEOUT_S:.0f} s")


@contextmanager
def monailabel_server(bundles: Sequence[Path], workdir: Path) -> Iterator[MonaiLabelServer]:
    """Serve ``bundles`` (Model Zoo folders) from a MONAI Label server on 127.0.0.1; stopped on exit."""
    venv = require_venv()
    app = workdir / "apps" / "monaibundle"
    shutil.copytree(venv / "apps" / "monaibundle", app)
    for bundle in bundles:
        shutil.copytree(bundle, app / "model" / bundle.name)
    studies, home = workdir / "studies", workdir / "home"
    studies.mkdir()
    home.mkdir()
    port = free_port()
    names = tuple(b.name for b in bundles)
    log = workdir / "monailabel.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(venv / "stub"),
        "HOME": str(home),
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env.pop("VIRTUAL_ENV", None)
    cmd = [
        str(venv / "bin" / "python"),
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app),
        "--studies",
        str(studies),
        "--conf",
        "models",
        ",".join(names),
        "--conf",
        "zoo_source",
        "github",
        "--conf",
        "sam2",
        "false",
        "--conf",
        "skip_trainers",
        "true",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(workdir), start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield MonaiLabelServer(url, log, names)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and anything it started (its own session's process group)."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


__all__ = ["REPO", "MonaiLabelServer", "free_port", "monailabel_server", "require_venv", "venv_path"]


def seg_bundle(models_dir: Path) -> Path:
    """A tiny UNet (random, seeded weights) whose preprocessing reorients to RAS and scales; argmax after."""
    from tests import bundle_factory as bf

    folder = bf.make_unet_bundle(models_dir, MODEL, roi=(16, 16, 16), sw_batch_size=2, seed=3)
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["preprocessing"]["transforms"] = [
        t for t in config["preprocessing"]["transforms"] if t["_target_"] != "Spacingd"
    ]
    path.write_text(json.dumps(config, indent=2))
    return folder


def broken_bundle(models_dir: Path) -> Path:
    """A bundle the server loads but whose preprocessing fails on every request (a key the data lacks)."""
    from tests import bundle_factory as bf

    folder = bf.make_unet_bundle(models_dir, BROKEN, roi=(16, 16, 16), seed=4)
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["preprocessing"]["transforms"].insert(
        2, {"_target_": "SpatialPadd", "keys": "no_such_key", "spatial_size": [8, 8, 8]}
    )
    path.write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="session")
def monailabel_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local models folder holding the tiny bundle the server also serves (the broken one is server-only)."""
    folder = tmp_path_factory.mktemp("models")
    seg_bundle(folder)
    return folder


@pytest.fixture(scope="session")
def monailabel(monailabel_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonaiLabelServer]:
    """One MONAI Label server for the whole run (each start costs tens of seconds), serving both bundles."""
    extra = tmp_path_factory.mktemp("server-only")
    with monailabel_server([monailabel_models / MODEL, broken_bundle(extra)],
                           tmp_path_factory.mktemp("monailabel")) as srv:
        yield srv
