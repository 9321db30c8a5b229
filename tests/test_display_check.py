"""``workstation gui`` without a usable display says so and exits 2 instead of Qt's abort (exit 134)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workstation import displaycheck
from workstation.displaycheck import display_problem

DISPLAY_VARS = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "WORKSTATION_NO_DISPLAY_CHECK")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DISPLAY_VARS}
    env["WORKSTATION_CONFIG_DIR"] = str(tmp_path / "config")
    env["WORKSTATION_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check is for Linux display servers")
@pytest.mark.parametrize("command", [["gui"], [], ["demo"]])
def test_gui_without_display_explains_and_exits_2(tmp_path: Path, command: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "workstation", *command], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "no display found" in proc.stderr
    assert "QT_QPA_PLATFORM=offscreen" in proc.stderr
    assert "workstation demo --no-gui" in proc.stderr and "workstation analyze" in proc.stderr
    assert "xcb-cursor0" not in proc.stderr and "Reinstalling" not in proc.stderr
    assert not (tmp_path / "data" / "demo").exists(), "the demo must not be built when no window can open"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No display variables; a fake X socket folder where display :0 is listening."""
    monkeypatch.setattr(sys, "platform", "linux")
    for name in DISPLAY_VARS:
        monkeypatch.delenv(name, raising=False)
    sockets = tmp_path / "x11-unix"
    sockets.mkdir()
    (sockets / "X0").touch()
    monkeypatch.setattr(displaycheck, "X11_SOCKET_DIR", str(sockets))
    return monkeypatch


def test_local_display_without_x_server(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setattr(displaycheck, "missing_libraries", lambda: [])
    clean_env.setenv("DISPLAY", ":5")
    assert "no X server is listening" in (display_problem() or "")
    clean_env.setenv("DISPLAY", "remotehost:10.0")  # remote (ssh -X): nothing local to check
    assert display_problem() is None


@pytest.mark.parametrize("platform", ["offscreen", "minimal", "vnc:size=800x600", "wayland;offscreen"])
def test_headless_platforms_need_no_display(clean_env: pytest.MonkeyPatch, platform: str) -> None:
    clean_env.setenv("QT_QPA_PLATFORM", platform)
    assert display_problem() is None


def test_missing_xcb_libraries_are_named_with_their_packages(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISPLAY", ":0")
    fake = {"libdoes-not-exist-xcb.so.9": "libdoes-not-exist9", "libc.so.6": "libc6"}
    clean_env.setattr(displaycheck, "XCB_LIBRARIES", fake)
    clean_env.setattr(displaycheck.missing_libraries, "__defaults__", (fake,))
    problem = display_problem()
    assert problem is not None
    assert "libdoes-not-exist-xcb.so.9" in problem and "apt-get install libdoes-not-exist9" in problem
    assert "libc.so.6" not in problem
    assert "QT_QPA_PLATFORM=offscreen" in problem


def test_display_with_libraries_present_is_fine(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISPLAY", ":0")
    clean_env.setattr(displaycheck, "missing_libraries", lambda: [])
    assert display_problem() is None


def test_wayland_session_and_wayland_without_display(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert display_problem() is None
    clean_env.delenv("WAYLAND_DISPLAY")
    clean_env.setenv("DISPLAY", ":0")
    clean_env.setenv("QT_QPA_PLATFORM", "wayland")
    assert "no Wayland display" in (display_problem() or "")
    clean_env.setenv("QT_QPA_PLATFORM", "xcb")
    clean_env.delenv("DISPLAY")
    clean_env.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert "no X11 display" in (display_problem() or "")


def test_check_can_be_turned_off(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WORKSTATION_NO_DISPLAY_CHECK", "1")
    assert display_problem() is None
