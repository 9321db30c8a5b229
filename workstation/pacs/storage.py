"""Where received instances go, and which instances the index already holds.

Every received instance is written as ``<root>/<study>/<series>/<sop>.dcm``:
first to a ``.part`` file, then renamed, so a dropped transfer never leaves
half a file behind, and receiving the same instance again replaces the same
file instead of adding a copy. ``known_sop_uids`` is what makes a retrieve
resumable: instances the index holds (from any source) are not asked for again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from workstation.dicomio.sources import FileRef
from workstation.index import StudyIndex

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9.]{1,64}$")
Chunk = bytes | bytearray | memoryview
_IMPLEMENTATION_NAME = "RADWORKSTATION"


def _component(uid: str, fallback: str) -> str:
    """A UID as a folder or file name (digits and dots only; anything else hashed)."""
    uid = uid.strip().rstrip("\x00")
    if _UID.match(uid) and uid not in (".", ".."):
        return uid
    if not uid:
        return fallback
    return "x" + hashlib.sha1(uid.encode("utf-8", "replace")).hexdigest()[:20]


def instance_path(root: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """The file an instance is stored in under ``root``."""
    return (root / _component(study_uid, "unknown-study") / _component(series_uid, "unknown-series")
            / f"{_component(sop_uid, 'unknown-instance')}.dcm")


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UR", b"UC"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def file_header(sop_class_uid: str, sop_uid: str, transfer_syntax: str, source_ae: str = "") -> bytes:
    """Preamble, ``DICM`` and file meta information (PS3.10) for a data set received over the network.

    Built directly rather than with pydicom (which costs about a millisecond
    per instance): with the received data set bytes appended, it is the
    instance as a DICOM file.
    """
    body = b"".join((
        _element(2, 0x0001, b"OB", b"\x00\x01"),
        _element(2, 0x0002, b"UI", _text(sop_class_uid, b"\x00")),
        _element(2, 0x0003, b"UI", _text(sop_uid, b"\x00")),
        _element(2, 0x0010, b"UI", _text(transfer_syntax, b"\x00")),
        _element(2, 0x0012, b"UI", _text(PYDICOM_IMPLEMENTATION_UID, b"\x00")),
        _element(2, 0x0013, b"SH", _text(_IMPLEMENTATION_NAME, b" ")),
        *([_element(2, 0x0016, b"AE", _text(source_ae.strip()[:16], b" "))] if source_ae.strip() else []),
    ))
    return b"\x00" * 128 + b"DICM" + _element(2, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def received_file(event: Any, study_uid: str = "", series_uid: str = "") -> tuple[list[Chunk], str, str, str]:
    """A pynetdicom C-STORE event as file pieces (header + the data set as received, not copied or decoded).

    Returns ``(pieces, sop_uid, study_uid, series_uid)``; study and series UIDs
    are read from the data set only when not given.
    """
    request = event.request
    sop_uid = str(request.AffectedSOPInstanceUID or "")
    sender = event.assoc.remote.get("ae_title", "")  # the peer: the PACS in a C-GET, the pusher in a C-STORE
    header = file_header(str(request.AffectedSOPClassUID or ""), sop_uid, str(event.context.transfer_syntax),
                         str(sender or ""))
    body = request.DataSet.getbuffer()
    if not study_uid or not series_uid:
        head = dcmread(BytesIO(header + bytes(body)), stop_before_pixels=True,
                       specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
        study_uid = study_uid or str(head.get("StudyInstanceUID", ""))
        series_uid = series_uid or str(head.get("SeriesInstanceUID", ""))
    return [header, body], sop_uid, study_uid, series_uid


@dataclass
class StoreResult:
    """What a send (C-STORE or STOW-RS) did: SOP Instance UIDs stored, and files refused with the reason."""

    stored: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance written to disk."""

    path: Path
    sop_uid: str
    study_uid: str
    series_uid: str


class InstanceWriter:
    """Writes received instances atomically and remembers what it wrote (thread-safe).

    ``skip`` holds SOP Instance UIDs not to write again (already in the index):
    a peer that sends them anyway costs bandwidth, never a duplicate.
    """

    def __init__(self, root: Path, skip: Iterable[str] = (),
                 observer: Callable[[ReceivedInstance], None] | None = None) -> None:
        self.root = Path(root)
        self.skip = set(skip)
        self.observer = observer
        self.received: list[ReceivedInstance] = []
        self.skipped = 0
        self._lock = threading.Lock()

    @property
    def paths(self) -> list[Path]:
        """Files written so far."""
        with self._lock:
            return [r.path for r in self.received]

    def write(self, data: Chunk | Sequence[Chunk], sop_uid: str, study_uid: str, series_uid: str) -> Path | None:
        """Write one instance: ``data`` is a complete DICOM file (preamble and meta included), or its pieces."""
        pending = self.begin(sop_uid, study_uid, series_uid)
        if pending is None:
            return None
        try:
            for chunk in ([data] if isinstance(data, bytes | bytearray | memoryview) else data):
                pending.write(chunk)
        except BaseException:
            pending.discard()
            raise
        return pending.commit()

    def begin(self, sop_uid: str, study_uid: str, series_uid: str) -> PendingInstance | None:
        """Start writing an instance piece by piece (``None``: skipped, already here)."""
        if sop_uid and sop_uid in self.skip:
            with self._lock:
                self.skipped += 1
            return None
        path = instance_path(self.root, study_uid, series_uid, sop_uid)
        path.parent.mkdir(parents=True, exist_ok=True)
        return PendingInstance(self, path, ReceivedInstance(path, sop_uid, study_uid, series_uid))

    def _committed(self, item: ReceivedInstance) -> None:
        self.record(item)
        if self.observer is not None:
            self.observer(item)

    def record(self, item: ReceivedInstance) -> int:
        """Count an instance written elsewhere (e.g. by the listener during a C-MOVE); returns the count."""
        with self._lock:
            self.received.append(item)
            self.skip.add(item.sop_uid)
            return len(self.received)


class PendingInstance:
    """An instance being written to its ``.part`` file; ``commit`` renames it into place."""

    def __init__(self, writer: InstanceWriter, path: Path, item: ReceivedInstance) -> None:
        self.writer = writer
        self.path = path
        self.item = item
        self.part = path.with_name(f"{path.name}.{threading.get_ident()}.part")
        self._fh = self.part.open("wb")

    def write(self, chunk: Chunk) -> None:
        """Append bytes."""
        self._fh.write(chunk)

    def commit(self) -> Path:
        """Close and move into place; the instance counts as received."""
        self._fh.close()
        self.part.replace(self.path)
        self.writer._committed(self.item)
        return self.path

    def discard(self) -> None:
        """Close and delete the partial file."""
        self._fh.close()
        self.part.unlink(missing_ok=True)


def known_sop_uids(index: StudyIndex, study_uid: str) -> set[str]:
    """SOP Instance UIDs the index holds for a study (by StudyInstanceUID) whose files still exist.

    An instance whose file was deleted since it was indexed counts as missing,
    so a retrieve fetches it again.
    """
    found: set[str] = set()
    if not study_uid:
        return found
    study = index.study_by_uid(study_uid)
    if study is None:
        return found
    for row in index.series_of_study(study.id):
        found.update(h.sop_instance_uid for h in index.series_headers(row.id)
                     if h.sop_instance_uid and Path(FileRef.parse(h.ref).path).exists())
    return found
