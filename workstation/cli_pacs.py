"""``workstation pacs echo|query|retrieve|send|listen``.

Wired into ``workstation.cli`` with ``add_parser(subparsers)`` and
``run(args, settings)``. The node comes from the settings (``--node NAME``, or
the default) or from the command line (``--host/--port/--aet`` for DIMSE,
``--url`` for DICOMweb). Secrets are never taken as arguments (they would show
in the process list): ``--password-env``/``--token-env`` name environment
variables holding them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from workstation import audit
from workstation.pacs.errors import NodeConfigError, PacsError
from workstation.pacs.nodes import LocalAE, PacsConfig, PacsNode
from workstation.pacs.query import StudyQuery

logger = logging.getLogger(__name__)


def _node_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("PACS node (default: the settings' default node)")
    g.add_argument("--node", help="a node configured in the settings, by name")
    g.add_argument("--host", help="DIMSE host (with --port and --aet, instead of a configured node)")
    g.add_argument("--port", type=int, default=104, help="DIMSE port (default 104)")
    g.add_argument("--aet", help="the PACS's AE title")
    g.add_argument("--url", help="DICOMweb base URL, e.g. http://pacs:8042/dicom-web")
    g.add_argument("--user", default="", help="DICOMweb basic-auth user")
    g.add_argument("--password-env", help="environment variable holding the basic-auth password")
    g.add_argument("--token-env", help="environment variable holding a bearer token")
    g.add_argument("--our-aet", help="our AE title (default: from the settings)")
    g.add_argument("--timeout", type=float, help="seconds to wait for connections and answers")
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``pacs`` command to the ``workstation`` parser's subparsers."""
    node = _node_options()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "pacs", help="query/retrieve, send and receive studies (DIMSE, DICOMweb)")
    sub = p.add_subparsers(dest="pacs_command", required=True)
    echo = sub.add_parser("echo", parents=[node], help="verify a node (C-ECHO, or a QIDO-RS request with --dicomweb)")
    echo.add_argument("--dicomweb", action="store_true")
    q = sub.add_parser("query", parents=[node], help="find studies (or a study's series with --study)")
    q.add_argument("--patient-name", default="", help="prefix, or a pattern with * and ?")
    q.add_argument("--patient-id", default="")
    q.add_argument("--from", dest="date_from", default="", help="study date from (YYYYMMDD or YYYY-MM-DD)")
    q.add_argument("--to", dest="date_to", default="", help="study date to")
    q.add_argument("--modality", default="")
    q.add_argument("--accession", default="")
    q.add_argument("--study", default="", help="StudyInstanceUID: list this study's series")
    q.add_argument("--limit", type=int, default=None)
    q.add_argument("--dicomweb", action="store_true", help="use QIDO-RS instead of C-FIND")
    q.add_argument("--json", action="store_true")
    r = sub.add_parser("retrieve", parents=[node], help="retrieve a study into the local index (resumable)")
    r.add_argument("study", help="StudyInstanceUID")
    r.add_argument("--series", action="append", default=[], help="only this SeriesInstanceUID (repeatable)")
    r.add_argument("--method", choices=["get", "move", "wado"], help="default: the node's retrieve method")
    r.add_argument("--listen-port", type=int, help="our listener port for C-MOVE (default: from the settings)")
    r.add_argument("--json", action="store_true")
    s = sub.add_parser("send", parents=[node], help="send DICOM files (images, SEG, SR, PDF...) to a node")
    s.add_argument("paths", nargs="+", type=Path, help="files or folders")
    s.add_argument("--dicomweb", action="store_true", help="use STOW-RS instead of C-STORE")
    li = sub.add_parser("listen", parents=[node], help="receive pushed studies (C-STORE SCP) and import them")
    li.add_argument("--listen-port", type=int, help="port (default: from the settings)")
    li.add_argument("--bind", help="interface address (default: from the settings)")
    li.add_argument("--any-caller", action="store_true", help="accept any calling AE title, not only known nodes")
    li.add_argument("--analyze-into", type=Path, help="run the default analysis on each arriving study, "
                                                      "writing results under this folder")
    li.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    return p


