"""Where DICOM files come from: folders, zips, DICOMDIRs and single files.

A file is referenced in place as a ``FileRef``: a path on disk, plus the member
name when it lives inside a zip. Nothing is extracted, moved or modified.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

ZIP_SEPARATOR = "::"


@dataclass(frozen=True, order=True)
class FileRef:
    """One file to read: a path, or a member of the zip at ``path``."""

    path: str
    member: str = ""

    def __str__(self) -> str:
        return f"{self.path}{ZIP_SEPARATOR}{self.member}" if self.member else self.path

    @classmethod
    def parse(cls, text: str) -> FileRef:
        """Inverse of ``str()``."""
        if ZIP_SEPARATOR in text:
            path, member = text.split(ZIP_SEPARATOR, 1)
            return cls(path, member)
        return cls(text)

    def open(self) -> BinaryIO:
        """A binary stream of the file's bytes (a zip member is read into memory)."""
        if not self.member:
            return Path(self.path).open("rb")
        with zipfile.ZipFile(self.path) as zf:
            return io.BytesIO(zf.read(self.member))


@dataclass(frozen=True)
class Skipped:
    """A path that was not read, and why."""

    ref: FileRef
    reason: str


def _is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def dicomdir_references(path: Path) -> list[FileRef]:
    """The files a DICOMDIR's records point to (only those that exist)."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    base = path.parent
    refs: list[FileRef] = []
    for rec in ds.get("DirectoryRecordSequence", []):
        file_id = rec.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        candidate = base.joinpath(*parts)
        if not candidate.is_file():
            # CDs written on Windows often differ in case from the record.
            lowered = base.joinpath(*[p.lower() for p in parts])
            candidate = lowered if lowered.is_file() else candidate
        if candidate.is_file():
            refs.append(FileRef(str(candidate)))
        else:
            logger.warning("DICOMDIR %s names a missing file %s", path, "/".join(parts))
    return refs


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[FileRef], list[Skipped]]:
    """Every file to read under ``paths`` (recursively), plus what was skipped.

    DICOMDIR files are not read as images: the files they reference are added
    instead (a folder walk finds those anyway; duplicates are removed).
    """
    refs: dict[FileRef, None] = {}
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            candidates: Iterable[Path] = _walk(path)
        elif path.is_file():
            candidates = [path]
        else:
            skipped.append(Skipped(FileRef(str(path)), "no such file or folder"))
            continue
        for file in candidates:
            _add_file(file, refs, skipped)
    return list(refs), skipped


def _add_file(file: Path, refs: dict[FileRef, None], skipped: list[Skipped]) -> None:
    if _is_dicomdir(file):
        try:
            for ref in dicomdir_references(file):
                refs.setdefault(ref, None)
        except Exception as exc:
            skipped.append(Skipped(FileRef(str(file)), f"unreadable DICOMDIR: {exc}"))
            return
        skipped.append(Skipped(FileRef(str(file)), "DICOMDIR (media index; its files were imported)"))
        return
    if file.suffix.lower() == ".zip" and zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as zf:
                for info in zf.infolist():
                    if not info.is_dir() and not Path(info.filename).name.startswith("."):
                        refs.setdefault(FileRef(str(file), info.filename), None)
        except (OSError, zipfile.BadZipFile) as exc:
            skipped.append(Skipped(FileRef(str(file)), f"unreadable zip: {exc}"))
        return
    refs.setdefault(FileRef(str(file)), None)
