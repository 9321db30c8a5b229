"""The ``workstation`` command line's arguments: one parser, built light for ``convert``.

``convert`` is the command whose start-up is measured against dcm2niix, so its
parser is built without the PACS and self-test subcommands (their modules cost
~40 ms of imports); everything else, errors and help included, goes through the
full parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: Arguments that need the full parser (the PACS and self-test options, and the complete help).
_FULL_PARSER_ARGS = frozenset({"pacs", "selftest", "-h", "--help"})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
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