def _secret(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise NodeConfigError(f"environment variable {name} is not set")
    return value


def resolve_node(args: argparse.Namespace, config: PacsConfig) -> PacsNode:
    """The node named by the arguments: ad hoc (``--host``/``--url``) or from the settings."""
    if args.host or args.url:
        return PacsNode.model_validate({
            "name": args.node or "command line", "ae_title": args.aet or "", "host": args.host or "",
            "port": args.port, "dicomweb_url": args.url or "", "username": args.user,
            "password": _secret(args.password_env), "token": _secret(args.token_env),
            **({"timeout_s": args.timeout} if args.timeout else {})})
    node = config.node(args.node)
    return node.model_copy(update={"timeout_s": args.timeout}) if args.timeout else node


def _local(args: argparse.Namespace, config: PacsConfig) -> LocalAE:
    update: dict[str, Any] = {}
    if getattr(args, "our_aet", None):
        update["ae_title"] = args.our_aet
    if getattr(args, "listen_port", None) is not None:
        update["port"] = args.listen_port
    if getattr(args, "bind", None):
        update["bind_address"] = args.bind
    return LocalAE.model_validate({**config.local.model_dump(), **update})


def run(args: argparse.Namespace, settings: Any) -> int:
    """Run a ``workstation pacs`` subcommand; ``PacsError``s propagate to the caller's handler."""
    if getattr(args, "verbose", 0) >= 2:
        from workstation.pacs.association import verbose_pynetdicom

        verbose_pynetdicom()
    config = PacsConfig.from_settings(settings)
    handlers = {"echo": _echo, "query": _query, "retrieve": _retrieve, "send": _send, "listen": _listen}
    return handlers[args.pacs_command](args, settings, config)


def _echo(args: argparse.Namespace, settings: Any, config: PacsConfig) -> int:
    node = resolve_node(args, config)
    if args.dicomweb or not node.has_dimse:
        from workstation.pacs.dicomweb import DicomWebClient

        t0 = time.perf_counter()
        DicomWebClient(node).search_studies(StudyQuery(), limit=1)
        print(f"{node.describe()}: DICOMweb answers ({(time.perf_counter() - t0) * 1000:.0f} ms)")
        return 0
    from workstation.pacs.dimse import DimseClient

    seconds = DimseClient(node, _local(args, config)).echo()
    print(f"{node.describe()}: C-ECHO ok ({seconds * 1000:.0f} ms)")
    return 0


def _query(args: argparse.Namespace, settings: Any, config: PacsConfig) -> int:
    node = resolve_node(args, config)
    use_web = args.dicomweb or not node.has_dimse
    if use_web:
        from workstation.pacs.dicomweb import DicomWebClient

        web = DicomWebClient(node)
    else:
        from workstation.pacs.dimse import DimseClient

        dimse = DimseClient(node, _local(args, config))
    if args.study:
        series = web.search_series(args.study) if use_web else dimse.find_series(args.study)
        if args.json:
            _print_json([vars(s) for s in series])
            return 0
        for s in series:
            print(f"  #{s.number if s.number is not None else '-':<4} {s.modality:<3} {s.instance_count or 0:>5} inst  "
                  f"{s.description}  {s.series_uid}")
        return 0
    query = StudyQuery(args.patient_name, args.patient_id, args.date_from, args.date_to, args.modality,
                       args.accession)
    studies = web.search_studies(query, limit=args.limit) if use_web else dimse.find_studies(query, limit=args.limit)
    if args.json:
        _print_json([{**vars(s), "modalities": list(s.modalities)} for s in studies])
        return 0
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}")
    for st in studies:
        print(f"  {st.date or '-':<8} {'/'.join(st.modalities) or '-':<6} {st.patient_name:<24} {st.patient_id:<12} "
              f"{st.accession:<12} {st.series_count or 0:>3} ser {st.instance_count or 0:>5} inst  "
              f"{st.description}  {st.study_uid}")
    return 0


def _retrieve(args: argparse.Namespace, settings: Any, config: PacsConfig) -> int:
    from workstation.pacs.retrieve import retrieve_study

    node = resolve_node(args, config)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 0.5 or done == total:
            last[0] = time.monotonic()
            sys.stderr.write(f"\r  {done}/{total} instances")
            sys.stderr.flush()

    try:
        result = retrieve_study(node, _local(args, config), args.study, db_path=settings.db_path,
                                storage_dir=config.storage_path(settings.data_dir), series_uids=args.series,
                                method=args.method, progress=progress)
    finally:
        sys.stderr.write("\n")
    if args.json:
        _print_json({"study_uid": result.study_uid, "method": result.method, "on_pacs": result.on_pacs,
                     "already_present": result.already_present, "received": result.received,
                     "study_ids": result.study_ids, "series_ids": result.series_ids, "seconds": result.seconds})
        return 0
    how = {"get": "C-GET", "move": "C-MOVE", "wado": "WADO-RS"}[result.method]
    print(f"{result.received} received, {result.already_present} already here, {result.on_pacs} on the PACS "
          f"({how}, {result.seconds:.1f} s); index studies {', '.join(map(str, result.study_ids)) or '-'}")
    return 0


