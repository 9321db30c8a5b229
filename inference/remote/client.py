"""A small MONAI Label client over the standard library (``http.client``), as the DICOMweb client is.

Two calls: ``info()`` (``GET /info/``: the models and their labels) and
``infer(model, nifti)`` (``POST /infer/{model}?output=image`` with a multipart
``file`` and ``params="{}"``; the answer is the label map as NIfTI bytes).

Each exchange runs on a short-lived helper thread while the caller's thread
waits on it in small steps, so the caller can report progress (elapsed time and
the exchange's state: connecting, uploading, server working, receiving) and
honour its ``CancelToken``: a cancel closes the socket at once, which drops the
request, and raises ``CancelledError`` (no result ever comes back from it).
A connection that fails before any answer (refused, reset, unknown host, connect
time-out) is tried again ``node.retries`` times with doubling back-off; an HTTP
error or a time-out while the server works is not retried. Redirects are not
followed, so only the configured URL is contacted.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inference.cancel import CancelToken
from inference.remote.errors import (
    RemoteModelUnknownError,
    RemoteServerError,
    RemoteTimeoutError,
    RemoteUnavailableError,
)
from inference.remote.nodes import RemoteNode

logger = logging.getLogger(__name__)

StateCallback = Callable[[str, float], None]
"""Called with (state text, seconds elapsed) about once a second while an exchange runs."""

MAX_INFO_BYTES = 16 * 1024**2
MAX_RESULT_BYTES = 4 * 1024**3
_POLL_S = 0.1
_CHUNK = 1 << 20


def _no_state(state: str, elapsed: float) -> None:
    """A state callback that ignores reports."""


@dataclass(frozen=True)
class RemoteModelInfo:
    """One model a server offers: its name, labels (value -> name, background left out) and what it says of itself."""

    node: str
    name: str
    labels: dict[int, str]
    type: str = ""
    description: str = ""
    dimension: int | None = None
    version: str = ""


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /info/`` says: the app's name and version and its models."""

    name: str
    version: str
    models: dict[str, RemoteModelInfo] = field(default_factory=dict)


def _labels(raw: Any) -> dict[int, str]:
    """MONAI Label's ``labels``: ``{"spleen": 1}`` (or a list of names, numbered from 1)."""
    out: dict[int, str] = {}
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out[value] = str(name)
    elif isinstance(raw, list):
        names = [str(n) for n in raw if str(n).lower() != "background"]
        out = dict(enumerate(names, start=1))
    return dict(sorted(out.items()))


def parse_info(node: str, data: Any) -> ServerInfo:
    """``ServerInfo`` from the decoded ``/info/`` JSON; ``RemoteServerError`` if it is not MONAI Label's answer."""
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise RemoteServerError(f"remote node '{node}': /info/ did not answer like a MONAI Label server")
    models = {}
    for name, spec in data.get("models", {}).items():
        spec = spec if isinstance(spec, dict) else {}
        dim = spec.get("dimension")
        models[str(name)] = RemoteModelInfo(
            node,
            str(name),
            _labels(spec.get("labels")),
            str(spec.get("type") or ""),
            str(spec.get("description") or ""),
            dim if isinstance(dim, int) and not isinstance(dim, bool) else None,
            str(spec.get("version") or ""),
        )
    return ServerInfo(str(data.get("name") or ""), str(data.get("version") or ""), models)


