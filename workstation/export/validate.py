"""Validation of written DICOM files with ``dciodvfy`` (dicom3tools), the reference IOD checker.

``dciodvfy`` prints its findings on stderr, one per line, each starting with
``Error -`` or ``Warning -``; other lines name the IOD and modules. We keep the
errors (an object that has any is not fit to send) and the warnings (worth
reading; some are about DICOMDIR fields that do not apply to exports).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

TOOL = "dciodvfy"
TIMEOUT_S = 120.0


@dataclass
class ValidationResult:
    """What ``dciodvfy`` said about one file (``available`` is False when the tool is not installed)."""

    path: Path
    available: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    iod: str = ""

    @property
    def ok(self) -> bool:
        """No errors (a missing validator counts as not validated, hence not ok)."""
        return self.available and not self.errors

    def summary(self) -> str:
        """One line: file, IOD, counts."""
        if not self.available:
            return f"{self.path.name}: not validated ({TOOL} not installed)"
        iod = self.iod or "unknown IOD"
        return f"{self.path.name}: {iod}: {len(self.errors)} errors, {len(self.warnings)} warnings"


def dciodvfy_path() -> str | None:
    """The ``dciodvfy`` executable on PATH, if any."""
    return shutil.which(TOOL)


def parse_output(text: str) -> tuple[list[str], list[str], str]:
    """(errors, warnings, IOD name) from dciodvfy's output."""
    errors, warnings, iod = [], [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Error"):
            errors.append(line)
        elif line.startswith("Warning"):
            warnings.append(line)
        elif line and not iod and " - " not in line:
            iod = line
    return errors, warnings, iod


def validate_file(path: str | Path) -> ValidationResult:
    """Run ``dciodvfy`` on a DICOM file and collect its errors and warnings."""
    target = Path(path)
    exe = dciodvfy_path()
    if exe is None:
        logger.info("%s not installed; %s not validated", TOOL, target.name)
        return ValidationResult(target, available=False)
    proc = subprocess.run([exe, str(target)], capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
                          errors="replace")
    errors, warnings, iod = parse_output(proc.stderr + "\n" + proc.stdout)
    result = ValidationResult(target, True, errors, warnings, iod)
    logger.info("%s", result.summary())
    for line in errors:
        logger.warning("%s: %s", target.name, line)
    return result