def _send(args: argparse.Namespace, settings: Any, config: PacsConfig) -> int:
    from workstation.dicomio.sources import path_problem

    node = resolve_node(args, config)
    for p in args.paths:
        if not p.is_file() and not p.is_dir():
            raise PacsError(f"{p}: {path_problem(p)}")
    files = sorted({f for p in args.paths for f in ([p] if p.is_file() else
                                                   (x for x in p.rglob("*") if x.is_file()))})
    if not files:
        raise NodeConfigError("no files to send")
    protocol = "STOW-RS" if args.dicomweb or not node.has_dimse else "C-STORE"
    studies = _study_uids(files)
    try:
        if protocol == "STOW-RS":
            from workstation.pacs.dicomweb import DicomWebClient

            result = DicomWebClient(node).store(files)
        else:
            from workstation.pacs.dimse import DimseClient

            result = DimseClient(node, _local(args, config)).store(files)
    except Exception as exc:
        for uid in studies:
            audit.record("study.sent", study_uid=uid, outcome="failed", node=node.name, protocol=protocol,
                         files=len(studies[uid]), error=type(exc).__name__)
        raise
    failed_paths = {path for path, _reason in result.failed}
    for uid, paths in studies.items():
        lost = sum(1 for p in paths if str(p) in failed_paths)
        outcome = "ok" if not lost else ("failed" if lost == len(paths) else "partial")
        audit.record("study.sent", study_uid=uid, outcome=outcome, node=node.name, protocol=protocol,
                     files=len(paths), stored=len(paths) - lost, failed=lost)
    print(f"{len(result.stored)} of {len(files)} file(s) stored on {node.describe()}")
    for path, reason in result.failed:
        print(f"  not stored: {path}: {reason}")
    return 0 if not result.failed else 1


def _study_uids(files: list[Path]) -> dict[str, list[Path]]:
    """Files by Study Instance UID (for the audit trail; unreadable files under "")."""
    import pydicom

    out: dict[str, list[Path]] = {}
    for f in files:
        try:
            uid = str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                      .get("StudyInstanceUID", ""))
        except Exception:  # not DICOM: the send reports it
            uid = ""
        out.setdefault(uid, []).append(f)
    return out


def _listen(args: argparse.Namespace, settings: Any, config: PacsConfig) -> int:
    from workstation.pacs.listener import Arrival, StorageListener

    local = _local(args, config)
    jobs: queue.Queue[int | None] = queue.Queue()

    def arrived(a: Arrival) -> None:
        print(f"received {len(a.files)} instance(s) from {a.calling_ae}: {a.added} added, index studies "
              f"{', '.join(map(str, a.study_ids)) or '-'}{' (import failed: ' + a.error + ')' if a.error else ''}",
              flush=True)
        if args.analyze_into is not None:
            for sid in a.study_ids:
                jobs.put(sid)

    worker = None
    if args.analyze_into is not None:
        worker = threading.Thread(target=_analysis_worker, args=(jobs, args.analyze_into, settings),
                                  name="pacs-analysis", daemon=True)
        worker.start()
    callers = None if args.any_caller or not local.require_known_callers else config.known_callers()
    listener = StorageListener(local, config.storage_path(settings.data_dir), settings.db_path,
                               allowed_callers=callers, on_arrival=arrived)
    port = listener.start()
    who = "any AE title" if callers is None else (
        ", ".join(callers) or "no AE title (configure nodes, or --any-caller)")
    print(f"listening as {local.ae_title} on {local.bind_address}:{port}, accepting {who}", flush=True)
    try:
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        if worker is not None:
            jobs.put(None)
            worker.join()
    return 0


def _analysis_worker(jobs: queue.Queue[int | None], out_root: Path, settings: Any) -> None:
    """Analyse each queued study, one at a time, in this process (``services.analysis.analyze_target``).

    It runs on its own thread, so the listener keeps accepting while a study is
    analysed; one failed analysis is reported and never stops the listener.
    """
    from workstation.services.analysis import analyze_target

    while (sid := jobs.get()) is not None:
        out = out_root / f"study-{sid}"
        try:
            done = analyze_target(f"study:{sid}", out, settings)
        except Exception as exc:  # any failure of one study: reported, and the next one goes on
            logger.warning("analysis of index study %s failed", sid, exc_info=True)
            print(f"analysis of index study {sid} failed: {exc}", flush=True)
            continue
        kept = f" (not kept in the analysis store: {done.store_error})" if done.store_error else ""
        print(f"analysis of index study {sid} written to {out}{kept}", flush=True)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
