"""DICOM TLS and HTTPS: every SSL context of the PACS stack, and TLS failures in words.

One module builds every context (the DIMSE association, the lean C-GET
socket, DICOMweb over ``https://``, and the storage listener), so the policy
is the same everywhere: TLS 1.2 at least; the peer's certificate verified
against the node's CA bundle (or the system's trust store) with its host name
checked unless the node sets ``tls_verify_hostname: false``; our client
certificate when the node has one. A node configured for TLS never falls back
to plain text: a failed handshake raises ``PacsTlsError`` naming the node and
the reason (unknown CA, host name mismatch, expired, client certificate
refused, a plain-text peer...).

Python's ``ssl`` reports failures as OpenSSL reason codes; ``describe_failure``
turns them into sentences. pynetdicom swallows the handshake exception of an
association (it only logs it), so ``handshake_problem`` repeats the handshake
on a fresh connection, sending no DICOM data, to say why; ``speaks_tls`` tells
a plain-text node that the port it calls expects TLS. Neither ever carries data.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

from workstation.pacs.errors import NodeConfigError, PacsTlsError
from workstation.pacs.nodes import LocalAE, PacsNode

logger = logging.getLogger(__name__)

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
HANDSHAKE_TIMEOUT_S = 10.0  # the listener's limit for a caller's handshake (it holds the accept thread)
_POST_HANDSHAKE_WAIT_S = 1.0  # a TLS 1.3 server refuses a client certificate only after the handshake

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) of a failed certificate verification.
_UNKNOWN_CA = {2, 18, 19, 20, 21, 27}
_EXPIRED, _NOT_YET_VALID, _REVOKED = 10, 9, 23
_NAME_MISMATCH = {62, 63, 64}
# OpenSSL reason codes (ssl.SSLError.reason), grouped by what they mean for a user.
_PLAIN_TEXT = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "PACKET_LENGTH_TOO_LONG",
               "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH", "UNEXPECTED_MESSAGE"}
_CERT_REFUSED = {"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                 "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
                 "TLSV1_ALERT_ACCESS_DENIED", "TLSV1_ALERT_DECRYPT_ERROR"}
_CERT_MISSING = {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}
_OUR_CERT_EXPIRED = {"SSLV3_ALERT_CERTIFICATE_EXPIRED"}
_PROTOCOL = {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE",
             "VERSION_TOO_LOW"}
_NO_COMMON_CIPHER = {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE",
                     "TLSV1_ALERT_INSUFFICIENT_SECURITY"}

_cache: dict[tuple[Any, ...], ssl.SSLContext] = {}
_cache_lock = threading.Lock()


# --- contexts -----------------------------------------------------------------------------------
def _file_key(path: Path | None) -> tuple[str, int, int] | None:
    """A cache key that changes when the file is replaced (a renewed certificate is picked up)."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def _need_file(path: Path, key: str, owner: str) -> None:
    if not path.is_file():
        raise NodeConfigError(f"{owner}: {key} {str(path)!r} does not exist or is not a file")


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None, owner: str) -> None:
    _need_file(cert, "tls_cert_file", owner)
    if key is not None:
        _need_file(key, "tls_key_file", owner)
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    except ssl.SSLError as exc:
        raise NodeConfigError(f"{owner}: cannot use the certificate {cert.name!r} with its key "
                              f"({exc.reason or exc}): are both PEM, and does the key belong to the certificate?"
                              ) from exc
    except OSError as exc:
        raise NodeConfigError(f"{owner}: cannot read the certificate or key ({exc.strerror or exc})") from exc


def _load_ca(context: ssl.SSLContext, ca: Path, owner: str) -> None:
    _need_file(ca, "tls_ca_file", owner)
    try:
        context.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise NodeConfigError(f"{owner}: tls_ca_file {ca.name!r} holds no usable PEM certificate "
                              f"({exc.reason or exc})") from exc


