"""What the benchmarks print about the machine they ran on, and where the shared real data lies."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: The shared real scanner data: ``$WORKSTATION_SHARED_DATA`` or ``../shared/data`` beside the repository
#: (the same rule as the tests' ``tests/requirements.py``).
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
