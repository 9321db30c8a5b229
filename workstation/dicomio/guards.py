"""Guards that keep hostile or broken files from stalling an import.

Importing reads headers only, so its cost must follow the size of the
headers, never the size of the file: a zero-filled 64 MB ``.dcm`` or a zip
member that inflates to gigabytes must be turned away at once, with a reason,
while the rest of the folder imports. The guards are

- ``head_problem``: what cannot be DICOM is rejected from its first bytes (no
  ``DICM`` marker and no plausible first element, zero-filled heads);
- ``GuardedReader``: every read before the pixel data counts against a byte
  cap and a wall-clock budget per file (pydicom reads element by element
  through it, so even its slow paths stop in time);
- ``fragments_problem`` and ``pixel_size_problem``: encapsulated pixel data
  must end inside the file with its sequence delimiter, and the declared image
  size must be plausible, so a cut-short or lying file is rejected at import
  instead of failing every later load of its series.

The limits come from the settings (``ImportLimits.from_settings``).
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from inference.errors import UnreadableFileError

if TYPE_CHECKING:
    from workstation.quick_settings import PlainSettings
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
UNDEFINED = 0xFFFFFFFF
ITEM, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
ZERO_PROBE = 4096  # a head this long that is all zeros is no DICOM file
# Video transfer syntaxes (MPEG-2, MPEG-4, HEVC) hold many frames in one stream of fragments.
VIDEO_SYNTAX_PREFIX = "1.2.840.10008.1.2.4.10"


@dataclass(frozen=True)
class ImportLimits:
    """How much one file may cost to import (picklable: worker processes get a copy)."""

    max_header_bytes: int = 64 * MIB
    max_member_bytes: int = 1024 * MIB
    max_decoded_bytes: int = 4096 * MIB
    file_budget_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings | PlainSettings) -> ImportLimits:
        """The limits configured in ``settings`` (``import_*`` fields)."""
        return cls(max_header_bytes=settings.import_max_header_mb * MIB,
                   max_member_bytes=settings.import_max_zip_member_mb * MIB,
                   max_decoded_bytes=settings.import_max_decoded_mb * MIB,
                   file_budget_s=settings.import_file_budget_s)


class LimitExceededError(UnreadableFileError):
    """A file needed more bytes or more time than the import allows for one file."""


def _mb(n: int) -> str:
    return f"{n / MIB:,.0f} MB"


class GuardedReader:
    """A read-only stream over one file that enforces the header byte cap and the time budget.

    Reads never go past the file's known size (so a declared length of 4 GB
    in a 1 kB file allocates nothing), and seeks and reads check the deadline.
    """

    def __init__(self, raw: BinaryIO, ref: str, size: int, limits: ImportLimits) -> None:
        self.raw = raw
        self.ref = ref
        self.size = size
        self.limits = limits
        self.deadline = time.monotonic() + limits.file_budget_s
        self.consumed = 0

    def check_time(self) -> None:
        """Raise ``LimitExceededError`` once this file's time budget is spent."""
        if time.monotonic() > self.deadline:
            raise LimitExceededError(self.ref, f"gave up after {self.limits.file_budget_s:g} s reading the header "
                                               "(time budget per file: setting import_file_budget_s)")

    def _over_cap(self) -> LimitExceededError:
        return LimitExceededError(self.ref, f"more than {_mb(self.limits.max_header_bytes)} of header before the "
                                            "pixel data (limit: setting import_max_header_mb)")

    def prefix(self, n: int) -> bytes:
        """The file's first ``n`` bytes, at most the byte cap (the fast scanner's view)."""
        self.check_time()
        self.raw.seek(0)
        return self.raw.read(max(0, min(n, self.size, self.limits.max_header_bytes)))

    def reset_count(self) -> None:
        """Start counting header bytes afresh (before a second parser reads the file)."""
        self.consumed = 0

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n`` is negative), within the byte cap."""
        self.check_time()
        left = max(self.size - self.raw.tell(), 0)
        n = left if n is None or n < 0 else min(n, left)
        if self.consumed + n > self.limits.max_header_bytes:
            raise self._over_cap()
        data = self.raw.read(n)
        self.consumed += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move within the file."""
        self.check_time()
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        """The current position."""
        return self.raw.tell()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable (zip member streams are too, by decompressing)."""
        return True

    def close(self) -> None:
        """Close the underlying stream."""
        self.raw.close()

    def __enter__(self) -> GuardedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plausible_element(head: bytes, size: int) -> bool:
    """True if ``head`` starts with something that could be a data element (either byte order)."""
    if len(head) < 8:
        return False
    for endian in "<>":
        group, _elem = struct.unpack_from(endian + "HH", head)
        if group < 0x0002 or group > 0x7FE0 or group % 2:
            continue
        vr = head[4:6]
        if vr.isalpha() and vr.isupper():
            return True  # explicit VR
        (length,) = struct.unpack_from(endian + "I", head, 4)
        if length == UNDEFINED or length <= size - 8:
            return True  # implicit VR with a length that fits the file
    return False


def _dataset_start(head: bytes) -> int | None:
    """Where the data set begins, from the file meta group length (None when it is not given)."""
    if head[132:138] != b"\x02\x00\x00\x00UL" or len(head) < 144:
        return None
    length: int = struct.unpack_from("<I", head, 140)[0]
    return 144 + length


def head_problem(head: bytes, size: int) -> str:
    """Why a file starting with ``head`` cannot be DICOM; ``''`` when it may be.

    Costs nothing: it looks at the first few kilobytes only, so a zero-filled or
    random file of any size is turned away before a parser walks it.
    """
    if head[128:132] == b"DICM":
        after = head[132:140]
        if len(after) < 8:
            return "file truncated: it ends just after its DICM marker"
        if not any(after):
            return "zero-filled after the DICM marker (no file meta information): not a usable DICOM file"
        start = _dataset_start(head)
        if start is not None and start < len(head):
            body = head[start:start + ZERO_PROBE]
            if not any(body):
                return "zero-filled where the data set should begin: not a usable DICOM file"
        return ""
    probe = head[:ZERO_PROBE]
    if not any(probe):
        return f"not a DICOM file: the first {len(probe)} bytes are all zero (zero-filled file)"
    if _plausible_element(head, size):
        return ""
    return "not a DICOM file"  # no DICM marker at byte 128, and it does not start with a data element


def fragments_problem(fp: GuardedReader, offset: int, frames: int, transfer_syntax: str) -> str:
    """Check encapsulated pixel data starting at ``offset`` (the first item); ``''`` when whole.

    Every item must end inside the file, the sequence delimiter must be present,
    and (except for video syntaxes) there must be at least one fragment a frame.
    Only item headers are read: the fragments themselves are skipped.
    """
    pos, items = offset, 0
    while True:
        fp.check_time()
        fp.seek(pos)
        head = fp.raw.read(8)
        if len(head) < 8:
            return ("file truncated: the encapsulated pixel data ends without its sequence delimiter "
                    f"(after {max(items - 1, 0)} fragment(s))")
        group, elem, length = struct.unpack("<HHI", head)
        tag = group << 16 | elem
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or length == UNDEFINED:
            return f"corrupt encapsulated pixel data: ({group:04X},{elem:04X}) where a fragment item should be"
        end = pos + 8 + length
        if end > fp.size:
            return (f"file truncated: a pixel data fragment needs {length} bytes, "
                    f"only {max(fp.size - pos - 8, 0)} present")
        pos, items = end, items + 1
    fragments = max(items - 1, 0)  # the first item is the basic offset table
    if fragments == 0:
        return "encapsulated pixel data holds no fragments (empty or truncated)"
    if frames > fragments and not transfer_syntax.startswith(VIDEO_SYNTAX_PREFIX):
        return f"declares {frames} frames but its pixel data holds only {fragments} fragment(s) (truncated or corrupt)"
    return ""


def declared_pixel_bytes(rows: int, columns: int, frames: int, samples: int, bits: int, photometric: str) -> int:
    """Bytes of the uncompressed pixel data the header declares (PS3.5 8.1.1)."""
    pixels = rows * columns * max(frames, 1) * max(samples, 1)
    if bits == 1:
        return (pixels + 7) // 8
    total = pixels * ((bits + 7) // 8)
    return total * 2 // 3 if photometric == "YBR_FULL_422" else total


def pixel_size_problem(declared: int, element_length: int | None, limits: ImportLimits) -> str:
    """Reject declared image sizes beyond the limit, and native pixel data shorter than declared."""
    if declared > limits.max_decoded_bytes:
        return (f"declares {_mb(declared)} of pixels (Rows x Columns x frames), more than the limit of "
                f"{_mb(limits.max_decoded_bytes)} (setting import_max_decoded_mb)")
    if element_length is not None and element_length < declared:
        return (f"pixel data holds {element_length} bytes but Rows x Columns x frames x bits need {declared} "
                "(truncated or inconsistent header)")
    return ""
