"""The ``workstation`` command: with no subcommand it opens the window.

Every failure a user can cause (bad path, series that is not a volume, refused
geometry) ends in one place here: a one-line message on stderr naming the file
or series and the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation.cli_analysis import cmd_analyze, cmd_report, print_json
from workstation.cli_parser import parse_args
from workstation.logs import configure_logging, install_excepthook, print_error_line

if TYPE_CHECKING:  # each command imports what it uses: `convert` starts without pydantic, PACS or the self-test
    from workstation.quick_settings import PlainSettings
    from workstation.settings import Settings

logger = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> Settings:
    from workstation.settings import get_settings

    s = get_settings()
    return s.model_copy(update={"db": args.db}) if args.db else s


def _convert_settings(args: argparse.Namespace) -> Settings | PlainSettings:
    """The settings ``convert`` uses, read without pydantic when that gives the same values (``quick_settings``)."""
    from workstation.quick_settings import PlainSettings, settings_now

    s = settings_now()
    if not args.db:
        return s
    return s.with_db(args.db) if isinstance(s, PlainSettings) else s.model_copy(update={"db": args.db})


def _single_blas_thread() -> None:
    """``convert`` does no linear algebra worth threads (3x3 and 4x4 matrices): without this OpenBLAS
    starts one thread per core while numpy loads, ~55 ms of start-up on a 2-core machine. A user's value wins."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.index import StudyIndex, import_paths
    from workstation.services.studies import import_result_json

    workers = args.workers if args.workers is not None else settings.import_workers
    with StudyIndex(settings.db_path) as index:
        result = import_paths(args.paths, index, workers=workers)
        summary = import_result_json(index, result)
    if args.json:
        print_json(summary)
        return 0
    print(f"{result.files_seen} files: {result.added} added, {result.already_indexed} already indexed, "
          f"{len(result.rejected)} rejected ({result.seconds:.1f} s)")
    _print_studies(summary["studies"])
    for r in summary["rejected"]:
        print(f"  rejected {r['file']}: {r['reason']}")
    for r in summary["skipped"]:
        print(f"  skipped {r['file']}: {r['reason']}")
    return 0


def _print_studies(studies: list[dict[str, Any]]) -> None:
    for st in studies:
        print(f"study {st['id']}: {st['date'] or '-'} {st['description'] or '(no description)'}"
              f"  [{len(st['notes'])} notes]")
        for se in st["series"]:
            shape = "x".join(str(x) for x in se["shape"]) if se.get("shape") else ""
            print(f"  series {se['id']:>4}  #{se['number'] if se['number'] is not None else '-':<4} "
                  f"{se['modality']:<3} {se['kind']:<17} {se['instances']:>5} inst  {shape:<12} "
                  f"{se['description'] or '(no description)'}")


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.index import StudyIndex
    from workstation.services.studies import index_json

    with StudyIndex(settings.db_path) as index:
        data = index_json(index)
    if args.json:
        print_json(data)
    else:
        c = data["counts"]
        print(f"{c['studies']} studies, {c['series']} series, {c['instances']} instances")
        _print_studies(data["studies"])
    return 0


def _cmd_convert(args: argparse.Namespace, settings: Settings | PlainSettings) -> int:
    from workstation.dicomio.guards import ImportLimits
    from workstation.services.studies import convert_series, resolve_series

    limits = ImportLimits.from_settings(settings)
    if Path(args.series).exists():  # a folder or file: no need to open (or create) the study index
        source = resolve_series(args.series, None, limits)
    else:
        from workstation.index.db import StudyIndex

        with StudyIndex(settings.db_path) as index:
            source = resolve_series(args.series, index, limits)
    policy = "refuse" if args.refuse_nonuniform else settings.nonuniform_spacing
    done = convert_series(source, args.out, policy)
    slices, rows, cols = done.grid
    print(f"wrote {done.path}: {done.volumes} volume(s) of {cols}x{rows}x{slices}")
    for note in done.notes:
        print(f"  note: {note}")
    return 0


