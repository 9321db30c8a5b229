"""The self-test: ``workstation --self-test`` (and ``python -m workstation.selftest``).

What hospital IT runs after installing the bundle, and what CI runs on the
frozen build, to prove that everything the application needs at run time was
packed: the window opens (offscreen when there is no display), the demo study is
generated and imported, the built-in CT analysis runs on the inference worker
thread and is kept in the analysis store, and ``workstation.services.reporting.run_report``
(what ``workstation report`` runs, here without reusing the stored analysis) drafts
the template report, checks its grounding and writes every export (DICOM SEG,
measurement SR, report SR, PDF, text, NIfTI, report.json); its headless analysis
must agree with the worker thread's. With ``--llm DIR``
a local language model drafts a few tokens too (transformers, offline). It also checks the
compressed-pixel decoders (pylibjpeg plugins found through their entry points),
the header-reading worker processes (``multiprocessing.freeze_support`` in a
frozen build), the resources folder, and that nothing tried to reach the network.

Everything is written to a temporary folder, never to the user's data or
config dirs (``_isolated_environment`` points both there, so the index, the
analysis store, report drafts, thumbnails and the audit trail all land in it),
and removed afterwards unless ``--keep DIR`` is given. The exit
status is 0 when every step passed; otherwise each failure is printed and the
status is 1. ``startup`` reports the seconds from process launch to the window
being shown, the number the packaging README quotes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.network_audit import NetworkAudit, network_audit
from workstation.selftest_steps import (
    EXPECTED_EXPORTS,
    SelfTestReport,
    SelfTestRun,
    StepResult,
    check_decoders,
)

if TYPE_CHECKING:
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["EXPECTED_EXPORTS", "SelfTestReport", "StepResult", "check_decoders", "format_report", "main",
           "run_from_args", "run_self_test"]

OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # set by packaging/hooks/rthooks/pyi_rth_workstation.py
ISOLATED_ENV = ("WORKSTATION_DATA_DIR", "WORKSTATION_CONFIG_DIR", "WORKSTATION_DB", "WORKSTATION_MODELS_DIR")


# --- isolation --------------------------------------------------------------------------------------

@contextlib.contextmanager
def _isolated_environment(root: Path, offscreen: bool) -> Iterator[None]:
    """Point the data and config dirs at ``root`` (and Qt at offscreen if asked); restore everything after."""
    from inference.environ import restored_environ
    from workstation.logs import move_log_file
    from workstation.settings import get_settings

    with restored_environ((*ISOLATED_ENV, "QT_QPA_PLATFORM")):
        os.environ["WORKSTATION_DATA_DIR"] = str(root / "data")
        os.environ["WORKSTATION_CONFIG_DIR"] = str(root / "config")
        for name in ("WORKSTATION_DB", "WORKSTATION_MODELS_DIR"):
            os.environ.pop(name, None)
        if offscreen:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        get_settings.cache_clear()
        move_log_file(root / "data")  # the self-test's log stays in its own folder too
        try:
            yield
        finally:
            get_settings.cache_clear()


def _needs_offscreen() -> bool:
    """No display to open a window on (and no platform chosen): use Qt's offscreen platform."""
    if os.environ.get("QT_QPA_PLATFORM") or not sys.platform.startswith("linux"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _configured(report: SelfTestReport) -> Settings | None:
    """The user's settings as configured (file and environment), read before the self-test isolates itself."""
    from workstation.settings import get_settings

    t0 = time.perf_counter()
    try:
        return get_settings()
    except Exception as exc:  # an invalid settings file or variable: the installation is not usable as configured
        report.steps.append(StepResult("settings", False, round(time.perf_counter() - t0, 2),
                                       f"the settings cannot be read: {exc}"))
        return None


def _offline_step(audit: NetworkAudit, frozen: bool) -> StepResult:
    problems = [f"network access attempted: {'; '.join(audit.attempts)}"] if audit.attempts else []
    if frozen:  # the runtime hook of the bundle switches the hub and transformers offline
        problems += [f"{name} is not 1" for name in OFFLINE_SWITCHES if os.environ.get(name) != "1"]
    detail = "; ".join(problems) or ("no network access attempted" + (
        f" ({', '.join(OFFLINE_SWITCHES)} set)" if frozen else ""))
    return StepResult("offline", not problems, 0.0, detail)


def run_self_test(workdir: Path | None = None, *, offscreen: bool | None = None,
                  llm_dir: Path | None = None) -> SelfTestReport:
    """Run every step in a temporary folder (or ``workdir``, kept) and return the report; never raises.

    The configured device is used, and the configured language model folder
    (``llm_dir`` in the settings) unless ``llm_dir`` names another: with one, a
    few tokens are drafted with it (the transformers path).
    """
    report = SelfTestReport(frozen=bool(getattr(sys, "frozen", False)))
    configured = _configured(report)
    if llm_dir is None and configured is not None:
        llm_dir = configured.llm_dir
    temp: tempfile.TemporaryDirectory[str] | None = None
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="workstation-selftest-")
        root = Path(temp.name)
    else:
        root = Path(workdir).expanduser().absolute()
        root.mkdir(parents=True, exist_ok=True)
    report.workdir = str(root)
    audit = network_audit()
    audit.attempts.clear()
    audit.active = True
    try:
        with _isolated_environment(root, _needs_offscreen() if offscreen is None else offscreen):
            from workstation.settings import get_settings

            settings = get_settings()
            if configured is not None:
                settings = settings.model_copy(update={"device": configured.device})
            run = SelfTestRun(settings, root, report)
            run.step("resources", run.resources)
            if run.step("window", run.open_window):
                if run.step("demo study", run.open_demo):
                    run.step("decoders", run.decoders)
                    if run.step("analysis", run.analyse) and run.step("report and exports",
                                                                      run.report_and_exports) and llm_dir:
                        run.step("language model", lambda: run.language_model(Path(llm_dir)))
                    run.step("import workers", run.import_workers)
                run.step("close", run.close_window)
    finally:
        audit.active = False
        report.steps.append(_offline_step(audit, report.frozen))
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.cleanup()
    return report


