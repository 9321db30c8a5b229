"""Writing export files safely: never onto a source file, never a half-written file left behind.

Every export goes through ``safe_target`` (refuses a path that is one of the
source files) and is written to a temporary file beside the target, then
renamed over it, so a reader (or a PACS watcher) never sees a partial file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from workstation.export.sources import ExportError

logger = logging.getLogger(__name__)

APPLICATION = "radiology-workstation"
MODEL_NAME = "Radiology AI Workstation"
DEVICE_SERIAL = "RWS-0"
SEG_SERIES_NUMBER = 9001
MEASUREMENT_SR_SERIES_NUMBER = 9002
REPORT_SR_SERIES_NUMBER = 9003


def software_version() -> str:
    """The application's version, written into every object we create."""
    from workstation import __version__

    return __version__


def safe_target(path: str | Path, sources: Iterable[str | Path] = ()) -> Path:
    """``path`` as an absolute path, refusing any that is one of ``sources`` (or a zip holding them)."""
    out = Path(path).expanduser().absolute()
    protected = {Path(str(s).split("::", 1)[0]).expanduser().absolute() for s in sources}
    if out in protected or (out.exists() and any(out.samefile(p) for p in protected if p.exists())):
        raise ExportError(f"{out}: refusing to overwrite a source file")
    return out


def write_atomic(path: Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` for a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        tmp.replace(path)  # os.replace: atomic on POSIX and Windows
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def save_dataset(ds: object, path: Path, sources: Iterable[str | Path] = ()) -> Path:
    """Save a pydicom/highdicom dataset as a DICOM file (with preamble and file meta) at ``path``."""
    target = safe_target(path, sources)
    # UTF-8: report text from a language model, names and descriptions from any source charset all fit;
    # pydicom decoded the sources' strings, so re-encoding them as UTF-8 loses nothing
    ds.SpecificCharacterSet = "ISO_IR 192"  # type: ignore[attr-defined]

    def write(tmp: Path) -> None:
        ds.save_as(tmp, enforce_file_format=True)  # type: ignore[attr-defined]

    write_atomic(target, write)
    logger.info("wrote %s", target.name)
    return target
