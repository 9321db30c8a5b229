"""Where DICOM files come from: folders, zips, DICOMDIRs and single files.

A file is referenced in place as a ``FileRef``: a path on disk, plus the member
name when it lives inside a zip. Nothing is extracted, moved or modified.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from workstation.dicomio.guards import GuardedReader, ImportLimits, head_problem

logger = logging.getLogger(__name__)

ZIP_SEPARATOR = "::"
UNSAFE_MEMBER = "unsafe name in the zip (absolute, or climbing out with '..'): not read"


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
        """A binary stream of the file's bytes (a zip member is decompressed as it is read)."""
        return self.open_sized()[0]

    def open_sized(self) -> tuple[BinaryIO, int]:
        """The stream and the file's size (for a zip member, its uncompressed size from the archive).

        A member is never read whole into memory: its stream inflates only the
        bytes asked for, so reading a header costs the header, not the member.
        Raises ``OSError`` (missing file) or ``zipfile.BadZipFile``/``KeyError``/
        ``NotImplementedError``/``RuntimeError`` (broken, unknown, unsupported or
        encrypted member).
        """
        if not self.member:
            fp = Path(self.path).open("rb")  # noqa: SIM115 - the caller owns and closes the stream
            return fp, os.fstat(fp.fileno()).st_size
        with zipfile.ZipFile(self.path) as zf:  # the member stream keeps the archive open until closed
            info = zf.getinfo(self.member)
            return cast(BinaryIO, zf.open(info)), info.file_size


@dataclass(frozen=True)
class Skipped:
    """A path that was not read, and why."""

    ref: FileRef
    reason: str


def unsafe_member_name(name: str) -> bool:
    """True for zip member names that would point outside the archive if extracted ("../x", "/etc/x", "C:x").

    Members are never extracted, but such names are a sign of a hostile archive
    and would escape any folder a later export or copy built from them.
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":")


def _is_dicomdir(path: Path) -> bool:
    return path.name.upper() == "DICOMDIR"


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def path_problem(path: str | Path) -> str:
    """Why ``path`` (which is neither a file nor a folder) cannot be read, in words.

    ``Path.exists`` says False for a symbolic link loop, a dangling link and a
    forbidden folder alike; the user needs to know which.
    """
    import errno

    p = Path(path)
    try:
        p.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if p.is_symlink():
            return f"broken symbolic link (it points to {p.readlink()}, which does not exist)"
        return "no such file or folder"
    return "not a regular file or folder"


def dicomdir_references(path: Path, limits: ImportLimits | None = None) -> list[FileRef]:
    """The files a DICOMDIR's records point to (only those that exist)."""
    return dicomdir_contents(path, limits)[0]


def dicomdir_contents(path: Path, limits: ImportLimits | None = None) -> tuple[list[FileRef], list[str]]:
    """(the files a DICOMDIR's records point to that exist, the referenced file IDs that are missing).

    Read through the import guards (byte cap, time budget): a file named
    DICOMDIR is as untrusted as any other.
    """
    import pydicom

    limits = limits or ImportLimits()
    size = path.stat().st_size
    with path.open("rb") as raw:
        fp = GuardedReader(raw, str(path), size, limits)
        problem = head_problem(fp.prefix(4096), size)
        if problem:
            raise ValueError(problem)
        fp.seek(0)
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    base = path.parent
    refs: list[FileRef] = []
    missing: list[str] = []
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
            missing.append("/".join(parts))
            logger.warning("DICOMDIR %s names a missing file %s", path, "/".join(parts))
    return refs, missing


def _dicomdir_reason(found: int, missing: list[str]) -> str:
    """What became of a DICOMDIR's references: read in full, partly (which are missing), or not at all."""
    if not missing:
        return f"DICOMDIR (media index; the {found} file(s) it lists were read)"
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    if not found:
        return f"DICOMDIR (media index): none of the {len(missing)} file(s) it lists exist (missing: {shown})"
    return (f"DICOMDIR (media index): {len(missing)} of the {found + len(missing)} file(s) it lists are missing "
            f"({shown}); the {found} present were read")


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
            skipped.append(Skipped(FileRef(str(path)), path_problem(path)))
            continue
        for file in candidates:
            _add_file(file, refs, skipped)
    return list(refs), skipped


def _add_file(file: Path, refs: dict[FileRef, None], skipped: list[Skipped]) -> None:
    if _is_dicomdir(file):
        try:
            found, missing = dicomdir_contents(file)
        except Exception as exc:
            skipped.append(Skipped(FileRef(str(file)), f"unreadable DICOMDIR: {exc}"))
            return
        for ref in found:
            refs.setdefault(ref, None)
        skipped.append(Skipped(FileRef(str(file)), _dicomdir_reason(len(found), missing)))
        return
    if file.suffix.lower() == ".zip" and zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as zf:
                for info in zf.infolist():
                    if info.is_dir() or Path(info.filename).name.startswith("."):
                        continue
                    if unsafe_member_name(info.filename):
                        skipped.append(Skipped(FileRef(str(file), info.filename), UNSAFE_MEMBER))
                        continue
                    refs.setdefault(FileRef(str(file), info.filename), None)
        except (OSError, zipfile.BadZipFile) as exc:
            skipped.append(Skipped(FileRef(str(file)), f"unreadable zip: {exc}"))
        return
    refs.setdefault(FileRef(str(file)), None)