def format_report(report: SelfTestReport) -> str:
    """Human-readable lines: one per step, the start-up time and the verdict."""
    lines = [f"self-test ({'frozen bundle' if report.frozen else 'from source'}, Python "
             f"{sys.version.split()[0]}, {sys.platform})"]
    for s in report.steps:
        lines.append(f"  {'ok  ' if s.ok else 'FAIL'} {s.name:<19} {s.seconds:7.2f} s  {s.detail}")
    if report.startup_s is not None:
        lines.append(f"startup: window shown {report.startup_s:.2f} s after launch")
    failed = [s.name for s in report.steps if not s.ok]
    lines.append("self-test passed" if report.ok else f"self-test FAILED: {', '.join(failed) or 'no step ran'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The self-test's options (shared by ``workstation selftest`` and ``python -m workstation.selftest``)."""
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the demo study, index and exports into DIR and keep them (default: a "
                             "temporary folder, removed afterwards)")
    parser.add_argument("--offscreen", action="store_true",
                        help="use Qt's offscreen platform even when a display is available")
    parser.add_argument("--llm", type=Path, metavar="DIR",
                        help="also draft a few tokens with this local language model folder (default: the one "
                             "configured in the settings, if any)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed options, print the report; 0 when every step passed, else 1."""
    report = run_self_test(getattr(args, "keep", None), offscreen=True if getattr(args, "offscreen", False) else None,
                           llm_dir=getattr(args, "llm", None))
    if getattr(args, "json", False):
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    sys.stdout.flush()
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workstation.selftest [--keep DIR] [--offscreen] [--json]``."""
    parser = argparse.ArgumentParser(prog="workstation selftest",
                                     description="Check the installation in a temporary folder (exit 0: all passed).")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()
    sys.exit(main())
