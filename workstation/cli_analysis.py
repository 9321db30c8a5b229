"""The ``analyze`` and ``report`` commands: a model run, a drafted report, and their terminal output.

The work is the services' (``services.analysis.analyze_target``,
``services.reporting.run_report``); this module only shows progress on stderr,
streams the language model's text, and prints what a reader checks: the
measurements, each lesion with its image, the cautions, the grounding check and
the files written (always marked as an unverified AI draft).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workstation.settings import Settings

logger = logging.getLogger(__name__)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (what ``--json`` prints)."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class TerminalProgress:
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


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services.analysis import analyze_target

    progress = TerminalProgress()
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


class TokenEcho:
    """Streams a language model's text to stderr between progress lines."""

    def __init__(self, progress: TerminalProgress) -> None:
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


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from workstation.services.reporting import DRAFT_STATUS, configured_llm_dir, run_report

    progress = TerminalProgress()
    echo = TokenEcho(progress)
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
        print_json(res.to_dict())
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
