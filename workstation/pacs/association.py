"""Opening DIMSE associations, and turning every way it can fail into a clear ``PacsError``.

pynetdicom reports a failed association as flags on the association object
(rejected, aborted) and log lines; this module turns them into exceptions that
say what happened and what to check: nothing listening, an unknown host, a
rejection naming the unknown AE title, a peer that connected but never answered.

It also makes pynetdicom quiet about data sets: its default is to log C-FIND
identifiers, which hold patient names and IDs, and those never go in our logs.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT
from pynetdicom.presentation import PresentationContext, build_context

from workstation.pacs import tls
from workstation.pacs.errors import (
    AssociationRejectedError,
    NodeConfigError,
    PacsConnectionError,
    PacsError,
    PacsRequestError,
    PacsTimeoutError,
    TransferInterruptedError,
    UnknownAETitleError,
)
from workstation.pacs.nodes import LocalAE, PacsNode

logger = logging.getLogger(__name__)

# Patient data never in logs: pynetdicom logs request/response identifiers unless told not to.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
# Every pynetdicom failure becomes one of our exceptions with a clearer message; its standard handlers
# (which log every PDU and DIMSE message) cost more CPU than receiving an instance: off unless asked for.
logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
_config.LOG_HANDLER_LEVEL = "none"


def verbose_pynetdicom(on: bool = True) -> None:
    """Let pynetdicom log every association, PDU and message (for ``-vv``); identifiers stay out."""
    _config.LOG_HANDLER_LEVEL = "standard" if on else "none"
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if on else logging.CRITICAL)


UNCOMPRESSED = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
]
COMPRESSED = [
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.203",  # HTJ2K
]
TRANSFER_SYNTAXES = UNCOMPRESSED + COMPRESSED
# Image classes that get compressed contexts when we do not know what a retrieve will bring.
_COMMON_IMAGES = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG for presentation
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary capture
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
]
_COMMON_COMPRESSED = COMPRESSED[:5]
MAX_CONTEXTS = 128

_REJECT_SOURCE_USER = 1
_REJECT_SOURCE_PROVIDER_PRESENTATION = 3
Ending = Literal["aborted", "lost"]
# How each association ended when the peer ended it: an A-ABORT from the peer ("aborted") or the connection
# closing without one, or a protocol abort of the peer's upper layer ("lost": pynetdicom's A-P-ABORT).
_endings: weakref.WeakKeyDictionary[Association, Ending] = weakref.WeakKeyDictionary()


def _on_acse(event: Any) -> None:
    if isinstance(event.primitive, A_P_ABORT):
        _endings[event.assoc] = "lost"
    elif isinstance(event.primitive, A_ABORT):
        _endings[event.assoc] = "aborted"


def how_it_ended(assoc: Association, wait_s: float = 1.0) -> Ending | None:
    """"aborted" (the peer sent an A-ABORT), "lost" (the connection closed without one), or None.

    Called after an operation got no response: pynetdicom wakes the operation
    before its reactor thread has processed the abort, so this waits (briefly)
    for that thread to finish first.
    """
    if assoc.is_alive():
        assoc.join(wait_s)
    return _endings.get(assoc)


def storage_contexts(sop_classes: Collection[str] = (), budget: int = MAX_CONTEXTS - 1) -> list[PresentationContext]:
    """Presentation contexts to receive instances on (C-GET), within ``budget`` contexts.

    An acceptor picks one transfer syntax per context, and a C-GET peer can send
    an instance only in a transfer syntax agreed for its SOP class, so each
    compressed syntax gets a context of its own: then the PACS sends what it
    stores and never has to transcode (which many cannot do for JPEG 2000).
    With the SOP classes known (from an image-level C-FIND), every syntax is
    offered for each of them; otherwise the common image classes get the
    lossless syntaxes and pynetdicom's storage classes the uncompressed ones.
    """
    from pynetdicom import StoragePresentationContexts

    per_class = 1 + len(COMPRESSED)
    classes = sorted(set(sop_classes))
    if classes and len(classes) * per_class <= budget:
        out = []
        for uid in classes:
            out.append(build_context(uid, UNCOMPRESSED))
            out.extend(build_context(uid, [ts]) for ts in COMPRESSED)
        return out
    out = [build_context(uid, [ts]) for uid in _COMMON_IMAGES for ts in _COMMON_COMPRESSED]
    for cx in StoragePresentationContexts:
        if len(out) >= budget:
            break
        out.append(build_context(cx.abstract_syntax, UNCOMPRESSED))
    return out


def make_ae(local: LocalAE, timeout_s: float) -> AE:
    """An AE with our title, PDU size and timeouts (connect, association, DIMSE, network)."""
    ae = AE(ae_title=local.ae_title)
    ae.maximum_pdu_size = local.max_pdu
    ae.connection_timeout = timeout_s
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    return ae


def connection_failure(exc: OSError, host: str, timeout_s: float) -> str:
    """Why a TCP connection failed, in words."""
    if isinstance(exc, socket.gaierror):
        return f"the host name {host!r} is unknown"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s (host down, or a firewall drops the connection)"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing is listening on that port (connection refused)"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to the host"
    return exc.strerror or str(exc)


def _probe(host: str, port: int, timeout_s: float) -> str:
    """Why a TCP connection to ``host:port`` fails, in words (called only after a failure)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return "the connection closed before the association could start"
    except OSError as exc:
        return connection_failure(exc, host, timeout_s)


