"""A fast reader for the header of common DICOM files, with pydicom as the fallback.

Opening a series means reading hundreds of headers; pydicom's general-purpose
``Dataset`` costs about 1 ms a file, most of it in element access. This scanner
walks the top-level elements once, keeps only the tags the application uses, and
stops at Pixel Data (recording its offset). It handles the three native
encodings (implicit/explicit little endian, explicit big endian) used by every
compressed transfer syntax too. Anything unusual (no preamble, deflate, other
character sets, enhanced multi-frame, Siemens mosaic, a malformed sequence)
returns ``None`` so the caller uses pydicom, and a test proves both paths give
identical headers.

Its cost follows the header, not the file: it reads a growing prefix (32 kB,
then four times more each time it runs out, never more than the caller's byte
cap) and calls the caller's ``tick`` as it walks, so a time budget can stop it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from workstation.dicomio.tag_table import KNOWN_TAGS, KNOWN_VRS

logger = logging.getLogger(__name__)

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95")
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
FALLBACK_TAGS = frozenset({0x52009230})  # per-frame functional groups (enhanced multi-frame)
SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
ENCODED_TEXT_VRS = frozenset({"LO", "SH", "PN", "LT", "ST", "UT", "UC"})
NUMBER_VRS = {"US": ("H", 2), "SS": ("h", 2), "UL": ("I", 4), "SL": ("i", 4), "FL": ("f", 4), "FD": ("d", 8)}
CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
UNDEFINED = 0xFFFFFFFF
INITIAL_READ = 32 * 1024
TICK_EVERY = 4096  # elements between calls of the caller's time check
Tick = Callable[[], None]
ReadPrefix = Callable[[int], bytes]


def _no_tick() -> None:
    return None


class _UnsupportedError(Exception):
    """The scanner cannot read this file; use pydicom."""


class TruncatedHeaderError(Exception):
    """A header element runs past the end of the file (cut short, or corrupt)."""


@lru_cache(maxsize=512)
def _tag(keyword: str) -> int | None:
    known = KNOWN_TAGS.get(keyword)
    if known is not None:
        return known[0]
    from pydicom.datadict import tag_for_keyword  # only for keywords the table lacks: all of pydicom is ~90 ms

    tag = tag_for_keyword(keyword)
    return int(tag) if tag is not None else None


@lru_cache(maxsize=512)
def _vr(tag: int) -> str:
    known = KNOWN_VRS.get(tag)
    if known is not None:
        return known
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


class RawHeader:
    """Dataset-like read access (``get``, ``in``, ``file_meta``) to scanned elements."""

    def __init__(self, meta: dict[str, str], elements: dict[int, tuple[str, bytes]], little: bool,
                 implicit: bool, encoding: str) -> None:
        self.file_meta = SimpleNamespace(**meta)
        self._elements = elements
        self._endian = "<" if little else ">"
        self.is_implicit_VR = implicit
        self.is_little_endian = little
        self._encoding = encoding

    def __contains__(self, key: object) -> bool:
        tag = _tag(key) if isinstance(key, str) else (
            (key[0] << 16 | key[1]) if isinstance(key, tuple) else key)
        return tag in self._elements

    def get(self, keyword: str, default: Any = None) -> Any:
        known = KNOWN_TAGS.get(keyword)  # first: header_from_dataset asks ~65 times a file
        item = self._elements.get(known[0] if known is not None else _tag(keyword))  # type: ignore[arg-type]
        if item is None:
            return default
        return self._convert(item[0], item[1])

    def _convert(self, vr: str, raw: bytes) -> Any:
        number = NUMBER_VRS.get(vr)
        if number is not None:
            fmt, size = number
            n = len(raw) // size
            values = list(struct.unpack(f"{self._endian}{n}{fmt}", raw[: n * size]))
            return values[0] if n == 1 else (values or None)
        text = raw.decode(self._encoding if vr in ENCODED_TEXT_VRS else "latin-1")
        text = text.rstrip("\x00 ")
        if vr in SINGLE_TEXT_VRS:
            return text
        if "\\" in text:
            parts = [p.strip() for p in text.split("\\")]
        else:  # one value (most elements): no split
            parts = [text.strip()] if text else []
        if vr in ("DS", "IS"):
            nums = [float(p) if vr == "DS" else int(float(p)) for p in parts if p]
            return nums[0] if len(nums) == 1 else (nums or None)
        if len(parts) > 1:
            return parts
        return parts[0] if parts else ""


@lru_cache(maxsize=1)
def _wanted_tags() -> frozenset[int]:
    from workstation.dicomio.headers import KEYWORDS

    return frozenset(t for t in (_tag(k) for k in KEYWORDS) if t is not None) | {0x00080005}


class _Scanner:
    def __init__(self, data: bytes, little: bool, implicit: bool, tick: Tick = _no_tick) -> None:
        self.data = data
        self.e = "<" if little else ">"
        self.implicit = implicit
        self.tick = tick
        self.steps = 0

    def step(self) -> None:
        """Count one element; every ``TICK_EVERY`` let the caller check its time budget."""
        self.steps += 1
        if self.steps % TICK_EVERY == 0:
            self.tick()

    def header(self, pos: int) -> tuple[int, str, int, int]:
        """(tag, vr, length, value offset) of the element at ``pos``."""
        d = self.data
        if pos + 8 > len(d):
            raise IndexError
        group, elem = struct.unpack_from(self.e + "HH", d, pos)
        tag = group << 16 | elem
        if group == 0xFFFE:
            (length,) = struct.unpack_from(self.e + "I", d, pos + 4)
            return tag, "", length, pos + 8
        if self.implicit:
            (length,) = struct.unpack_from(self.e + "I", d, pos + 4)
            vr = _vr(tag)
            if length == UNDEFINED and vr not in ("SQ", "UN"):
                vr = "SQ"
            return tag, vr, length, pos + 8
        vr_b = d[pos + 4:pos + 6]
        if vr_b in LONG_VRS:
            if pos + 12 > len(d):
                raise IndexError
            (length,) = struct.unpack_from(self.e + "I", d, pos + 8)
            return tag, vr_b.decode("ascii"), length, pos + 12
        (length,) = struct.unpack_from(self.e + "H", d, pos + 6)
        try:
            return tag, vr_b.decode("ascii"), length, pos + 8
        except UnicodeDecodeError as exc:
            raise _UnsupportedError("bad VR") from exc

    def skip_undefined(self, pos: int) -> int:
        """Position after an undefined-length sequence starting at ``pos`` (its first item)."""
        implicit_before = self.implicit
        while True:
            self.step()
            tag, _, length, value = self.header(pos)
            if tag == 0xFFFEE0DD:
                self.implicit = implicit_before
                return value
            if tag != 0xFFFEE000:
                raise _UnsupportedError("malformed sequence")
            if length != UNDEFINED:
                pos = value + length
                continue
            pos = value
            while True:
                self.step()
                tag, _vr_unused, length, value = self.header(pos)
                if tag == 0xFFFEE00D:
                    pos = value
                    break
                pos = self.skip_undefined(value) if length == UNDEFINED else value + length


def scan_header(first: bytes, file_size: int, read_prefix: ReadPrefix, tick: Tick = _no_tick
                ) -> tuple[RawHeader, tuple[bool, int | None, int | None]] | None:
    """Scan ``first`` (the file's first bytes; ``read_prefix(n)`` returns its first ``n`` bytes if needed).

    ``read_prefix`` may return fewer bytes than asked (a byte cap): when the
    header does not fit, pydicom (which can skip large values) must read the
    file. ``tick`` is called now and then; it may raise to stop the scan.
    Returns the header and ``(pixel data present, value offset, value length)``, or
    ``None`` when pydicom must read this file. Raises ``TruncatedHeaderError`` when
    the header runs past the end of the file.
    """
    try:
        return _scan(first, file_size, read_prefix, tick)
    except (_UnsupportedError, struct.error, UnicodeDecodeError, ValueError) as exc:
        logger.debug("fast header scan fell back to pydicom: %s", exc)
        return None


def _scan(data: bytes, file_size: int, read_prefix: ReadPrefix, tick: Tick
          ) -> tuple[RawHeader, tuple[bool, int | None, int | None]] | None:
    if data[128:132] != b"DICM":
        return None
    meta_scan = _Scanner(data, True, False)
    pos, meta = 132, {}
    while pos + 8 <= len(data):
        tag, _, length, value = meta_scan.header(pos)
        if tag >> 16 != 0x0002:
            break
        if tag in (0x00020002, 0x00020003, 0x00020010):
            name = {0x00020002: "MediaStorageSOPClassUID", 0x00020003: "MediaStorageSOPInstanceUID",
                    0x00020010: "TransferSyntaxUID"}[tag]
            meta[name] = data[value:value + length].decode("ascii").rstrip("\x00 ")
        pos = value + length
    if pos + 8 > len(data) or pos > len(data):
        if len(data) >= file_size:
            raise TruncatedHeaderError("the file ends inside its file meta information")
        return None  # an unusually long meta group: let pydicom read it
    tsuid = meta.get("TransferSyntaxUID", "")
    if not tsuid or tsuid in DEFLATED:
        return None
    little, implicit = tsuid != EXPLICIT_BE, tsuid == IMPLICIT_LE
    wanted = _wanted_tags()
    while True:
        try:
            result = _scan_body(data, pos, little, implicit, wanted, len(data) >= file_size, tick)
            break
        except IndexError:
            if len(data) >= file_size:
                raise TruncatedHeaderError("a header element runs past the end of the file") from None
            more = read_prefix(max(len(data) * 4, INITIAL_READ))
            if len(more) <= len(data):
                return None  # the byte cap: pydicom skips large values instead of reading them
            data = more
    elements, pixel = result
    charset = elements.get(0x00080005, ("CS", b""))[1].decode("latin-1").strip("\x00 ")
    if charset not in CHARSETS:
        return None
    return RawHeader(meta, elements, little, implicit, CHARSETS[charset]), pixel


#: (tag group, element, VR bytes, short length) and (group, element, 32-bit length), by byte order
_EXPLICIT = {"<": struct.Struct("<HH2sH").unpack_from, ">": struct.Struct(">HH2sH").unpack_from}
_IMPLICIT = {"<": struct.Struct("<HHI").unpack_from, ">": struct.Struct(">HHI").unpack_from}
_U32 = {"<": struct.Struct("<I").unpack_from, ">": struct.Struct(">I").unpack_from}
_VR_INFO: dict[bytes, tuple[str, bool]] = {}  # VR bytes -> (VR, 32-bit length?): a lookup, not a decode
_WANTED, _PIXEL, _FALLBACK = 1, 2, 3


def _vr_info(vr_b: bytes) -> tuple[str, bool]:
    try:
        info = (vr_b.decode("ascii"), vr_b in LONG_VRS)
    except UnicodeDecodeError as exc:
        raise _UnsupportedError("bad VR") from exc
    if len(_VR_INFO) < 256:
        _VR_INFO[vr_b] = info
    return info


@lru_cache(maxsize=4)
def _tag_kinds(wanted: frozenset[int]) -> dict[int, int]:
    """What the scanner does at each tag it must notice: keep it, stop (pixel data), or give up (pydicom)."""
    return {**dict.fromkeys(wanted, _WANTED), **dict.fromkeys(PIXEL_TAGS, _PIXEL),
            **dict.fromkeys(FALLBACK_TAGS, _FALLBACK)}


def _scan_body(data: bytes, pos: int, little: bool, implicit: bool, wanted: frozenset[int], complete: bool,
               tick: Tick) -> tuple[dict[int, tuple[str, bytes]], tuple[bool, int | None, int | None]]:
    """Walk the top-level elements from ``pos`` to Pixel Data, keeping the ``wanted`` ones.

    The hot loop of opening a series (~150 elements a file): one precompiled ``unpack_from`` and
    two dict lookups per element, no per-element objects; ``_Scanner`` only walks undefined-length
    sequences.
    """
    sc = _Scanner(data, little, implicit, tick)
    e = sc.e
    explicit_head, implicit_head, u32, vr_infos = _EXPLICIT[e], _IMPLICIT[e], _U32[e], _VR_INFO
    kinds = _tag_kinds(wanted)
    elements: dict[int, tuple[str, bytes]] = {}
    size = len(data)
    countdown = TICK_EVERY
    vr = ""
    while pos < size:
        countdown -= 1
        if not countdown:
            tick()
            countdown = TICK_EVERY
        if pos + 8 > size:
            raise IndexError
        if implicit:
            group, elem, length = implicit_head(data, pos)
            value = pos + 8
        else:
            group, elem, vr_b, length = explicit_head(data, pos)
            if group != 0xFFFE:  # an item or delimiter at the top level: given up on below
                vr, long_length = vr_infos.get(vr_b) or _vr_info(vr_b)
                if long_length:
                    if pos + 12 > size:
                        raise IndexError
                    (length,) = u32(data, pos + 8)
                    value = pos + 12
                else:
                    value = pos + 8
        tag = group << 16 | elem
        kind = kinds.get(tag)
        if kind == _PIXEL:
            return elements, (True, value, None if length == UNDEFINED else length)
        if kind == _FALLBACK or group == 0xFFFE:
            raise _UnsupportedError(f"tag {tag:08X} needs pydicom")
        if length == UNDEFINED:
            if not implicit and vr == "UN":
                raise _UnsupportedError("undefined-length UN (implicit VR inside an explicit dataset)")
            pos = sc.skip_undefined(value)
            continue
        if kind == _WANTED:
            if value + length > size:
                raise IndexError
            if implicit:
                vr = _vr(tag)
            elements[tag] = (vr, data[value:value + length])
        pos = value + length
    if not complete or pos > size:  # more to read, or the last element's value runs past the end
        raise IndexError
    return elements, (False, None, None)
