"""The window starts fast: nothing on the GUI path imports torch, MONAI or transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.requirements import SYSTEM_TOOLS_FIX, requires_program

HEAVY = ("torch", "monai", "transformers")


def test_gui_and_engine_contract_import_no_ai_stack() -> None:
    code = (
        "import sys, inference, workstation.cli, workstation.qt.app, workstation.index, workstation.services;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@requires_program("xvfb-run", SYSTEM_TOOLS_FIX)
def test_demo_opens_a_real_window_under_xvfb_and_quits(isolated_settings: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["WORKSTATION_QUIT_AFTER"] = "2"
    exe = Path(sys.executable).with_name("workstation")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "workstation"]
    proc = subprocess.run(["xvfb-run", "-a", *cmd, "demo"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "CT CHEST WITHOUT CONTRAST" in proc.stdout
    assert "120 inst" in proc.stdout