def multipart(fields: dict[str, str], file_field: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its content type."""
    boundary = f"----workstation-{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    parts.append(payload)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class _Answer:
    status: int
    reason: str
    body: bytes
    content_type: str


class _Exchange:
    """One HTTP request on a helper thread; ``state`` says how far it got; ``abort`` closes its socket."""

    def __init__(
        self,
        node: RemoteNode,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        answer_timeout: float,
        limit: int,
    ) -> None:
        self.node = node
        self.method, self.path, self.body, self.headers = method, path, body, headers
        self.answer_timeout = answer_timeout
        self.limit = limit
        self.state = "connecting"
        self.answered = False  # an HTTP status line came back
        self.answer: _Answer | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._aborted = False
        self._thread = threading.Thread(target=self._run, name=f"remote-{node.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _connection(self) -> http.client.HTTPConnection:
        url = urllib.parse.urlsplit(self.node.url)
        host, port = url.hostname or "", url.port
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.node.ca_file) if self.node.ca_file else None)
            return http.client.HTTPSConnection(host, port, timeout=self.node.connect_timeout_s, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.node.connect_timeout_s)

    def _run(self) -> None:
        try:
            conn = self._connection()
            with self._lock:
                if self._aborted:
                    return
                self._conn = conn
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.answer_timeout)
            self.state = "uploading"
            conn.putrequest(self.method, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(self.body or b"")))
            conn.endheaders()
            view = memoryview(self.body or b"")
            for start in range(0, len(view), _CHUNK):
                conn.send(view[start : start + _CHUNK])
                self.state = f"uploading ({min(len(view), start + _CHUNK) / 1e6:.1f} of {len(view) / 1e6:.1f} MB)"
            self.state = "waiting for the server"
            response = conn.getresponse()
            self.answered = True
            self.state = "receiving the result"
            data = response.read(self.limit + 1)
            if len(data) > self.limit:
                raise RemoteServerError(f"remote node '{self.node.name}': answer larger than {self.limit} bytes")
            self.answer = _Answer(response.status, response.reason, data, response.getheader("Content-Type") or "")
        except BaseException as exc:  # handed to the waiting thread, which classifies it
            self.error = exc
        finally:
            self.close()
            self.done.set()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            conn.close()

    def abort(self) -> None:
        """Drop the request: the server sees the connection close."""
        with self._lock:
            self._aborted = True
        self.close()


class MonaiLabelClient:
    """Talks to one configured MONAI Label node (see the module docstring)."""

    def __init__(self, node: RemoteNode) -> None:
        self.node = node
        self.base_path = urllib.parse.urlsplit(node.url).path.rstrip("/")

    def _headers(self) -> dict[str, str]:
        headers = {
            "Host": urllib.parse.urlsplit(self.node.url).netloc,
            "Accept": "*/*",
            "User-Agent": "radiology-workstation",
        }
        token = self.node.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "",
        total_timeout: float,
        limit: int,
        cancel: CancelToken,
        on_state: StateCallback,
    ) -> _Answer:
        """One request with retries of failed connections; waits in small steps, honouring ``cancel``."""
        headers = self._headers()
        if content_type:
            headers["Content-Type"] = content_type
        start = time.monotonic()
        attempt = 0
        while True:
            cancel.raise_if_cancelled()
            exchange = _Exchange(
                self.node,
                method,
                self.base_path + path,
                body,
                headers,
                answer_timeout=max(self.node.connect_timeout_s, total_timeout),
                limit=limit,
            )
            exchange.start()
            try:
                self._wait(exchange, start, total_timeout, cancel, on_state)
            except BaseException:  # cancelled, timed out, or the progress callback raised: drop the request
                exchange.abort()
                if cancel.cancelled:
                    logger.info(
                        "remote node '%s': %s %s dropped (cancelled after %.1f s)",
                        self.node.name,
                        method,
                        path,
                        time.monotonic() - start,
                    )
                raise
            cancel.raise_if_cancelled()  # finished just as the user cancelled: drop it all the same
            if exchange.answer is not None:
                return exchange.answer
            error = exchange.error
            if isinstance(error, RemoteServerError):
                raise error
            if isinstance(error, (TimeoutError, socket.timeout)) and exchange.state != "connecting":
                raise RemoteTimeoutError(
                    f"remote node {self.node.describe()} did not answer within {total_timeout:.0f} s ({exchange.state})"
                ) from error
            retryable = isinstance(error, OSError) and not exchange.answered
            if not retryable:
                raise RemoteServerError(
                    f"remote node {self.node.describe()}: {type(error).__name__}: {error} ({exchange.state})"
                ) from error
            if attempt >= self.node.retries:
                raise RemoteUnavailableError(
                    f"remote node {self.node.describe()} cannot be reached ({_reason(error)}); tried "
                    f"{attempt + 1} time(s). Is the server running? The local models still work."
                ) from error
            delay = self.node.backoff_s * (2**attempt)
            attempt += 1
            logger.info(
                "remote node '%s': %s; retry %d of %d in %.1f s",
                self.node.name,
                _reason(error),
                attempt,
                self.node.retries,
                delay,
            )
            on_state(f"cannot connect ({_reason(error)}), retrying", time.monotonic() - start)
            until = time.monotonic() + delay
            while time.monotonic() < until:
                cancel.raise_if_cancelled()
                time.sleep(min(_POLL_S, max(0.0, until - time.monotonic())))

    def _wait(
        self, exchange: _Exchange, start: float, total_timeout: float, cancel: CancelToken, on_state: StateCallback
    ) -> None:
        """Wait for ``exchange`` in small steps, reporting its state when it changes and about once a second."""
        on_state(exchange.state, time.monotonic() - start)
        last_report, last_state = time.monotonic() - start, exchange.state
        while not exchange.done.wait(_POLL_S):
            elapsed = time.monotonic() - start
            cancel.raise_if_cancelled()
            if elapsed > total_timeout:
                raise RemoteTimeoutError(
                    f"remote node {self.node.describe()} did not answer within {total_timeout:.0f} s ({exchange.state})"
                )
            state = exchange.state
            if elapsed - last_report >= 1.0 or state != last_state:
                last_report, last_state = elapsed, state
                on_state(state, elapsed)

    def info(
        self, cancel: CancelToken | None = None, timeout_s: float | None = None, on_state: StateCallback = _no_state
    ) -> ServerInfo:
        """The server's models and labels (``GET /info/``; MONAI Label answers it only between inferences)."""
        answer = self._exchange(
            "GET",
            "/info/",
            total_timeout=timeout_s or self.node.connect_timeout_s * 2,
            limit=MAX_INFO_BYTES,
            cancel=cancel or CancelToken(),
            on_state=on_state,
        )
        self._check(answer, "/info/")
        try:
            data = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RemoteServerError(f"remote node {self.node.describe()}: /info/ is not JSON") from exc
        return parse_info(self.node.name, data)

    def infer(self, model: str, nifti_gz: bytes, *, cancel: CancelToken, on_state: StateCallback = _no_state) -> bytes:
        """Run ``model`` on the uploaded NIfTI image; the label map's NIfTI bytes as the server sent them."""
        body, content_type = multipart({"params": "{}"}, "file", "image.nii.gz", nifti_gz)
        path = f"/infer/{urllib.parse.quote(model, safe='')}?output=image"
        answer = self._exchange(
            "POST",
            path,
            body=body,
            content_type=content_type,
            total_timeout=self.node.timeout_s,
            limit=MAX_RESULT_BYTES,
            cancel=cancel,
            on_state=on_state,
        )
        self._check(answer, f"/infer/{model}", model=model)
        return answer.body

    def _check(self, answer: _Answer, what: str, model: str | None = None) -> None:
        if answer.status < 400:
            if answer.status >= 300:
                raise RemoteServerError(
                    f"remote node {self.node.describe()}: {what} answered with a redirect "
                    f"(HTTP {answer.status}); redirects are not followed"
                )
            return
        detail = _detail(answer.body)
        if model is not None and answer.status == 404:
            raise RemoteModelUnknownError(f"remote node {self.node.describe()} has no model '{model}' ({detail})")
        if answer.status in (401, 403):
            variable = f" variable {self.node.token_env}" if self.node.token_env else ""
            raise RemoteServerError(
                f"remote node {self.node.describe()} refused the request (HTTP {answer.status}: "
                f"check its token{variable})"
            )
        raise RemoteServerError(
            f"remote node {self.node.describe()}: {what} failed on the server "
            f"(HTTP {answer.status} {answer.reason}){': ' + detail if detail else ''}"
        )


def _reason(error: BaseException | None) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return "host name unknown"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "connection timed out"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    return f"{type(error).__name__}: {error}"


def _detail(body: bytes, limit: int = 300) -> str:
    """The server's error text: FastAPI's ``{"detail": ...}`` or the first line of the body, capped."""
    text = body[:4096].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "detail" in data:
            text = str(data["detail"])
    except ValueError:
        pass
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
