"""The ``workstation`` command: with no subcommand it opens the window.

Every failure a user can cause (bad path, series that is not a volume, refused
geometry) ends in one place here: a one-line message on stderr naming the file
or series and the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation.logs import configure_logging, install_excepthook, print_error_line

if TYPE_CHECKING:  # each command imports what it uses: `convert` starts without pydantic, PACS or the self-test
    from workstation.quick_settings import PlainSettings
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

#: Arguments that need the full parser (the PACS and self-test options, and the complete help).
_FULL_PARSER_ARGS = frozenset({"pacs", "selftest", "-h", "--help"})


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; for ``convert`` without building the PACS and self-test parsers (~40 ms of imports).

    Whatever the light parser cannot parse is parsed again by the full one, so errors and help read as ever.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "convert" in args and not _FULL_PARSER_ARGS.intersection(args):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                return _parser(full=False).parse_args(args)
        except SystemExit:  # an error, or help asked for in an abbreviation: the full parser says it
            pass
    return _parser().parse_args(args)


def _parser(full: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workstation", description="Radiology AI workstation.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("--db", type=Path, help="study index file (default: in the user data dir)")
    p.add_argument("--self-test", action="store_true",
                   help="check the installation (demo study, AI on the worker thread, report, exports) in a "
                        "temporary folder, then exit 0 or 1; same as the 'selftest' command")
    sub = p.add_subparsers(dest="command")
    gui = sub.add_parser("gui", help="open the workstation window (the default), optionally on a study or series")
    gui.add_argument("target", nargs="?", default=None,
                     help="what to open: series id/key/UID, study:ID, StudyInstanceUID or key, or a folder, zip "
                          "or file (imported first)")
    imp = sub.add_parser("import", help="index DICOM from folders, zips, DICOMDIRs or files (headers only)")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--json", action="store_true", help="print a machine-readable summary")
    imp.add_argument("--workers", type=int, default=None, help="header-reading processes (default: CPUs)")
    lst = sub.add_parser("list", help="show what the index holds")
    lst.add_argument("--json", action="store_true")
    conv = sub.add_parser("convert", help="write a series as NIfTI (RAS affine, dcm2niix layout)")
    conv.add_argument("series", help="index id, series key or UID, or a folder holding one series")
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--refuse-nonuniform", action="store_true",
                      help="fail on non-uniform slice spacing instead of resampling")
    qa = sub.add_parser("qa", help="series-level quality report (spacing, tilt, orientation, missing slices)")
    qa.add_argument("series")
    qa.add_argument("--json", action="store_true")
    an = sub.add_parser("analyze", help="run a model on a series (or a study's best series) and write the results")
    an.add_argument("target", help="series id/key/UID, study:ID, StudyInstanceUID, or a folder")
    an.add_argument("--model", default="builtin.ct", help="model id (see 'workstation models list')")
    an.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    an.add_argument("--out", type=Path, required=True, help="folder for labels.nii.gz, findings.json, montage.png")
    an.add_argument("--allow-interpolated", action="store_true",
                    help="analyse even when more than the settings' share (default 10 %%) of the slices "
                         "would be interpolated; the draft then says so")
    rep = sub.add_parser("report", help="analyse (or reuse the analysis) and draft an unsigned report with exports")
    rep.add_argument("target", help="study:ID, StudyInstanceUID, series id/key/UID, or a folder")
    rep.add_argument("--out", type=Path, required=True,
                     help="folder for report.txt, report.json, report.pdf, seg.dcm, the SRs and the analysis")
    rep.add_argument("--llm", type=Path, default=None,
                     help="local language model folder (default: the settings' one; none: the template drafter)")
    rep.add_argument("--model", default="builtin.ct", help="analysis model id (see 'workstation models list')")
    rep.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"],
                     help="where the analysis and the language model run (default: the settings' device)")
    rep.add_argument("--deidentify", action="store_true", help="de-identify the exports (research use)")
    rep.add_argument("--no-reuse", action="store_true", help="analyse again even if the analysis store or the "
                     "output folder holds an analysis of the same series and model")
    rep.add_argument("--max-new-tokens", type=int, default=None, help="limit of the language model's output")
    rep.add_argument("--prior", default=None, help="prior study or series to compare with (study:ID, UID, series "
                     "id, folder); default: the newest comparable earlier study of the patient in the index")
    rep.add_argument("--no-prior", action="store_true", help="do not compare with a prior study")
    rep.add_argument("--allow-interpolated", action="store_true",
                     help="analyse even when more than the settings' share (default 10 %%) of the slices "
                          "would be interpolated; the draft then says so")
    rep.add_argument("--json", action="store_true", help="print a machine-readable summary")
    models = sub.add_parser("models", help="list, install or remove models (MONAI bundles)")
    msub = models.add_subparsers(dest="models_command", required=True)
    mlist = msub.add_parser("list", help="built-in and installed models, and those of the configured remote nodes")
    mlist.add_argument("--json", action="store_true")
    minst = msub.add_parser("install", help="install a MONAI bundle from a local zip (no download)")
    minst.add_argument("zip", type=Path)
    minst.add_argument("--replace", action="store_true", help="replace an installed bundle of the same name")
    minst.add_argument("--trust-code", action="store_true",
                       help="install even if its config runs code outside the allow-list (MONAI, torch, numpy, "
                            "scipy.ndimage): only for bundles from publishers you trust; recorded")
    mrm = msub.add_parser("remove", help="remove an installed bundle")
    mrm.add_argument("model_id")
    aud = sub.add_parser("audit", help="show the audit trail: who opened, analysed, reported, exported or sent "
                                       "which study, and when")
    aud.add_argument("--since", help="only events from this date (YYYY-MM-DD) or ISO date-time (UTC if no zone)")
    aud.add_argument("--json", action="store_true", help="one JSON object per event, in a list")
    demo = sub.add_parser("demo", help="generate and import the demo study, then open it")
    demo.add_argument("--no-gui", action="store_true", help="only generate, import and summarise")
    if full:
        from workstation import cli_pacs, selftest

        cli_pacs.add_parser(sub)
        st = sub.add_parser("selftest", help="check the installation in a temporary folder (exit 0: all passed)")
        selftest.add_arguments(st)
    return p


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


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.index import StudyIndex, import_paths
    from workstation.services.studies import import_result_json

    workers = args.workers if args.workers is not None else settings.import_workers
    with StudyIndex(settings.db_path) as index:
        result = import_paths(args.paths, index, workers=workers)
        summary = import_result_json(index, result)
    if args.json:
        _print_json(summary)
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
        _print_json(data)
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
        _print_json({"series": source.label, **summary.to_dict()})
        return 0
    print(f"{source.label}: {summary.kind}, {summary.instances} instances")
    if summary.reason:
        print(f"  {summary.reason}")
    for item in summary.qa:
        extra = f"  -> {item['action']}" if item["action"] != "none needed" else ""
        print(f"  {item['check']:<18} {item['status']:<7} {item['detail']}{extra}")
    return 0


class _TerminalProgress:
    """One updating progress line on stderr (a line per stage when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, fraction: float, stage: str) -> None:
        line = f"[{fraction * 100:5.1f}%] {stage}"
        if self.tty:
            sys.stderr.write("\r" + line[:100].ljust(100))
        elif stage != self.last:
            sys.stderr.write(line + "\n")
        self.last = stage
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services.analysis import analyze_target

    progress = _TerminalProgress()
    try:
        done = analyze_target(args.target, args.out, settings, model_id=args.model, device=args.device,
                              progress=progress, allow_interpolated=args.allow_interpolated)
    finally:
        progress.close()
    if done.store_error:
        print(f"workstation: the analysis could not be kept in the analysis store ({done.store_error}); the window "
              "will not show it", file=sys.stderr)
    source, result, outputs, model_title = done.source, done.result, done.outputs, done.model_title
    prov = result.provenance
    print(f"{source.label}: {model_title} on {prov.device_name} in {prov.timings_s.get('total', 0):.1f} s")
    for note in [*result.request.volume.notes, *prov.notes]:
        if note not in result.findings.cautions:  # an overridden refusal is printed once, as a caution
            print(f"  note: {note}")
    from inference.findings import lesion_volume_text, unit_text
    from inference.image_refs import lesion_text

    for m in result.findings.measurements:
        print(f"  {m.name}{' (' + m.side + ')' if m.side else ''}: {m.value:.1f} {unit_text(m.unit)}")
    for lesion in result.findings.lesions:
        image = lesion_text(lesion, "short", result.request.volume)
        print(f"  {lesion.name} {lesion.number}: {lesion.long_axis_mm:.1f} x {lesion.short_axis_mm:.1f} mm, "
              f"{lesion_volume_text(lesion.volume_ml)}, {lesion.zone or lesion.location or lesion.side}"
              + (f", {image}" if image else ""))
    for caution in result.findings.cautions:
        print(f"  caution: {caution}")
    print(f"wrote {outputs.labelmap}, {outputs.findings}, {outputs.montage} (AI draft, not verified)")
    return 0


