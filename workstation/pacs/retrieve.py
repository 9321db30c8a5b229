"""Retrieve a study (or some of its series) from a PACS into the local index: resumable, no duplicates.

1. List what the PACS holds, down to SOP Instance UIDs (C-FIND at IMAGE
   level, or QIDO-RS instances).
2. Subtract what the index already holds (from any source, file still there).
3. Ask only for the rest: a whole series in one request when nothing of it is
   here, the missing instances by UID otherwise (C-GET, C-MOVE to our
   listener, or WADO-RS).
4. Import what arrived into the index, also when the transfer failed or was
   cancelled, so a retry after a dropped connection fetches only what is
   still missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inference.cancel import CancelledError, CancelToken
from workstation import audit
from workstation.index import ImportResult, StudyIndex, import_paths
from workstation.pacs.errors import NodeConfigError, StudyNotFoundError
from workstation.pacs.nodes import LocalAE, PacsNode, RetrieveMethod
from workstation.pacs.query import InstanceResult, SeriesResult
from workstation.pacs.storage import InstanceWriter, ReceivedInstance, known_sop_uids

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class SeriesPlan:
    """One series to retrieve: what the PACS has and what is missing here."""

    series: SeriesResult
    on_pacs: list[InstanceResult]
    missing: list[InstanceResult]

    @property
    def whole(self) -> bool:
        """Nothing of the series is here (or its instances could not be listed): ask for the series."""
        return not self.on_pacs or len(self.missing) == len(self.on_pacs)


@dataclass
class RetrieveResult:
    """What a retrieve did."""

    study_uid: str
    method: str
    on_pacs: int = 0
    already_present: int = 0
    received: int = 0
    files: list[Path] = field(default_factory=list)
    imported: ImportResult | None = None
    seconds: float = 0.0

    @property
    def study_ids(self) -> list[int]:
        """Index ids of the studies the retrieve added to."""
        return self.imported.study_ids if self.imported is not None else []

    @property
    def series_ids(self) -> list[int]:
        """Index ids of the series the retrieve added to."""
        return self.imported.series_ids if self.imported is not None else []


def choose_method(node: PacsNode, method: RetrieveMethod | None) -> RetrieveMethod:
    """The retrieve method to use: the one asked for (or the node's), if the node is configured for it."""
    chosen = method or node.retrieve_method
    if chosen == "wado" and not node.has_dicomweb:
        raise NodeConfigError(f"PACS node {node.name!r} has no DICOMweb URL for a WADO-RS retrieve")
    if chosen in ("get", "move") and not node.has_dimse:
        if node.has_dicomweb and method is None:
            return "wado"
        raise NodeConfigError(f"PACS node {node.name!r} has no DIMSE address for a C-{chosen.upper()} retrieve")
    return chosen


def plan_retrieve(node: PacsNode, local: LocalAE, study_uid: str, method: RetrieveMethod, known: set[str],
                  series_uids: Sequence[str] = (), cancel: CancelToken | None = None) -> list[SeriesPlan]:
    """List the study's series and instances on the PACS and what of it is missing locally."""
    list_instances: Callable[[str, str], list[InstanceResult]]
    if method == "wado":
        from workstation.pacs.dicomweb import DicomWebClient

        web = DicomWebClient(node)
        all_series = web.search_series(study_uid)
        list_instances = web.search_instances
    else:
        from workstation.pacs.dimse import DimseClient

        dimse = DimseClient(node, local)
        all_series = dimse.find_series(study_uid, cancel=cancel)

        def _dimse_instances(study: str, series: str) -> list[InstanceResult]:
            return dimse.find_instances(study, series, cancel=cancel)

        list_instances = _dimse_instances

    wanted = set(series_uids)
    plans = []
    for s in all_series:
        if wanted and s.series_uid not in wanted:
            continue
        instances = list_instances(study_uid, s.series_uid)
        missing = [i for i in instances if i.sop_uid not in known]
        plans.append(SeriesPlan(s, instances, missing))
    if wanted and not plans:
        raise StudyNotFoundError(f"series {', '.join(sorted(wanted))} of study {study_uid} not found on "
                                 f"{node.describe()}")
    if not all_series:
        raise StudyNotFoundError(f"study {study_uid} not found on {node.describe()}")
    return plans


def retrieve_study(node: PacsNode, local: LocalAE, study_uid: str, *, db_path: Path, storage_dir: Path,
                   series_uids: Sequence[str] = (), method: RetrieveMethod | None = None,
                   listener: object | None = None, progress: Progress | None = None,
                   cancel: CancelToken | None = None, import_workers: int = 1) -> RetrieveResult:
    """Retrieve ``study_uid`` (or the listed series) from ``node`` into the index at ``db_path``.

    ``listener`` (a running ``StorageListener`` with our AE title) receives a
    C-MOVE; without one, a temporary listener is started on ``local.port``.
    Raises ``PacsError`` subclasses (``StudyNotFoundError`` when the PACS does
    not hold the study) or ``CancelledError``, after importing what did arrive.
    Every retrieve goes to the audit trail with its outcome.
    """
    t0 = time.perf_counter()
    chosen = choose_method(node, method)
    with StudyIndex(db_path) as index:
        known = known_sop_uids(index, study_uid)
    result = RetrieveResult(study_uid, chosen)
    how = {"get": "C-GET", "move": "C-MOVE", "wado": "WADO-RS"}[chosen]
    try:
        _retrieve(node, local, study_uid, chosen, result, known, db_path=db_path, storage_dir=storage_dir,
                  series_uids=series_uids, listener=listener, progress=progress, cancel=cancel,
                  import_workers=import_workers, t0=t0)
    except BaseException as exc:
        audit.record("study.received", study_uid=study_uid, source=node.name, how=how, received=result.received,
                     outcome="cancelled" if isinstance(exc, CancelledError) else "failed",
                     error=str(exc)[:300] or type(exc).__name__)
        raise
    audit.record("study.received", study_uid=study_uid, source=node.name, how=how, received=result.received,
                 already_present=result.already_present, on_pacs=result.on_pacs)
    return result


def _retrieve(node: PacsNode, local: LocalAE, study_uid: str, chosen: RetrieveMethod, result: RetrieveResult,
              known: set[str], *,
              db_path: Path, storage_dir: Path, series_uids: Sequence[str], listener: object | None,
              progress: Progress | None, cancel: CancelToken | None, import_workers: int, t0: float) -> None:
    """The body of ``retrieve_study``: plan, transfer, import (also after a failure); fills ``result``."""
    plans = plan_retrieve(node, local, study_uid, chosen, known, series_uids, cancel)
    result.on_pacs = sum(len(p.on_pacs) for p in plans)
    result.already_present = result.on_pacs - sum(len(p.missing) for p in plans)
    total = sum(len(p.missing) if p.on_pacs else (p.series.instance_count or 0) for p in plans)
    todo = [p for p in plans if p.missing or not p.on_pacs]
    logger.info("retrieve by %s from %s: %d instance(s) on the PACS, %d already here, %d series to fetch",
                chosen, node.name, result.on_pacs, result.already_present, len(todo))
    writer = InstanceWriter(storage_dir, skip=known)
    if progress is not None:
        progress(0, total)
    try:
        if todo:
            if chosen == "move":
                _move(node, local, study_uid, todo, writer, listener, total, progress, cancel)
            else:
                _get_or_wado(node, local, study_uid, todo, writer, chosen, total, progress, cancel)
    finally:
        result.files = writer.paths
        result.received = len(result.files)
        if result.files:
            with StudyIndex(db_path) as index:
                result.imported = import_paths(result.files, index, workers=import_workers)
        result.seconds = time.perf_counter() - t0
        logger.info("retrieve: %d instance(s) received in %.2f s", result.received, result.seconds)


def _get_or_wado(node: PacsNode, local: LocalAE, study_uid: str, todo: list[SeriesPlan], writer: InstanceWriter,
                 method: RetrieveMethod, total: int, progress: Progress | None,
                 cancel: CancelToken | None) -> None:
    if method == "wado":
        from workstation.pacs.dicomweb import DicomWebClient

        web = DicomWebClient(node)
        for p in todo:
            uids = [] if p.whole else [i.sop_uid for i in p.missing]
            base = len(writer.received)

            def step(done: int, _total: int, base: int = base) -> None:
                if progress is not None:
                    progress(base + done, total)

            web.retrieve(writer, study_uid, p.series.series_uid, uids, expected=total, progress=step, cancel=cancel)
        return
    from workstation.pacs.dimse import DimseClient

    dimse = DimseClient(node, local)
    for p in todo:
        uids = [] if p.whole else [i.sop_uid for i in p.missing]
        classes = sorted({i.sop_class_uid for i in p.on_pacs})
        if not p.on_pacs or "" in classes:
            classes = []  # some classes unknown: offer the generic set
        dimse.get(writer, study_uid, p.series.series_uid, uids, sop_classes=classes, expected=total,
                  progress=progress, cancel=cancel)


def _move(node: PacsNode, local: LocalAE, study_uid: str, todo: list[SeriesPlan], writer: InstanceWriter,
          listener: object | None, total: int, progress: Progress | None, cancel: CancelToken | None) -> None:
    from workstation.pacs.dimse import DimseClient
    from workstation.pacs.listener import StorageListener

    def arrived(item: ReceivedInstance) -> None:
        if item.study_uid != study_uid:
            return
        n = writer.record(item)
        if progress is not None:
            progress(n, max(total, n))

    own = None
    if isinstance(listener, StorageListener) and listener.running:
        active = listener
    else:
        own = StorageListener(local, writer.root, None, allowed_callers=[node.ae_title])
        own.start()
        active = own
    active.add_observer(arrived)
    try:
        dimse = DimseClient(node, local)
        for p in todo:
            uids = [] if p.whole else [i.sop_uid for i in p.missing]
            dimse.move(local.ae_title, study_uid, p.series.series_uid, uids, cancel=cancel,
                       received=lambda: len(writer.received))
    finally:
        active.remove_observer(arrived)
        if own is not None:
            own.stop()
