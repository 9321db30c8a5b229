"""Read the header of one file (never its pixels), guarded against hostile input.

The fast scanner reads common files; pydicom reads the rest. Both read through
a ``GuardedReader`` (byte cap before the pixel data, time budget per file),
after ``head_problem`` has turned away what cannot be DICOM. The header is
only accepted when the pixel data it points to is whole: native pixel data as
long as Rows x Columns x frames need, encapsulated fragments ending inside the
file with their sequence delimiter. A file that fails any of this is an
``UnreadableFileError`` with the reason, so import lists it and goes on.
"""

from __future__ import annotations

import logging
import struct
import zipfile
from pathlib import Path
from typing import Any

from inference.errors import UnreadableFileError
from workstation.dicomio.fastheader import INITIAL_READ, TruncatedHeaderError, scan_header
from workstation.dicomio.guards import (
    MIB,
    GuardedReader,
    ImportLimits,
    declared_pixel_bytes,
    fragments_problem,
    head_problem,
    pixel_size_problem,
)
from workstation.dicomio.headers import InstanceHeader, header_from_dataset
from workstation.dicomio.sopclasses import is_image_storage
from workstation.dicomio.sources import FileRef

logger = logging.getLogger(__name__)

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
LONG_PIXEL_VRS = (b"OB", b"OW", b"OF", b"OD", b"OL", b"UN", b"OV")
DEFER_SIZE = MIB  # pydicom seeks past values larger than this instead of reading them
NATIVE_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, NotImplementedError, RuntimeError, EOFError)
Pixel = tuple[bool, int | None, int | None]


def _pixel_element(fp: GuardedReader, implicit: bool, little: bool) -> Pixel:
    """Locate the Pixel Data element after a header-only read: ``(present, value offset, value length)``.

    A length of ``None`` means encapsulated (undefined length).
    """
    start = fp.tell()
    head = fp.raw.read(12)
    if len(head) < 8:
        return False, None, None
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if (group << 16 | elem) not in PIXEL_TAGS:
        return False, None, None
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        offset = start + 8
    elif head[4:6] in LONG_PIXEL_VRS and len(head) == 12:
        (length,) = struct.unpack(endian + "I", head[8:12])
        offset = start + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        offset = start + 8
    return True, offset, None if length == 0xFFFFFFFF else length


def _open(ref: FileRef, limits: ImportLimits) -> GuardedReader:
    try:
        raw, size = ref.open_sized()
    except OSError as exc:
        raise UnreadableFileError(str(ref), f"cannot open: {exc.strerror or exc}") from exc
    except ZIP_ERRORS as exc:
        raise UnreadableFileError(str(ref), f"cannot read this zip member: {exc}") from exc
    fp = GuardedReader(raw, str(ref), size, limits)
    if size == 0:
        fp.close()
        raise UnreadableFileError(str(ref), "empty file")
    if ref.member and size > limits.max_member_bytes:
        fp.close()
        raise UnreadableFileError(str(ref), f"zip member inflates to {size / MIB:,.0f} MB, more than the limit of "
                                            f"{limits.max_member_bytes / MIB:,.0f} MB (setting "
                                            "import_max_zip_member_mb): refused unread (zip bomb?)")
    return fp


def read_header(ref: FileRef, limits: ImportLimits | None = None) -> InstanceHeader:
    """Read one file's header; raise ``UnreadableFileError`` naming the file and the reason."""
    limits = limits or ImportLimits()
    fp = _open(ref, limits)
    try:
        with fp:
            return _read(fp, ref, limits)
    except UnreadableFileError:
        raise
    except ZIP_ERRORS as exc:  # a corrupt deflate stream or bad CRC inside a zip member
        raise UnreadableFileError(str(ref), f"cannot read this zip member: {exc}") from exc