class _TokenEcho:
    """Streams a language model's text to stderr between progress lines."""

    def __init__(self, progress: _TerminalProgress) -> None:
        self.progress = progress
        self.open = False

    def __call__(self, text: str) -> None:
        if not self.open:
            sys.stderr.write("\n" if self.progress.tty else "")
            self.open = True
        sys.stderr.write(text)
        sys.stderr.flush()

    def end(self) -> None:
        """End the streamed text with a line break."""
        if self.open:
            sys.stderr.write("\n")
            self.open = False

    def report(self, fraction: float, stage: str) -> None:
        """A progress report: ends the streamed text first."""
        self.end()
        self.progress(fraction, stage)


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services.reporting import DRAFT_STATUS, configured_llm_dir, run_report

    progress = _TerminalProgress()
    echo = _TokenEcho(progress)
    llm = args.llm if args.llm is not None else configured_llm_dir(settings)
    try:
        res = run_report(settings, args.target, args.out, llm_dir=llm, model_id=args.model,
                         device=args.device or settings.device, reuse=not args.no_reuse, progress=echo.report,
                         on_token=echo if llm is not None and not args.json else None,
                         deidentify=args.deidentify, max_new_tokens=args.max_new_tokens,
                         allow_interpolated=args.allow_interpolated, prior=getattr(args, "prior", None),
                         compare=not getattr(args, "no_prior", False))
    finally:
        echo.end()
        progress.close()
    invalid = [v for v in res.validation.values() if v.errors]
    if args.json:
        _print_json(res.to_dict())
        return 1 if invalid else 0
    banner = f"*** {DRAFT_STATUS}: AI-generated, not verified by a radiologist ***"
    print(banner)
    print(res.document.text())
    checks = res.grounding.sentences
    if res.flagged:
        print(f"grounding check: {len(res.flagged)} of {len(checks)} sentences flagged (not supported by the "
              "measured findings or the notes):")
        for check in res.flagged:
            print(f"  [{check.section}] {check.text}")
            for reason in check.reasons:
                print(f"      - {reason}")
    else:
        print(f"grounding check: all {len(checks)} sentences agree with the measured findings and the notes")
    for note in res.notes:
        print(f"  note: {note}")
    print(f"analysis: {res.inputs.analysis} ({'reused from ' + res.reused_from if res.reused_analysis else 'run'})")
    if res.comparison is not None:
        from workstation.services.followup import comparison_lines

        print("\n".join(comparison_lines(res.comparison)))
    print(f"wrote to {res.out_dir}: {', '.join(p.name for p in res.files.values())}")
    if res.autosave is not None:
        print(f"draft saved for the editor: {res.autosave}")
    for v in res.validation.values():
        print(f"  dciodvfy {v.summary()}")
        for line in v.errors[:5]:
            print(f"      {line}")
    print(banner)
    if invalid:
        print(f"workstation: {', '.join(v.path.name for v in invalid)} failed DICOM validation", file=sys.stderr)
        return 1
    return 0


def _cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services import models as svc

    folder = settings.models_path
    if args.models_command == "list":
        from workstation.services.remote_models import remote_models, remote_rows

        rows = svc.list_models(folder) + remote_rows(remote_models(settings))
        if args.json:
            _print_json(rows)
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
        _print_json([e.to_dict() for e in events])
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
        return _cmd_report(report_args, settings)
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
    args = _parse_args(argv)
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
            "qa": _cmd_qa, "demo": _cmd_demo, "analyze": _cmd_analyze, "models": _cmd_models,
            "report": _cmd_report, "audit": _cmd_audit, "pacs": _cmd_pacs,
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