def _unread_rejection(assoc: Association) -> A_ASSOCIATE | None:
    """An A-ASSOCIATE-RJ the peer sent that pynetdicom left unread in its queue, or None.

    pynetdicom race: when a fast peer (a local PACS) rejects and closes the
    connection before the requesting thread has checked that the socket
    connected, pynetdicom sees a closed socket, aborts, and never reads the
    rejection it already queued, so a plain "wrong AE title" would be reported
    as an abort.
    """
    dul = getattr(assoc, "dul", None)
    pending = getattr(getattr(dul, "to_user_queue", None), "queue", ())
    for primitive in list(pending):
        if isinstance(primitive, A_ASSOCIATE) and getattr(primitive, "result", None) in (1, 2):
            return primitive
    return None


def rejection_error(node: PacsNode, local: LocalAE, primitive: Any) -> AssociationRejectedError:
    """The error for an A-ASSOCIATE-RJ, naming the AE title the peer did not recognise."""
    result = int(getattr(primitive, "result", 0) or 0)
    source = int(getattr(primitive, "result_source", 0) or 0)
    reason = int(getattr(primitive, "diagnostic", 0) or 0)
    where = f"{node.host}:{node.port}"
    permanence = "permanently" if result == 1 else "for now"
    if source == _REJECT_SOURCE_USER and reason == 7:
        return UnknownAETitleError(
            f"PACS at {where} refused the association: it does not answer to the AE title "
            f"{node.ae_title!r} (check the called AE title of node {node.name!r})", result, source, reason)
    if source == _REJECT_SOURCE_USER and reason == 3:
        return UnknownAETitleError(
            f"PACS {node.describe()} refused the association: it does not know our AE title "
            f"{local.ae_title!r} (ask its administrator to add AE {local.ae_title!r} with this computer's "
            f"address)", result, source, reason)
    if source == _REJECT_SOURCE_PROVIDER_PRESENTATION:
        return AssociationRejectedError(
            f"PACS {node.describe()} is busy and refused the association {permanence} "
            f"({getattr(primitive, 'reason_str', 'no reason given')}); try again later", result, source, reason)
    return AssociationRejectedError(
        f"PACS {node.describe()} refused the association {permanence}: "
        f"{getattr(primitive, 'reason_str', 'no reason given')}", result, source, reason)


