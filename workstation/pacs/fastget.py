"""A lean C-GET client: the DICOM upper layer for this one job, written for throughput.

pynetdicom handles each P-DATA PDU with several Python objects, queues and
events, and many PACS (Orthanc among them) send 16 KiB PDUs: a 512 KiB CT
slice costs ~35 PDUs, about 5 ms of CPU, four times dcmtk's ``getscu``. Here
each PDU is read into one reusable buffer and its data fragments go straight
to the instance's file; commands are parsed and built by hand (implicit VR
little endian, a few fixed elements). pynetdicom still encodes and decodes
the association PDUs (A-ASSOCIATE-RQ/AC/RJ), which are rare.

Scope: requestor of one association, C-GET (Study Root) with storage
sub-operations on the same association. Errors are the same ``PacsError``s
as the pynetdicom path (``dimse.DimseClient.get(fast=False)``).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext

from inference.cancel import CancelledError, CancelToken
from workstation.pacs import tls
from workstation.pacs.association import rejection_error
from workstation.pacs.errors import (
    AssociationRejectedError,
    PacsConnectionError,
    PacsError,
    PacsRequestError,
    PacsTimeoutError,
    PacsTlsError,
    TransferInterruptedError,
)
from workstation.pacs.nodes import LocalAE, PacsNode
from workstation.pacs.storage import InstanceWriter, PendingInstance, file_header

logger = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_UID = PYNETDICOM_IMPLEMENTATION_UID  # its PDU encoders make our association requests
IMPLEMENTATION_NAME = "RADWORKSTATION"
MAX_PDU_ACCEPTED = 64 << 20  # a larger PDU length is a corrupt stream, not data
C_STORE_RQ, C_STORE_RSP, C_GET_RQ, C_GET_RSP = 0x0001, 0x8001, 0x0010, 0x8010
NO_DATASET = 0x0101
_PENDING = (0xFF00, 0xFF01)
_HEAD = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")
_ELEMENT = struct.Struct("<HHI")
_ABORT = b"\x07\x00" + struct.pack(">I", 4) + b"\x00\x00\x00\x00"
_RELEASE = b"\x05\x00" + struct.pack(">I", 4) + b"\x00\x00\x00\x00"


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def command(elements: dict[int, bytes]) -> bytes:
    """An implicit VR little endian command set (group 0000) with its group length."""
    body = b"".join(_ELEMENT.pack(0, e, len(v)) + v for e, v in sorted(elements.items()))
    return _ELEMENT.pack(0, 0, 4) + struct.pack("<I", len(body)) + body


def parse_command(data: bytes | bytearray) -> dict[int, bytes]:
    """Element number -> raw value of an implicit VR little endian command set."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        _group, elem, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        out[elem] = bytes(data[pos:pos + length])
        pos += length
    return out


def _us(cmd: dict[int, bytes], elem: int, default: int = 0) -> int:
    v = cmd.get(elem)
    return int(struct.unpack("<H", v[:2])[0]) if v and len(v) >= 2 else default


def _text(cmd: dict[int, bytes], elem: int) -> str:
    return cmd.get(elem, b"").rstrip(b"\x00 ").decode("ascii", "replace")


