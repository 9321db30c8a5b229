"""DICOMweb client: QIDO-RS (search), WADO-RS (retrieve instances and frames), STOW-RS (store).

Standard library only (``urllib``): no extra dependency for three kinds of
HTTP request. Instances are asked for as ``multipart/related;
type="application/dicom"`` with ``transfer-syntax=*`` (as stored, no
transcoding); frames as ``application/octet-stream``, the media type the Orthanc
plugin accepts for frames. Errors become ``PacsError`` subclasses naming the
server and the HTTP status, never the credentials.

An ``https://`` URL uses the node's TLS settings (``tls.client_context``: its CA
bundle, client certificate, host name check, TLS 1.2+); a redirect from
``https://`` to ``http://`` is refused, so nothing goes out in plain text.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom

from inference.cancel import CancelledError, CancelToken
from workstation.pacs import tls
from workstation.pacs.errors import (
    NodeConfigError,
    PacsConnectionError,
    PacsRequestError,
    PacsTimeoutError,
    PacsTlsError,
    TransferInterruptedError,
)
from workstation.pacs.multipart import MultipartError, build_body, content_type_params, iter_parts
from workstation.pacs.nodes import PacsNode
from workstation.pacs.query import (
    INSTANCE_KEYS,
    SERIES_KEYS,
    STUDY_KEYS,
    InstanceResult,
    SeriesResult,
    StudyQuery,
    StudyResult,
    json_values,
)
from workstation.pacs.storage import InstanceWriter, StoreResult

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ACCEPT_INSTANCES = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
STOW_BATCH_BYTES = 64 << 20
_HTTP_HINTS = {
    400: "the server did not understand the request",
    401: "the server wants credentials, or refused ours (check user/password or token of the node)",
    403: "the server refused access with these credentials",
    404: "not found on the server (wrong DICOMweb base URL, or the study/series is gone)",
    406: "the server cannot answer in the media type asked for",
    409: "the server refused to store the instances",
    413: "the request is too large for the server",
    415: "the server does not accept this media type",
    503: "the server is busy or down for maintenance",
}


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from ``https://`` to ``http://`` (that would send the request in plain text)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        if req.full_url.startswith("https://") and not newurl.startswith("https://"):
            raise urllib.error.HTTPError(req.full_url, code, "redirect from HTTPS to plain HTTP refused", headers,
                                         fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class DicomWebClient:
    """QIDO-RS, WADO-RS and STOW-RS against one node's DICOMweb base URL."""

    def __init__(self, node: PacsNode, *, timeout_s: float | None = None) -> None:
        if not node.has_dicomweb:
            raise NodeConfigError(f"PACS node {node.name!r} has no DICOMweb URL")
        self.node = node
        self.base = node.dicomweb_url
        self.timeout_s = timeout_s if timeout_s is not None else node.timeout_s
        handlers: list[urllib.request.BaseHandler] = [_NoDowngradeRedirect()]
        if node.uses_https:  # NodeConfigError here when the CA bundle or client certificate is unusable
            handlers.append(urllib.request.HTTPSHandler(context=tls.client_context(node)))
        self._opener = urllib.request.build_opener(*handlers)

    # --- HTTP -----------------------------------------------------------------------
    def _auth(self) -> str:
        if self.node.token is not None:
            return f"Bearer {self.node.token.get_secret_value()}"
        if self.node.username:
            secret = self.node.password.get_secret_value() if self.node.password is not None else ""
            return "Basic " + b64encode(f"{self.node.username}:{secret}".encode()).decode("ascii")
        return ""

    @contextmanager
    def _open(self, method: str, path: str, *, params: Sequence[tuple[str, str]] = (), accept: str = "",
              body: bytes | None = None, content_type: str = "") -> Iterator[http.client.HTTPResponse]:
        url = self.base + path + (("?" + _query_string(params)) if params else "")
        req = urllib.request.Request(url, data=body, method=method)
        if accept:
            req.add_header("Accept", accept)
        if content_type:
            req.add_header("Content-Type", content_type)
        if auth := self._auth():
            req.add_header("Authorization", auth)
        where = f"DICOMweb server {self.base}"
        try:
            rsp = self._opener.open(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            detail = _HTTP_HINTS.get(exc.code, exc.reason or "")
            exc.close()
            raise PacsRequestError(f"{where} answered {method} {path} with HTTP {exc.code}: {detail}",
                                   exc.code) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                raise self._tls_failure(reason) from exc
            if isinstance(reason, ConnectionError) and self.node.uses_https:
                self._check_handshake()
            if isinstance(reason, TimeoutError | socket.timeout):
                raise PacsTimeoutError(f"{where} did not answer within {self.timeout_s:g} s") from None
            if isinstance(reason, ConnectionRefusedError):
                raise PacsConnectionError(f"cannot connect to {where}: nothing is listening there "
                                          "(connection refused)") from None
            if isinstance(reason, socket.gaierror):
                raise PacsConnectionError(f"cannot connect to {where}: unknown host name") from None
            raise PacsConnectionError(f"cannot connect to {where}: {reason}") from None
        except TimeoutError:
            raise PacsTimeoutError(f"{where} did not answer within {self.timeout_s:g} s") from None
        except ssl.SSLError as exc:  # e.g. a TLS 1.3 server refusing our client certificate after the handshake
            raise self._tls_failure(exc) from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            self._check_handshake()
            self._check_plain_to_https()
            raise TransferInterruptedError(f"{where} dropped the connection ({exc.__class__.__name__})") from None
        try:
            yield rsp
        except TimeoutError:
            raise PacsTimeoutError(f"{where} stopped sending for {self.timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise self._tls_failure(exc) from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise TransferInterruptedError(f"{where} dropped the connection in the middle of the answer "
                                           f"({exc.__class__.__name__})") from None
        finally:
            rsp.close()

    def _tls_failure(self, exc: BaseException) -> PacsTlsError:
        """The error for a failed HTTPS connection, with the reason a fresh handshake gives when it says more."""
        return tls.tls_error(self.node, self._handshake_problem() or exc, what="HTTPS", timeout_s=self.timeout_s)

    def _handshake_problem(self) -> BaseException | None:
        url = urllib.parse.urlsplit(self.base)
        if not self.node.uses_https or not url.hostname:
            return None
        return tls.handshake_problem(self.node, min(self.timeout_s, 5.0), host=url.hostname, port=url.port or 443)

    def _check_handshake(self) -> None:
        """Raise the TLS reason when an HTTPS server dropped us because of TLS (e.g. our client certificate)."""
        problem = self._handshake_problem()
        if problem is not None:
            raise tls.tls_error(self.node, problem, what="HTTPS", timeout_s=self.timeout_s) from problem

    def _check_plain_to_https(self) -> None:
        """Raise a clear error when an ``http://`` URL's server dropped us because it speaks HTTPS."""
        if self.node.uses_https:
            return
        url = urllib.parse.urlsplit(self.base)
        if url.hostname and tls.speaks_tls(url.hostname, url.port or 80, min(self.timeout_s, 5.0)):
            raise tls.plain_to_tls_error(self.node, https=True)

    def _json(self, path: str, params: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        with self._open("GET", path, params=params, accept="application/dicom+json") as rsp:
            data = rsp.read()
        if not data.strip():
            return []  # 204 No Content: nothing matched
        try:
            value = json.loads(data)
        except ValueError:
            raise PacsRequestError(f"DICOMweb server {self.base} sent an answer that is not JSON") from None
        return value if isinstance(value, list) else []

    # --- QIDO-RS --------------------------------------------------------------------
    def search_studies(self, query: StudyQuery, *, limit: int | None = None) -> list[StudyResult]:
        """Studies matching ``query`` (QIDO-RS /studies)."""
        params = [(k, v) for k, v in query.matching().items()]
        params += [("includefield", k) for k in STUDY_KEYS]
        if limit is not None:
            params.append(("limit", str(limit)))
        rows = self._json("/studies", params)
        logger.info("QIDO-RS studies on %s: %d found", self.node.name, len(rows))
        return [StudyResult.from_values(json_values(r, STUDY_KEYS)) for r in rows]

    def search_series(self, study_uid: str) -> list[SeriesResult]:
        """The series of a study (QIDO-RS /studies/{uid}/series)."""
        rows = self._json(f"/studies/{_q(study_uid)}/series", [("includefield", k) for k in SERIES_KEYS])
        out = [SeriesResult.from_values({"StudyInstanceUID": study_uid, **json_values(r, SERIES_KEYS)}) for r in rows]
        return sorted(out, key=lambda s: (s.number is None, s.number or 0, s.series_uid))

    def search_instances(self, study_uid: str, series_uid: str) -> list[InstanceResult]:
        """The instances of a series (QIDO-RS .../series/{uid}/instances)."""
        rows = self._json(f"/studies/{_q(study_uid)}/series/{_q(series_uid)}/instances",
                          [("includefield", k) for k in INSTANCE_KEYS])
        return [InstanceResult.from_values({"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                                            **json_values(r, INSTANCE_KEYS)}) for r in rows]

    # --- WADO-RS --------------------------------------------------------------------
    def _parts(self, path: str, accept: str) -> Iterator[tuple[dict[str, str], bytes]]:
        with self._open("GET", path, accept=accept) as rsp:
            media, params = content_type_params(rsp.headers.get("Content-Type", ""))
            if media != "multipart/related" or "boundary" not in params:
                raise PacsRequestError(f"DICOMweb server {self.base} answered {path} with {media or 'no media type'}"
                                       ", not multipart/related")
            try:
                yield from iter_parts(rsp, params["boundary"])
            except MultipartError as exc:
                raise TransferInterruptedError(f"DICOMweb server {self.base}: {exc}") from None

    def retrieve(self, writer: InstanceWriter, study_uid: str, series_uid: str, sop_uids: Sequence[str] = (), *,
                 expected: int = 0, progress: Progress | None = None, cancel: CancelToken | None = None) -> int:
        """WADO-RS a whole series (one request) or listed instances of it into ``writer``; returns how many."""
        series_path = f"/studies/{_q(study_uid)}/series/{_q(series_uid)}"
        paths = [f"{series_path}/instances/{_q(u)}" for u in sop_uids] if sop_uids else [series_path]
        n = 0
        for path in paths:
            for _headers, body in self._parts(path, ACCEPT_INSTANCES):
                if cancel is not None and cancel.cancelled:
                    raise CancelledError("retrieve cancelled")
                head = pydicom.dcmread(BytesIO(body), stop_before_pixels=True,
                                       specific_tags=["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
                sop = str(head.get("SOPInstanceUID") or head.file_meta.get("MediaStorageSOPInstanceUID", ""))
                writer.write(body, sop, str(head.get("StudyInstanceUID") or study_uid),
                             str(head.get("SeriesInstanceUID") or series_uid))
                n += 1
                if progress is not None:
                    progress(n, max(expected, n))
        return n

    def retrieve_frames(self, study_uid: str, series_uid: str, sop_uid: str, frames: Sequence[int]) -> list[bytes]:
        """Pixel data of frames (1-based numbers) of an instance, as stored (``application/octet-stream``)."""
        numbers = ",".join(str(int(f)) for f in frames)
        path = f"/studies/{_q(study_uid)}/series/{_q(series_uid)}/instances/{_q(sop_uid)}/frames/{numbers}"
        return [body for _h, body in self._parts(path, ACCEPT_FRAMES)]

    # --- STOW-RS --------------------------------------------------------------------
    def store(self, paths: Sequence[str | Path], *, progress: Progress | None = None,
              cancel: CancelToken | None = None) -> StoreResult:
        """STOW-RS any DICOM files (in batches of up to 64 MiB)."""
        result = StoreResult()
        batch: list[tuple[Path, bytes]] = []
        size, done = 0, 0

        def flush() -> None:
            nonlocal batch, size, done
            if batch:
                self._stow(batch, result)
                done += len(batch)
                if progress is not None:
                    progress(done, len(paths))
            batch, size = [], 0

        for p in paths:
            if cancel is not None and cancel.cancelled:
                raise CancelledError("send cancelled")
            data = Path(p).read_bytes()
            if size + len(data) > STOW_BATCH_BYTES:
                flush()
            batch.append((Path(p), data))
            size += len(data)
        flush()
        logger.info("STOW-RS to %s: %d stored, %d failed", self.node.name, len(result.stored), len(result.failed))
        return result

    def _stow(self, batch: list[tuple[Path, bytes]], result: StoreResult) -> None:
        body, content_type = build_body(data for _, data in batch)
        t0 = time.monotonic()
        try:
            with self._open("POST", "/studies", body=body, content_type=content_type,
                            accept="application/dicom+json") as rsp:
                answer = rsp.read()
        except PacsRequestError as exc:
            if exc.status != 409:
                raise
            answer = b""
        logger.debug("STOW-RS of %d files took %.2f s", len(batch), time.monotonic() - t0)
        stored, failed = _stow_outcome(answer)
        by_uid = {}
        for path, data in batch:
            head = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            by_uid[str(head.get("SOPInstanceUID", ""))] = path
        for uid in stored:
            result.stored.append(uid)
        for uid, reason in failed:
            result.failed.append((str(by_uid.get(uid, uid)), reason))
        unanswered = set(by_uid) - set(stored) - {u for u, _ in failed}
        for uid in sorted(unanswered):
            result.failed.append((str(by_uid[uid]), "the server did not report it as stored"))


def _q(uid: str) -> str:
    return urllib.parse.quote(uid, safe="")


def _query_string(params: Sequence[tuple[str, str]]) -> str:
    """``k=v&...`` escaping only what a query string cannot hold.

    DICOM matching characters (``^ * ? , -``) stay as they are: some servers
    (the Orthanc DICOMweb plugin 1.7) match the raw, undecoded value, so
    ``Doe%5EJ*`` would find nothing where ``Doe^J*`` works.
    """
    safe = "^*?,-._~:/"
    return "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe=safe)}" for k, v in params)


def _stow_outcome(answer: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    """SOP Instance UIDs stored, and ``(uid, reason)`` refused, from a STOW-RS response."""
    if not answer.strip():
        return [], []
    try:
        data = json.loads(answer)
    except ValueError:
        return [], []
    stored = [str(_value(item, "00081155")) for item in _seq(data, "00081199")]
    failed = [(str(_value(item, "00081155")), f"refused by the server (reason {_value(item, '00081197')})")
              for item in _seq(data, "00081198")]
    return stored, failed


def _seq(data: Any, tag: str) -> list[dict[str, Any]]:
    element = data.get(tag) if isinstance(data, dict) else None
    values = element.get("Value") if isinstance(element, dict) else None
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or [""]
    return values[0]