@contextmanager
def associate(node: PacsNode, local: LocalAE, contexts: Sequence[PresentationContext], *,
              ext_neg: list[Any] | None = None, handlers: list[Any] | None = None,
              timeout_s: float | None = None) -> Iterator[Association]:
    """An established association with ``node``, released on exit (aborted if the body raised).

    The one way this package opens a pynetdicom association, so every DIMSE
    operation gets the node's DICOM TLS (``tls.tls_args``): a TLS node's
    handshake failure is a ``PacsTlsError``, never a retry in plain text.
    """
    if not node.has_dimse:
        raise NodeConfigError(f"PACS node {node.name!r} has no DIMSE address (AE title, host and port)")
    timeout = timeout_s if timeout_s is not None else node.timeout_s
    ae = make_ae(local, timeout)
    ae.requested_contexts = list(contexts)
    seen: dict[str, bool] = {"open": False, "data": False}

    def _opened(_event: Any) -> None:
        seen["open"] = True

    def _data(_event: Any) -> None:
        seen["data"] = True

    all_handlers = [(evt.EVT_CONN_OPEN, _opened), (evt.EVT_DATA_RECV, _data), (evt.EVT_ACSE_RECV, _on_acse),
                    *(handlers or [])]
    t0 = time.monotonic()
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=ext_neg,
                         evt_handlers=all_handlers, tls_args=tls.tls_args(node))
    try:
        if not assoc.is_established:
            if assoc.is_rejected:
                raise rejection_error(node, local, assoc.acceptor.primitive)
            late = _unread_rejection(assoc)
            if late is not None:
                raise rejection_error(node, local, late)
            if node.tls and not seen["data"]:
                # pynetdicom logs a failed handshake and reports only "closed": repeat it to say why.
                problem = tls.handshake_problem(node, min(timeout, 5.0))
                if problem is not None:
                    raise tls.tls_error(node, problem, timeout_s=min(timeout, 5.0)) from problem
            if not seen["open"]:
                raise PacsConnectionError(
                    f"cannot connect to PACS {node.describe()}: {_probe(node.host, node.port, min(timeout, 5.0))}")
            if not seen["data"] and time.monotonic() - t0 >= timeout * 0.9:
                raise PacsTimeoutError(
                    f"PACS {node.describe()} accepted the connection but did not answer the association "
                    f"request within {timeout:g} s (is it a DICOM service, and is the port right?)")
            if not node.tls and not seen["data"] and tls.speaks_tls(node.host, node.port, min(timeout, 5.0)):
                raise tls.plain_to_tls_error(node)
            raise AssociationRejectedError(
                f"PACS {node.describe()} aborted the association request (it may not accept our AE title "
                f"{local.ae_title!r} or the services we asked for)")
        logger.debug("association with %s established", node.describe())
        assoc.unbind(evt.EVT_DATA_RECV, _data)  # called for every chunk received: only needed until here
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
    finally:
        ae.shutdown()


def _still_listening(node: PacsNode) -> bool:
    """True if the node's port still accepts a TCP connection (a PACS that died refuses it)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=2.0):
            return True
    except OSError:
        return False


def no_response_error(node: PacsNode, what: str, waited_s: float, timeout_s: float, done: int = 0, *,
                      answered: bool = True, local_ae: str = "", ended: Ending | None = None) -> PacsError:
    """The error for an operation that got no (valid) response: a timeout, a refusal, or a dropped peer.

    ``answered`` is False when the peer had not answered this operation at all.
    A peer that sends an A-ABORT right away (``ended="aborted"``) and still
    accepts connections is refusing the request, most often because it does
    not allow it from our AE title (Orthanc does this). A peer whose connection
    closed without an A-ABORT (``ended="lost"``), or whose port refuses
    connections afterwards, stopped or crashed, or the network failed: that is
    not a refusal, and the message says so.
    """
    if waited_s >= timeout_s * 0.9:
        return PacsTimeoutError(f"PACS {node.describe()} did not answer the {what} within {timeout_s:g} s")
    listening = _still_listening(node) if not answered and not done and ended is not None else True
    if not answered and not done and (ended == "lost" or not listening):
        state = ("its port no longer accepts connections: it stopped or crashed" if not listening
                 else "the connection closed without a DICOM abort: the PACS or the network failed")
        return TransferInterruptedError(
            f"PACS {node.describe()} went away during the {what} before answering ({state}); try again once it "
            "is back, and tell its administrator if it happens again")
    if not answered and not done:
        return PacsRequestError(
            f"PACS {node.describe()} closed the association instead of answering the {what}: it probably does "
            f"not allow {what} from our AE title {local_ae!r} (ask its administrator to add AE {local_ae!r} "
            "with this computer's address to its DICOM modalities)")
    kept = f"; the {done} instance(s) received before are kept, a retry continues from there" if done else ""
    how = " (connection lost)" if ended == "lost" else ""
    return TransferInterruptedError(
        f"PACS {node.describe()} dropped the association during the {what}{how}{kept}", done)


def require_context(assoc: Association, sop_class: str, node: PacsNode, what: str) -> None:
    """Raise a clear error when the peer accepted no presentation context for ``sop_class``."""
    if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
        raise PacsRequestError(f"PACS {node.describe()} does not offer {what}")


__all__ = [
    "COMPRESSED",
    "MAX_CONTEXTS",
    "TRANSFER_SYNTAXES",
    "UNCOMPRESSED",
    "associate",
    "connection_failure",
    "how_it_ended",
    "make_ae",
    "no_response_error",
    "rejection_error",
    "require_context",
    "storage_contexts",
    "verbose_pynetdicom",
]