class FastGet:
    """One association to ``node`` for C-GET, with instances streamed to an ``InstanceWriter``."""

    def __init__(self, node: PacsNode, local: LocalAE, timeout_s: float) -> None:
        self.node, self.local, self.timeout_s = node, local, timeout_s
        self.sock: socket.socket | None = None
        self.buf = bytearray(1 << 20)
        self.peer_max = 0
        self.contexts: dict[int, tuple[str, str]] = {}
        self._final: tuple[int, tuple[int, int, int]] = (0, (0, 0, 0))

    # --- transport ------------------------------------------------------------------
    def _recv_into(self, view: memoryview, what: str, done: int) -> None:
        assert self.sock is not None
        got = 0
        while got < len(view):
            try:
                n = self.sock.recv_into(view[got:])
            except TimeoutError:
                raise PacsTimeoutError(f"PACS {self.node.describe()} sent nothing for {self.timeout_s:g} s "
                                       f"during the {what}") from None
            except ssl.SSLError as exc:  # e.g. a TLS 1.3 peer refusing our client certificate after the handshake
                raise tls.tls_error(self.node, exc, timeout_s=self.timeout_s) from exc
            except OSError as exc:
                raise self._dropped(what, done, exc.strerror or str(exc)) from None
            if n == 0:
                raise self._dropped(what, done, "connection closed")
            got += n

    def _dropped(self, what: str, done: int, how: str) -> PacsError:
        kept = f"; the {done} instance(s) received before are kept, a retry continues from there" if done else ""
        return TransferInterruptedError(f"PACS {self.node.describe()} dropped the association during the "
                                        f"{what} ({how}){kept}", done)

    def read_pdu(self, what: str, done: int = 0) -> tuple[int, memoryview]:
        """The next PDU: ``(type, body)``; the body is valid until the next call."""
        head = bytearray(6)
        self._recv_into(memoryview(head), what, done)
        kind, length = _HEAD.unpack(head)
        if length > MAX_PDU_ACCEPTED:
            raise self._dropped(what, done, f"a PDU of {length} bytes: the stream is corrupt")
        if length > len(self.buf):
            self.buf = bytearray(length)
        body = memoryview(self.buf)[:length]
        self._recv_into(body, what, done)
        return kind, body

    def send(self, data: bytes) -> None:
        """Send bytes (a whole PDU)."""
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except ssl.SSLError as exc:
            raise tls.tls_error(self.node, exc, timeout_s=self.timeout_s) from exc
        except OSError as exc:
            raise self._dropped("C-GET", 0, exc.strerror or str(exc)) from None

    def send_message(self, context_id: int, cmd: bytes, dataset: bytes = b"") -> None:
        """A DIMSE message as P-DATA-TF PDUs, fragmented to the peer's maximum PDU length."""
        room = (self.peer_max - 6) if self.peer_max else (1 << 20)
        for payload, is_command in ((cmd, True), (dataset, False)):
            if not payload and not is_command:
                continue
            for start in range(0, max(len(payload), 1), room):
                piece = payload[start:start + room]
                mch = (1 if is_command else 0) | (2 if start + room >= len(payload) else 0)
                item = _PDV.pack(len(piece) + 2, context_id, mch) + piece
                self.send(b"\x04\x00" + struct.pack(">I", len(item)) + item)

    # --- association ----------------------------------------------------------------
    def open(self, contexts: Sequence[PresentationContext], scp_roles: Sequence[str]) -> None:
        """Connect (with the node's DICOM TLS) and negotiate; raise a clear error when refused."""
        from workstation.pacs.association import connection_failure

        try:
            self.sock = socket.create_connection((self.node.host, self.node.port), timeout=self.timeout_s)
        except OSError as exc:
            raise PacsConnectionError(f"cannot connect to PACS {self.node.describe()}: "
                                      f"{connection_failure(exc, self.node.host, self.timeout_s)}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.node.tls:  # the same context as every other association (tls.client_context); never plain text
            self.sock = tls.wrap_client(self.sock, self.node, self.timeout_s)
        primitive = A_ASSOCIATE()
        primitive.application_context_name = APPLICATION_CONTEXT
        primitive.calling_ae_title = self.local.ae_title
        primitive.called_ae_title = self.node.ae_title
        for i, cx in enumerate(contexts):
            cx.context_id = 2 * i + 1
        primitive.presentation_context_definition_list = list(contexts)
        info: list[Any] = []
        max_len = MaximumLengthNotification()
        max_len.maximum_length_received = self.local.max_pdu
        impl = ImplementationClassUIDNotification()
        impl.implementation_class_uid = IMPLEMENTATION_UID
        name = ImplementationVersionNameNotification()
        name.implementation_version_name = IMPLEMENTATION_NAME
        info += [max_len, impl, name]
        for uid in scp_roles:
            role = SCP_SCU_RoleSelectionNegotiation()
            role.sop_class_uid, role.scu_role, role.scp_role = uid, False, True
            info.append(role)
        primitive.user_information = info
        rq = A_ASSOCIATE_RQ()
        rq.from_primitive(primitive)
        try:
            self.send(rq.encode())
        except (PacsTlsError, TransferInterruptedError) as exc:
            reason = self._tls_reason(exc)
            if reason is exc:
                raise
            raise reason from exc
        t0 = time.monotonic()
        try:
            kind, body = self.read_pdu("association request")
        except (TransferInterruptedError, PacsTimeoutError, PacsTlsError) as exc:
            reason = self._tls_reason(exc)
            if reason is not exc:
                raise reason from exc
            if isinstance(exc, PacsTlsError):
                raise
            if isinstance(exc, PacsTimeoutError) or time.monotonic() - t0 >= self.timeout_s * 0.9:
                raise PacsTimeoutError(f"PACS {self.node.describe()} accepted the connection but did not answer the "
                                       f"association request within {self.timeout_s:g} s (is it a DICOM service, "
                                       "and is the port right?)") from None
            if not self.node.tls and tls.speaks_tls(self.node.host, self.node.port, min(self.timeout_s, 5.0)):
                raise tls.plain_to_tls_error(self.node) from None
            raise AssociationRejectedError(f"PACS {self.node.describe()} closed the connection instead of answering "
                                           "the association request") from None
        raw = _HEAD.pack(kind, len(body)) + bytes(body)
        if kind == 0x03:
            rj = A_ASSOCIATE_RJ()
            rj.decode(raw)
            raise rejection_error(self.node, self.local, rj.to_primitive())
        if kind != 0x02:
            raise AssociationRejectedError(f"PACS {self.node.describe()} aborted the association request (it may not "
                                           f"accept our AE title {self.local.ae_title!r} or the services asked for)")
        ac = A_ASSOCIATE_AC()
        ac.decode(raw)
        answer = ac.to_primitive()
        asked = {cx.context_id: str(cx.abstract_syntax) for cx in contexts}
        for cx in answer.presentation_context_definition_results_list or []:
            if cx.result == 0 and cx.context_id in asked and cx.transfer_syntax:
                self.contexts[int(cx.context_id or 0)] = (asked[cx.context_id], str(cx.transfer_syntax[0]))
        for item in answer.user_information or []:
            if isinstance(item, MaximumLengthNotification):
                self.peer_max = int(item.maximum_length_received or 0)  # 0: no limit

    def _tls_reason(self, exc: PacsError) -> PacsError:
        """For a TLS node, why a fresh handshake fails (a TLS 1.3 peer refuses our client certificate only
        after the handshake, so the first sign is a dropped connection); ``exc`` when it says nothing more."""
        if self.node.tls:
            problem = tls.handshake_problem(self.node, min(self.timeout_s, 5.0))
            if problem is not None:
                return tls.tls_error(self.node, problem, timeout_s=min(self.timeout_s, 5.0))
        return exc

    def close(self, *, abort: bool = False) -> None:
        """Release (or abort) and close."""
        if self.sock is None:
            return
        try:
            if abort:
                self.sock.sendall(_ABORT)
            else:
                self.sock.sendall(_RELEASE)
                self.sock.settimeout(min(self.timeout_s, 5.0))
                while True:
                    kind, _ = self.read_pdu("release")
                    if kind in (0x06, 0x07):
                        break
        except (OSError, PacsError):
            pass
        finally:
            self.sock.close()
            self.sock = None

    # --- C-GET ----------------------------------------------------------------------
    def get(self, model: str, identifier: Dataset, msg_id: int, writer: InstanceWriter, study_uid: str,
            series_uid: str, cancel: CancelToken | None, on_stored: Any) -> tuple[int, int, int]:
        """One C-GET request; instances go to ``writer``. Returns ``(completed, failed, warning)``."""
        get_cx = next((cid for cid, (abstract, _) in self.contexts.items() if abstract == model), None)
        if get_cx is None:
            raise PacsRequestError(f"PACS {self.node.describe()} does not offer C-GET (Study Root)")
        uid = UID(self.contexts[get_cx][1])
        ident = encode(identifier, uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)
        if ident is None:
            raise PacsRequestError("could not encode the C-GET identifier")
        self.send_message(get_cx, command({0x0002: _ui(model), 0x0100: struct.pack("<H", C_GET_RQ),
                                           0x0110: struct.pack("<H", msg_id), 0x0700: struct.pack("<H", 0),
                                           0x0800: struct.pack("<H", 0)}), ident)
        state: dict[str, Any] = {"pending": None}
        try:
            return self._responses(writer, study_uid, series_uid, cancel, on_stored, state)
        finally:
            if state["pending"] is not None:
                state["pending"].discard()

    def _responses(self, writer: InstanceWriter, study_uid: str, series_uid: str, cancel: CancelToken | None,
                   on_stored: Any, state: dict[str, Any]) -> tuple[int, int, int]:
        cmd_buf = bytearray()
        store: dict[str, Any] = {}
        pending: PendingInstance | None = None
        answered = False
        while True:
            kind, body = self.read_pdu("C-GET", len(writer.received))
            if kind == 0x07:
                raise self._dropped("C-GET", len(writer.received), "A-ABORT") if (
                    answered or writer.received) else PacsRequestError(
                    f"PACS {self.node.describe()} aborted instead of answering the C-GET: it probably does not "
                    f"allow C-GET from our AE title {self.local.ae_title!r} (ask its administrator to add AE "
                    f"{self.local.ae_title!r} with this computer's address to its DICOM modalities)")
            if kind != 0x04:
                raise self._dropped("C-GET", len(writer.received), f"unexpected PDU type {kind}")
            pos, end = 0, len(body)
            while pos < end:
                item_len, cid, mch = _PDV.unpack_from(body, pos)
                data = body[pos + 6:pos + 4 + item_len]
                pos += 4 + item_len
                if mch & 1:
                    cmd_buf += data
                    if not mch & 2:
                        continue
                    cmd = parse_command(cmd_buf)
                    cmd_buf.clear()
                    field = _us(cmd, 0x0100)
                    if field == C_STORE_RQ:
                        store = {"cid": cid, "msg": _us(cmd, 0x0110), "cls": _text(cmd, 0x0002),
                                 "sop": _text(cmd, 0x1000)}
                        pending = state["pending"] = writer.begin(store["sop"], study_uid, series_uid)
                        if pending is not None:
                            pending.write(file_header(store["cls"], store["sop"], self.contexts.get(cid, ("", ""))[1],
                                                      self.node.ae_title))
                    elif field == C_GET_RSP:
                        answered = True
                        status = _us(cmd, 0x0900)
                        counts = (_us(cmd, 0x1021), _us(cmd, 0x1022), _us(cmd, 0x1023))
                        if status in _PENDING:
                            continue
                        if _us(cmd, 0x0800, NO_DATASET) != NO_DATASET:
                            store = {"ignore": True}
                            self._final = (status, counts)
                            continue
                        return self._finish(status, counts)
                    continue
                # data set fragment
                if "ignore" in store:
                    if mch & 2:
                        return self._finish(*self._final)
                    continue
                if pending is not None:
                    pending.write(data)
                if mch & 2:
                    status = 0x0000
                    if pending is not None:
                        state["pending"] = None
                        try:
                            pending.commit()
                        except OSError:
                            logger.exception("could not write a received instance")
                            pending.discard()
                            status = 0xA700
                        pending = None
                    self.send_message(store["cid"], command({
                        0x0002: _ui(store["cls"]), 0x0100: struct.pack("<H", C_STORE_RSP),
                        0x0120: struct.pack("<H", store["msg"]), 0x0800: struct.pack("<H", NO_DATASET),
                        0x0900: struct.pack("<H", status), 0x1000: _ui(store["sop"])}))
                    on_stored()
                    if cancel is not None and cancel.cancelled:
                        raise CancelledError("C-GET cancelled")

    def _finish(self, status: int, counts: tuple[int, int, int]) -> tuple[int, int, int]:
        from pynetdicom.status import code_to_category

        if code_to_category(status) in ("Success", "Warning"):
            return counts
        if status == 0xFE00:
            raise CancelledError("C-GET cancelled")
        raise PacsRequestError(f"PACS {self.node.describe()} answered the C-GET with status 0x{status:04X} "
                               f"({code_to_category(status)}; {counts[0]} done, {counts[1]} failed)", status)
