"""Storage listener (C-STORE SCP): receives what a PACS pushes or C-MOVEs to us, and imports it.

Each received instance is written under the storage folder (``storage``
layout, atomic, one file per SOP instance). When the sending association
ends (released or aborted), the files it brought are imported into the study
index, then the optional ``on_arrival`` callback gets an ``Arrival`` (which
studies and series changed), e.g. to queue the default analysis. Observers
see every file as it lands (a C-MOVE retrieve uses this to know what arrived).

By default only the AE titles of configured nodes may push (others are
rejected with "calling AE title not recognised"). The callback and observers
run on the listener's threads: keep them short and thread-safe.

With ``local.tls`` the listener speaks DICOM TLS only (``tls.server_context``):
a plain-text caller, or one without an acceptable client certificate when
``tls_require_client_cert`` is set, is dropped during the handshake and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from workstation import audit
from workstation.index import ImportResult, StudyIndex, import_paths
from workstation.pacs import tls
from workstation.pacs.association import TRANSFER_SYNTAXES
from workstation.pacs.errors import PacsConnectionError
from workstation.pacs.nodes import LocalAE
from workstation.pacs.storage import InstanceWriter, ReceivedInstance, received_file

logger = logging.getLogger(__name__)

#: Seconds ``stop`` waits for received batches still being imported (a released association's last work).
STOP_WAIT_S = 10.0


@dataclass
class Arrival:
    """What one incoming association brought, after it was imported."""

    calling_ae: str
    files: list[Path] = field(default_factory=list)
    study_ids: list[int] = field(default_factory=list)
    series_ids: list[int] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)
    added: int = 0
    rejected: int = 0
    error: str = ""


ArrivalCallback = Callable[[Arrival], None]
Observer = Callable[[ReceivedInstance], None]


class StorageListener:
    """A C-STORE SCP (and C-ECHO) on ``local.port`` that writes to ``storage_dir`` and imports into ``db_path``.

    ``allowed_callers``: AE titles accepted as senders; ``None`` accepts any. ``db_path`` ``None``
    writes files without importing them.
    """

    def __init__(self, local: LocalAE, storage_dir: Path, db_path: Path | None, *,
                 allowed_callers: Collection[str] | None = None, on_arrival: ArrivalCallback | None = None,
                 import_workers: int = 1) -> None:
        self.local = local
        self.storage_dir = Path(storage_dir)
        self.db_path = db_path
        self.allowed_callers = sorted(allowed_callers) if allowed_callers is not None else None
        self.on_arrival = on_arrival
        self.import_workers = import_workers
        self._observers: list[Observer] = []
        self._lock = threading.Lock()
        self._import_lock = threading.Lock()
        self._pending: dict[int, tuple[str, list[Path]]] = {}
        self._server: Any = None
        self._ae: AE | None = None
        self.port = 0
        self.received = 0

    # --- life cycle -----------------------------------------------------------------
    def start(self) -> int:
        """Start listening (in background threads); returns the bound port."""
        if self._server is not None:
            return self.port
        ae = AE(ae_title=self.local.ae_title)
        ae.maximum_pdu_size = self.local.max_pdu
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        if self.allowed_callers is not None:
            ae.require_calling_aet = list(self.allowed_callers)
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_end),
                    (evt.EVT_ABORTED, self._on_end), (evt.EVT_CONN_CLOSE, self._on_end)]
        ssl_context = tls.server_context(self.local) if self.local.tls else None  # NodeConfigError when unusable
        try:
            self._server = ae.start_server((self.local.bind_address, self.local.port), block=False,
                                           evt_handlers=handlers, ssl_context=ssl_context)
        except OSError as exc:
            raise PacsConnectionError(
                f"cannot listen on {self.local.bind_address}:{self.local.port} ({exc.strerror or exc}); "
                "is another program (or another workstation window) using that port?") from None
        self._ae = ae
        self.port = int(self._server.server_address[1])
        logger.info("storage listener %s on %s:%d%s", self.local.ae_title, self.local.bind_address, self.port,
                    " (DICOM TLS)" if ssl_context is not None else "")
        return self.port

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop listening; associations in progress are aborted.

        Waits (up to ``wait_s``) for the associations' own threads to finish: a
        sender's transfer is complete when its association is released, but the
        batch is imported and announced after that on the association's thread,
        and an arrival must not be lost because the listener stopped meanwhile.
        """
        threads: list[threading.Thread] = []
        if self._server is not None:
            threads = [t for t in self._server.active_associations if t is not threading.current_thread()]
            self._server.shutdown()
            self._server = None
        if self._ae is not None:
            self._ae.shutdown()
            self._ae = None
        deadline = time.monotonic() + wait_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("the storage listener stopped before a received batch was imported")

    @property
    def running(self) -> bool:
        """True while listening."""
        return self._server is not None

    def __enter__(self) -> StorageListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_observer(self, fn: Observer) -> None:
        """Call ``fn`` for every instance written (on the listener's thread)."""
        with self._lock:
            self._observers.append(fn)

    def remove_observer(self, fn: Observer) -> None:
        """Stop calling ``fn``."""
        with self._lock:
            if fn in self._observers:
                self._observers.remove(fn)

    # --- events ---------------------------------------------------------------------
    def _notify(self, item: ReceivedInstance) -> None:
        with self._lock:
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(item)
            except Exception:
                logger.exception("a storage observer failed")

    def _on_store(self, event: Any) -> int:
        try:
            pieces, sop_uid, study_uid, series_uid = received_file(event)
            writer = InstanceWriter(self.storage_dir, observer=self._notify)
            path = writer.write(pieces, sop_uid, study_uid, series_uid)
        except Exception:
            logger.exception("could not store a received instance")
            return 0xA700
        calling = str(event.assoc.requestor.ae_title).strip()
        with self._lock:
            self.received += 1
            entry = self._pending.setdefault(id(event.assoc), (calling, []))
            if path is not None:
                entry[1].append(path)
        return 0x0000

    def _on_end(self, event: Any) -> None:
        with self._lock:
            entry = self._pending.pop(id(event.assoc), None)
        if entry is None or not entry[1]:
            return
        calling, files = entry
        arrival = Arrival(calling_ae=calling, files=files)
        if self.db_path is not None:
            try:
                result = self._import(files)
                arrival.study_ids, arrival.series_ids = result.study_ids, result.series_ids
                arrival.added, arrival.rejected = result.added, len(result.rejected)
                with StudyIndex(self.db_path) as index:
                    arrival.study_uids = [s.study_uid for s in index.studies(result.study_ids)]
            except Exception as exc:
                logger.exception("importing %d received files failed", len(files))
                arrival.error = str(exc)
        logger.info("received %d instance(s) from %s: %d added to the index", len(files), calling, arrival.added)
        if self.db_path is not None:  # a listener without an index serves a retrieve, which records itself
            for uid in arrival.study_uids or [""]:
                audit.record("study.received", study_uid=uid, outcome="failed" if arrival.error else "ok",
                             source=calling, how="C-STORE (pushed)", files=len(files), added=arrival.added)
        if self.on_arrival is not None:
            try:
                self.on_arrival(arrival)
            except Exception:
                logger.exception("the on-arrival callback failed")

    def _import(self, files: list[Path]) -> ImportResult:
        assert self.db_path is not None
        with self._import_lock, StudyIndex(self.db_path) as index:
            return import_paths(files, index, workers=self.import_workers)
