"""Can the window open here? Checked before any Qt import, so the user gets a useful message.

Without this, ``workstation gui`` on a Linux machine with no display, or with one but without the
system libraries Qt's X11 (xcb) platform plugin loads, ends in a Qt abort (exit 134) whose text
("xcb-cursor0 is needed ... reinstalling may fix this") names the wrong library and the wrong cure.
The check is cheap (environment variables, then ``dlopen`` of a few library names), so it runs on
every GUI launch. No Qt import here: this module must work precisely when Qt cannot.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

#: Qt platforms that need no display server (drawing off screen, to a VNC client or a framebuffer).
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "minimalegl", "vnc", "eglfs", "linuxfb",
                                "vkkhrdisplay"})

#: System libraries Qt 6's xcb platform plugin (and QtGui under it) loads, with the Debian/Ubuntu
#: package of each. PySide6 wheels ship Qt's own libraries, not these. Kept in step with
#: WINDOW_PACKAGES in scripts/setup.sh.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}

#: Where a local X server listens (``/tmp/.X11-unix/X0`` for display ``:0``).
X11_SOCKET_DIR = "/tmp/.X11-unix"

HEADLESS_HELP = (
    "  - to see the window, run it inside a desktop session (or over ssh -X / a VNC desktop)\n"
    "  - to run the window without a screen: QT_QPA_PLATFORM=offscreen workstation ...\n"
    "  - the same work without a window: 'workstation demo --no-gui', "
    "'workstation analyze SERIES --out DIR', 'workstation report STUDY --out DIR'"
)


def _platform_names() -> list[str]:
    """The platforms asked for in QT_QPA_PLATFORM (``name[:options]``, ``;``-separated fallbacks)."""
    value = os.environ.get("QT_QPA_PLATFORM", "")
    return [part.split(":", 1)[0].strip().lower() for part in value.split(";") if part.strip()]


def _bundled_dirs() -> list[Path]:
    """Folders that may carry the libraries besides the system's: PySide6's Qt/lib, a frozen bundle."""
    dirs: list[Path] = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        dirs.append(Path(frozen))
    spec = importlib.util.find_spec("PySide6")
    for location in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(Path(location) / "Qt" / "lib")
    return dirs


def _local_x_socket(display: str) -> Path | None:
    """The Unix socket of a local X display (``:N``, ``unix:N``, ``:N.S``); ``None`` for a remote one."""
    match = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display.strip())
    return Path(X11_SOCKET_DIR) / f"X{match.group(1)}" if match else None


def missing_libraries(names: dict[str, str] = XCB_LIBRARIES) -> list[str]:
    """Library names the dynamic loader cannot find (``dlopen``), so Qt's plugin would fail to load."""
    extra = _bundled_dirs()
    missing = []
    for soname in names:
        try:
            ctypes.CDLL(soname)
        except OSError:
            if not any((d / soname).exists() for d in extra):
                missing.append(soname)
    return missing


def display_problem() -> str | None:
    """Why the window cannot open here, with what to do instead; ``None`` when it can (or we cannot tell).

    Only Linux is checked (macOS and Windows always have their platform). ``WORKSTATION_NO_DISPLAY_CHECK=1``
    skips the check, for a set-up it gets wrong.
    """
    if not sys.platform.startswith("linux") or os.environ.get("WORKSTATION_NO_DISPLAY_CHECK") == "1":
        return None
    names = _platform_names()
    if any(n in HEADLESS_PLATFORMS for n in names):
        return None
    x11, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if not x11 and not wayland:
        return ("no display found: DISPLAY and WAYLAND_DISPLAY are not set, so the window cannot open.\n"
                + HEADLESS_HELP)
    if wayland and (not names or "wayland" in names):
        return None  # a Wayland session: Qt picks its wayland platform
    if names and "xcb" not in names:
        if "wayland" in names:
            return ("no Wayland display found (QT_QPA_PLATFORM asks for wayland but WAYLAND_DISPLAY is not "
                    "set), so the window cannot open.\n" + HEADLESS_HELP)
        return None  # a platform we do not know: let Qt speak for it
    if not x11:
        return ("no X11 display found (QT_QPA_PLATFORM asks for xcb but DISPLAY is not set), so the window "
                "cannot open.\n" + HEADLESS_HELP)
    socket = _local_x_socket(x11)
    if socket is not None and not socket.exists():
        return (f"cannot reach the X display {x11}: no X server is listening ({socket} does not exist), so the "
                "window cannot open.\n" + HEADLESS_HELP)
    missing = missing_libraries()
    if not missing:
        return None
    packages = " ".join(sorted({XCB_LIBRARIES[m] for m in missing}))
    logger.debug("xcb libraries not found: %s", missing)
    return (f"the window cannot open on display {x11}: Qt's X11 (xcb) platform needs system libraries that "
            f"are missing: {', '.join(missing)}.\n"
            f"  - install them: sudo apt-get install {packages}   (or: bash scripts/setup.sh run)\n"
            + HEADLESS_HELP)