def client_context(node: PacsNode) -> ssl.SSLContext:
    """The context for connections to ``node`` (DICOM TLS and HTTPS): verified, TLS 1.2+, cached.

    The cache is keyed by the settings and the files' modification times, so
    a replaced CA bundle or certificate takes effect on the next connection.
    """
    key = ("client", _file_key(node.tls_ca_file), _file_key(node.tls_cert_file), _file_key(node.tls_key_file),
           node.tls_verify_hostname)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    owner = f"PACS node {node.name!r}"
    if node.tls_ca_file is not None:
        # The site's CA bundle replaces the system store: trust exactly what the site says.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and host name check by default
        _load_ca(context, node.tls_ca_file, owner)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the same, with the system's CAs
    context.minimum_version = MINIMUM_VERSION
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = node.tls_verify_hostname
    if node.tls_cert_file is not None:
        _load_chain(context, node.tls_cert_file, node.tls_key_file, owner)
    with _cache_lock:
        _cache[key] = context
    return context


def tls_args(node: PacsNode) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for an association with ``node``: ``None`` for a plain-text node."""
    return (client_context(node), node.host) if node.tls else None


class ListenerContext(ssl.SSLContext):
    """A server context whose handshake has a time limit and whose failures are logged in words.

    pynetdicom wraps each accepted socket on its accept thread: without a
    limit, a caller that connects and never speaks would stop the listener
    accepting anyone else. A failed handshake (a plain-text caller, a client
    certificate from an unknown CA) is dropped with a warning naming the
    caller's address and the reason.
    """

    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        """Wrap and handshake within ``handshake_timeout_s``, then restore the socket's timeout."""
        previous = sock.gettimeout()
        try:
            host, port = sock.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "an unknown address"
        sock.settimeout(self.handshake_timeout_s)
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except (ssl.SSLError, OSError) as exc:
            logger.warning("refused a DICOM TLS caller from %s: %s", peer, describe_failure(exc, server_side=True,
                           timeout_s=self.handshake_timeout_s))
            raise
        wrapped.settimeout(previous)
        return wrapped


def server_context(local: LocalAE) -> ListenerContext:
    """The storage listener's context: its certificate, TLS 1.2+, callers' certificates checked as configured."""
    owner = f"the storage listener ({local.ae_title})"
    if local.tls_cert_file is None:
        raise NodeConfigError(f"{owner}: tls is on but tls_cert_file (the listener's certificate) is not set")
    context = ListenerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    _load_chain(context, local.tls_cert_file, local.tls_key_file, owner)
    if local.tls_ca_file is not None:
        _load_ca(context, local.tls_ca_file, owner)
        context.verify_mode = ssl.CERT_REQUIRED if local.tls_require_client_cert else ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


# --- failures in words ----------------------------------------------------------------------------
def describe_failure(exc: BaseException, *, server_side: bool = False, timeout_s: float = 0.0) -> str:
    """Why a TLS handshake failed, in words a user (or IT) can act on."""
    peer = "the caller" if server_side else "the peer"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = int(getattr(exc, "verify_code", 0) or 0)
        detail = str(getattr(exc, "verify_message", "") or exc.reason or exc)
        whose = "the caller's client certificate" if server_side else f"{peer}'s certificate"
        where = "the listener's tls_ca_file" if server_side else "tls_ca_file (or the system's trust store)"
        if code in _UNKNOWN_CA:
            return f"unknown CA: {whose} is not signed by a CA in {where} ({detail})"
        if code == _EXPIRED:
            return f"{whose} has expired ({detail})"
        if code == _NOT_YET_VALID:
            return f"{whose} is not valid yet (check both computers' clocks) ({detail})"
        if code == _REVOKED:
            return f"{whose} has been revoked ({detail})"
        if code in _NAME_MISMATCH:
            return (f"host name mismatch: {whose} does not name the host we called ({detail}); call it by a name "
                    "its certificate holds, or set tls_verify_hostname: false if the certificate is right")
        return f"{whose} was not accepted ({detail})"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        if reason in _PLAIN_TEXT:
            return f"{peer} answered in plain text, not TLS: a plain-text peer, this port does not speak TLS ({reason})"
        if reason in _CERT_MISSING:
            return f"{peer} sent no client certificate, and the listener requires one ({reason})"
        if reason in _CERT_REFUSED:
            if server_side:
                return f"{peer} refused the listener's certificate ({reason})"
            return (f"{peer} refused our client certificate, or wants one and we sent none ({reason}); check the "
                    "node's tls_cert_file and tls_key_file, and that the peer trusts their CA")
        if reason in _OUR_CERT_EXPIRED:
            return f"{peer} says our certificate has expired ({reason})"
        if reason in _PROTOCOL:
            return f"{peer} offers no TLS version we accept (TLS 1.2 or later) ({reason})"
        if reason in _NO_COMMON_CIPHER:
            return f"TLS handshake failure: {peer} and we share no cipher suite or key type ({reason})"
        if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
            return (f"{peer} closed the connection during the TLS handshake: it probably does not speak TLS on "
                    "this port (a plain-text peer), or it refused our client certificate")
        return f"TLS handshake failure ({reason or exc})"
    if isinstance(exc, TimeoutError):
        return (f"{peer} did not answer the TLS handshake within {timeout_s:g} s: it probably does not speak TLS "
                "on this port (a plain-text peer)")
    if isinstance(exc, ConnectionError):
        return (f"{peer} closed the connection during the TLS handshake: it probably does not speak TLS on this "
                "port (a plain-text peer), or it refused our client certificate")
    return f"TLS handshake failure ({exc})"