def _cmd_qa(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.dicomio.summary import summarize_series
    from workstation.index import StudyIndex
    from workstation.services.studies import resolve_series

    with StudyIndex(settings.db_path) as index:
        source = resolve_series(args.series, index)
    summary = summarize_series(source.headers, source.label)
    if args.json:
        print_json({"series": source.label, **summary.to_dict()})
        return 0
    print(f"{source.label}: {summary.kind}, {summary.instances} instances")
    if summary.reason:
        print(f"  {summary.reason}")
    for item in summary.qa:
        extra = f"  -> {item['action']}" if item["action"] != "none needed" else ""
        print(f"  {item['check']:<18} {item['status']:<7} {item['detail']}{extra}")
    return 0


def _cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services import models as svc

    folder = settings.models_path
    if args.models_command == "list":
        from workstation.services.remote_models import remote_models, remote_rows

        rows = svc.list_models(folder) + remote_rows(remote_models(settings))
        if args.json:
            print_json(rows)
        else:
            for r in rows:
                code = {"trusted": "  [config code trusted]", "needs trust": "  [config code not trusted: refused]"}
                print(f"{r['id']:<28} {r['version']:<8} {'/'.join(r['modalities']):<6} {r['title']}"
                      f"{code.get(r.get('code') or '', '')}"
                      + (f"  [unusable: {r['problem']}]" if r.get("source") == "remote" and r.get("problem") else ""))
        return 0
    if args.models_command == "install":
        info = svc.install_bundle(args.zip, folder, replace=args.replace, trust_code=args.trust_code)
        review = info["code_audit"]
        print(f"code in its config: {review['summary']}")
        for item in review["items"]:
            print(f"  {_code_line(item)}")
        trusted = " (code outside the allow-list trusted by you, recorded)" if not review["passed"] else ""
        print(f"installed {info['id']} ({info['title']} {info['version']}) sha256 {info['sha256']}{trusted}")
        return 0
    svc.remove_bundle(args.model_id, folder)
    print(f"removed {args.model_id}")
    return 0


def _code_line(item: dict[str, Any]) -> str:
    from inference.bundles.config_audit import CodeItem

    return CodeItem(**item).line()


def _cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.audit import audit_path, parse_since, read_events

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"workstation: {exc}", file=sys.stderr)
        return 2
    events = read_events(since, settings)
    if args.json:
        print_json([e.to_dict() for e in events])
        return 0
    if not events:
        print(f"no audit events{' since ' + args.since if args.since else ''} in {audit_path(settings)}")
    for e in events:
        print(e.line())
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.index import StudyIndex
    from workstation.services.studies import demo_study, import_result_json

    with StudyIndex(settings.db_path) as index:
        folder, result = demo_study(settings, index)
        summary = import_result_json(index, result)
        known = index.studies(result.study_ids) or index.studies()
    print(f"demo study at {folder}")
    _print_studies(summary["studies"])
    study_id = max(known, key=lambda s: s.date).id if known else None  # the newest: the prior is its own study
    if args.no_gui:
        if study_id is None:
            return 0
        # the main job without a window: built-in analysis, template report, exports
        report_args = argparse.Namespace(target=f"study:{study_id}", out=settings.data_dir / "demo_report",
                                         llm=None, model="builtin.ct", device=None, deidentify=False,
                                         no_reuse=False, max_new_tokens=None, json=False, allow_interpolated=False)
        return cmd_report(report_args, settings)
    return _gui(settings, open_study=study_id, analyze="builtin.ct")


def _cmd_gui(args: argparse.Namespace, settings: Settings) -> int:
    """The window, on ``target`` when given: resolved (and imported) before any window appears."""
    target = getattr(args, "target", None)
    if target is None:
        return _gui(settings)
    from workstation.index import StudyIndex
    from workstation.services.opening import resolve_open_target

    with StudyIndex(settings.db_path) as index:
        found = resolve_open_target(target, index, settings)
    logger.info("opening %s", found.describe())
    return _gui(settings, open_study=found.study_id, open_series=found.series_id)


def _gui(settings: Settings, open_study: int | None = None, analyze: str | None = None,
         open_series: int | None = None) -> int:
    from workstation.qt.app import run_gui

    return run_gui(settings, open_study=open_study, analyze=analyze, open_series=open_series)


def _cmd_pacs(args: argparse.Namespace, settings: Settings) -> int:
    from workstation import cli_pacs

    return cli_pacs.run(args, settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workstation`` console command."""
    args = parse_args(argv)
    configure_logging(args.verbose)  # stderr now; what loading the settings logs is kept for the file
    self_test = args.self_test or args.command == "selftest"
    convert = args.command == "convert" and not self_test
    if convert:
        _single_blas_thread()
    convert_settings = _convert_settings(args) if convert else None
    if not self_test:  # the self-test never writes into the user's folders: it logs in its own (below)
        data_dir = convert_settings.data_dir if convert_settings is not None else _settings(args).data_dir
        configure_logging(args.verbose, data_dir)  # + <data_dir>/logs/workstation.log
    install_excepthook("cli", print_error_line)  # uncaught: logged with traceback, one line here, exit code as ever
    if self_test:
        from workstation import selftest

        return selftest.run_from_args(args)
    if args.command in (None, "gui") or (args.command == "demo" and not args.no_gui):
        # before any Qt import: without a usable display Qt aborts with a misleading message
        from workstation.displaycheck import display_problem

        problem = display_problem()
        if problem is not None:
            print(f"workstation: {problem}", file=sys.stderr)
            return 2
    from inference.errors import WorkstationError

    try:
        if convert_settings is not None:
            return _cmd_convert(args, convert_settings)
        settings = _settings(args)
        handlers = {
            "import": _cmd_import, "list": _cmd_list,
            "qa": _cmd_qa, "demo": _cmd_demo, "analyze": cmd_analyze, "models": _cmd_models,
            "report": cmd_report, "audit": _cmd_audit, "pacs": _cmd_pacs,
        }
        if args.command in handlers:
            return handlers[args.command](args, settings)
        return _cmd_gui(args, settings)
    except WorkstationError as exc:
        print(f"workstation: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