def _read(fp: GuardedReader, ref: FileRef, limits: ImportLimits) -> InstanceHeader:
    first = fp.prefix(INITIAL_READ)
    problem = head_problem(first, fp.size)
    if problem:
        raise UnreadableFileError(str(ref), problem)
    truncated = False
    try:
        fast = scan_header(first, fp.size, fp.prefix, fp.check_time)
    except TruncatedHeaderError:
        fast, truncated = None, True
    if fast is not None:
        try:
            quick: InstanceHeader | None = header_from_dataset(fast[0], str(ref))
        except Exception as exc:  # unexpected value formats: let pydicom judge the file
            logger.debug("fast header of %s unusable (%s); using pydicom", ref, exc)
            quick = None
        if quick is not None and "MOSAIC" not in quick.image_type:
            return _finish(quick, ref, fast[1], fp, limits)
    ds, pixel = _read_with_pydicom(fp, ref)
    try:
        header = header_from_dataset(ds, str(ref))
    except UnreadableFileError:
        raise
    except Exception as exc:
        raise UnreadableFileError(str(ref), f"malformed header: {exc}") from exc
    if truncated and not pixel[0]:
        raise UnreadableFileError(str(ref), "file truncated: the header runs past the end of the file")
    return _finish(header, ref, pixel, fp, limits)


def _read_with_pydicom(fp: GuardedReader, ref: FileRef) -> tuple[Any, Pixel]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    fp.reset_count()
    fp.seek(0)
    try:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=DEFER_SIZE)
        except InvalidDicomError:
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=DEFER_SIZE, force=True)
            if "SOPClassUID" not in ds and "Rows" not in ds:
                raise UnreadableFileError(str(ref), "not a DICOM file") from None
    except UnreadableFileError:
        raise
    except Exception as exc:
        raise UnreadableFileError(str(ref), f"not a DICOM file or corrupt header ({exc})") from exc
    meta = getattr(ds, "file_meta", None)
    tsuid = getattr(meta, "TransferSyntaxUID", None) if meta else None
    implicit = bool(getattr(tsuid, "is_implicit_VR", getattr(ds, "is_implicit_VR", False)))
    little = bool(getattr(tsuid, "is_little_endian", True))
    return ds, _pixel_element(fp, implicit, little)


def _pixel_problem(header: InstanceHeader, pixel: Pixel, fp: GuardedReader, limits: ImportLimits) -> str:
    """Why the pixel data this header points to is unusable (``''`` when it is whole)."""
    present, offset, length = pixel
    if not present or offset is None:
        return ""
    if length is None and fp.size <= offset:
        return "pixel data is empty (file truncated)"
    if length is not None and offset + length > fp.size:
        return f"file truncated: pixel data needs {length} bytes, only {max(fp.size - offset, 0)} present"
    if header.rows == 0 or header.columns == 0 or header.bits_allocated == 0:
        return ""  # reported below as an incomplete pixel module
    declared = declared_pixel_bytes(header.rows, header.columns, header.number_of_frames,
                                    header.samples_per_pixel, header.bits_allocated, header.photometric)
    native = header.transfer_syntax in NATIVE_SYNTAXES or not header.transfer_syntax
    problem = pixel_size_problem(declared, length if native else None, limits)
    if problem or length is not None:
        return problem
    return fragments_problem(fp, offset, header.number_of_frames, header.transfer_syntax)


def _finish(header: InstanceHeader, ref: FileRef, pixel: Pixel, fp: GuardedReader,
            limits: ImportLimits) -> InstanceHeader:
    """Record where the pixel data is, and reject objects whose pixel data is missing, cut short or implausible."""
    present, offset, length = pixel
    header.has_pixels = present
    header.pixel_offset = offset
    header.pixel_length = length
    if header.number_of_frames < 1:
        raise UnreadableFileError(str(ref), f"NumberOfFrames {header.number_of_frames} (must be at least 1)")
    problem = _pixel_problem(header, pixel, fp, limits)
    if problem:
        raise UnreadableFileError(str(ref), problem)
    if is_image_storage(header.sop_class_uid) and not present:
        raise UnreadableFileError(str(ref), "image object without pixel data (missing pixel module)")
    if present and (header.rows == 0 or header.columns == 0 or header.bits_allocated == 0):
        raise UnreadableFileError(str(ref), "pixel data without Rows/Columns/BitsAllocated (incomplete pixel module)")
    if not present and not header.sop_class_uid and header.rows == 0:
        # E.g. a file cut off just after its preamble: parses, but holds nothing to use.
        raise UnreadableFileError(str(ref), "no SOP Class UID and no image: not a complete DICOM object (truncated?)")
    return header


def read_header_path(path: str | Path, limits: ImportLimits | None = None) -> InstanceHeader:
    """Convenience: ``read_header`` for a plain file path."""
    return read_header(FileRef(str(path)), limits)
