"""``multipart/related`` for DICOMweb: a streaming reader (WADO-RS answers) and a writer (STOW-RS bodies).

The reader pulls the response a chunk at a time and hands out one part at a
time, so a series of hundreds of instances never sits in memory at once.
"""

from __future__ import annotations

import email.message
import uuid
from collections.abc import Iterable, Iterator
from typing import BinaryIO

CHUNK = 1 << 20


class MultipartError(ValueError):
    """The body is not the multipart message its Content-Type announced."""


def content_type_params(content_type: str) -> tuple[str, dict[str, str]]:
    """``(media type, {parameter: value})`` of a Content-Type header value."""
    msg = email.message.Message()
    msg["content-type"] = content_type
    params = {str(k).lower(): str(v) for k, v in (msg.get_params() or [])[1:]}
    return msg.get_content_type(), params


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if ":" in line:
            name, value = line.split(":", 1)
            out[name.strip().lower()] = value.strip()
    return out


def iter_parts(stream: BinaryIO, boundary: str, chunk: int = CHUNK) -> Iterator[tuple[dict[str, str], bytes]]:
    """Yield ``(headers, body)`` for each part of a multipart body read from ``stream``."""
    delim = b"--" + boundary.encode("latin-1")
    buf = bytearray()
    eof = False

    def fill() -> bool:
        nonlocal eof
        if eof:
            return False
        data = stream.read(chunk)
        if not data:
            eof = True
            return False
        buf.extend(data)
        return True

    # Preamble: everything up to the first delimiter.
    while (pos := buf.find(delim)) < 0:
        if not fill():
            raise MultipartError("no multipart boundary in the body")
    del buf[:pos + len(delim)]
    while True:
        while len(buf) < 2 and fill():
            pass
        if buf[:2] == b"--":
            return  # closing delimiter
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if not fill():
                raise MultipartError("a part's headers are cut short")
        headers = _headers(bytes(buf[:end]).lstrip(b"\r\n"))
        del buf[:end + 4]
        marker = b"\r\n" + delim
        start = 0
        while (pos := buf.find(marker, start)) < 0:
            start = max(0, len(buf) - len(marker))
            if not fill():
                raise MultipartError("the body ends in the middle of a part (transfer cut short?)")
        body = bytes(buf[:pos])
        del buf[:pos + len(marker)]
        yield headers, body


def build_body(parts: Iterable[bytes], media_type: str = "application/dicom") -> tuple[bytes, str]:
    """A multipart/related body of ``parts`` and its Content-Type header value."""
    boundary = f"ws-{uuid.uuid4().hex}"
    out = bytearray()
    for data in parts:
        out += f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("ascii")
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode("ascii")
    return bytes(out), f'multipart/related; type="{media_type}"; boundary={boundary}'