def tls_error(node: PacsNode, exc: BaseException, *, what: str = "DICOM TLS", timeout_s: float = 0.0) -> PacsTlsError:
    """The ``PacsTlsError`` for a failed handshake with ``node``."""
    return PacsTlsError(f"{what} with PACS {node.describe()} failed: "
                        f"{describe_failure(exc, timeout_s=timeout_s)}. Nothing was sent in plain text.")


# --- client sockets and diagnosis -----------------------------------------------------------------
def wrap_client(sock: socket.socket, node: PacsNode, timeout_s: float) -> ssl.SSLSocket:
    """Handshake with ``node`` over a connected socket (the lean C-GET); a failure is a ``PacsTlsError``."""
    sock.settimeout(timeout_s)
    try:
        return client_context(node).wrap_socket(sock, server_hostname=node.host)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        raise tls_error(node, exc, timeout_s=timeout_s) from exc


def handshake_problem(node: PacsNode, timeout_s: float, *, host: str = "", port: int = 0) -> BaseException | None:
    """Repeat the TLS handshake with ``node`` on a fresh connection; the exception that ends it, or ``None``.

    Called after a connection to a TLS node failed without an answer:
    pynetdicom logs the handshake error instead of raising it, and an HTTPS
    server that refuses our client certificate after the handshake (TLS 1.3)
    shows up as a reset connection. No data is sent; this waits briefly for
    such a late alert. ``host``/``port`` default to the node's DICOM address
    (the DICOMweb URL's for HTTPS). ``None``: TCP failed too (the caller
    reports that) or TLS is fine (the failure lies elsewhere).
    """
    host, port = host or node.host, port or node.port
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return None
    try:
        with client_context(node).wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(min(timeout_s, _POST_HANDSHAKE_WAIT_S))
            try:
                tls.recv(1)
            except ssl.SSLError as exc:
                return exc
            except OSError:
                return None
    except (ssl.SSLError, OSError) as exc:
        return exc
    finally:
        raw.close()
    return None


def speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """True when ``host:port`` answers a TLS handshake (told to a plain-text node calling a TLS port).

    Diagnosis only: the certificate is not checked and no data is sent.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return False
    try:
        with context.wrap_socket(raw, server_hostname=host):
            return True
    except ssl.SSLEOFError:
        return False
    except ssl.SSLError as exc:
        # A TLS alert (certificate required, no common cipher...) comes from a TLS server; garbage does not.
        return str(exc.reason or "") not in _PLAIN_TEXT
    except OSError:
        return False
    finally:
        raw.close()


def plain_to_tls_error(node: PacsNode, *, https: bool = False) -> PacsTlsError:
    """The error for a plain-text node whose peer expects TLS (the DICOM port, or HTTPS for DICOMweb)."""
    if https:
        return PacsTlsError(f"DICOMweb server {node.dicomweb_url} of node {node.name!r} expects HTTPS: change the "
                            "node's DICOMweb URL to https://")
    return PacsTlsError(f"PACS {node.describe()} expects DICOM TLS on that port, but node {node.name!r} is "
                        "configured for plain text: set tls: true (with tls_ca_file, and tls_cert_file if the PACS "
                        "asks for a client certificate)")


__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "MINIMUM_VERSION",
    "ListenerContext",
    "client_context",
    "describe_failure",
    "handshake_problem",
    "plain_to_tls_error",
    "server_context",
    "speaks_tls",
    "tls_args",
    "tls_error",
    "wrap_client",
]
