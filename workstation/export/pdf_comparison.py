"""The PDF's comparison block: the prior study named, the registration's check, and the change table.

One row per lesion of either study (``inference.followup.model.LesionChange``,
in the record's order): the lesion (current number, and the prior's number
when it differs), its location, size then and now (long x short axis and the
mean diameter that Fleischner and Lung-RADS use), the volume change, the
volume doubling time, the status, and the images to look at in each study.
Grown and new lesions are printed in bold; a lesion outside the other study's
field of view reads "not in prior field" / "not in current field" with no
change (no comparison was possible). A registration that failed its
check is stated in red and no table is drawn: nothing was matched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from inference.findings import lesion_volume_text
from inference.followup.model import ChangeStatus, Comparison, LesionChange, LesionSnapshot
from inference.image_refs import image_text

logger = logging.getLogger(__name__)

HEADINGS = ("Lesion", "Location", "Prior size", "Current size", "Volume change", "VDT (days)", "Status",
            "Image prior / now")
WIDTHS = (16.0, 31.0, 30.0, 30.0, 18.0, 14.0, 16.0, 25.0)
_EMPHASIS = (ChangeStatus.GROWN, ChangeStatus.NEW)


class Writer(Protocol):
    """What the block needs of ``workstation.export.pdf._Writer``."""

    def heading(self, text: str, size: float = 11.5) -> None: ...

    def para(self, text: str, size: float = 10, color: tuple[int, int, int] = (0, 0, 0)) -> None: ...

    def table(self, headings: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float],
              bold_rows: Callable[[int], bool] | None = None) -> None: ...


def _size(s: LesionSnapshot | None) -> str:
    """"18.0 x 15.6 mm (mean 16.8)" and the volume on a second line; "-" when the lesion is absent then."""
    if s is None:
        return "-"
    return (f"{s.long_axis_mm:.1f} x {s.short_axis_mm:.1f} mm (mean {s.mean_diameter_mm:.1f})\n"
            f"{lesion_volume_text(s.volume_ml)}")


def _volume_change(ch: LesionChange) -> str:
    """"+218%", "-45%", "±0%" (never "-0%")."""
    if ch.volume_change_percent is None:
        return "-"
    text = f"{ch.volume_change_percent:+.0f}"
    return "±0%" if text in ("+0", "-0") else f"{text}%"


def _images(ch: LesionChange) -> str:
    def ref(s: LesionSnapshot | None) -> str:
        return (image_text(s.series_number, s.instance_number) or "?") if s is not None else "-"

    return f"{ref(ch.prior)} / {ref(ch.current)}"


def _lesion(ch: LesionChange) -> str:
    if ch.current is None:
        return f"prior {ch.prior_id}"
    if ch.prior is not None and ch.prior.number != ch.current.number:
        return f"{ch.current.number} (prior {ch.prior.number})"
    return str(ch.current.number)


def change_rows(comparison: Comparison) -> list[list[str]]:
    """The change table's rows, one per lesion (module docstring)."""
    rows = []
    for ch in comparison.changes:
        snap = ch.current or ch.prior
        vdt = f"{ch.doubling_time_days:.0f}" if ch.doubling_time_days is not None else "-"
        rows.append([_lesion(ch), (snap.zone if snap else "") or "-", _size(ch.prior), _size(ch.current),
                     _volume_change(ch), vdt, ch.status_label, _images(ch)])
    return rows


def prior_line(comparison: Comparison) -> str:
    """"Prior study: CT CHEST of 2025-11-05, series 3; interval 366 days; current study of 2026-11-06."."""
    desc = " ".join(comparison.prior_study_description.split())
    series = f", series {comparison.prior_series_number}" if comparison.prior_series_number is not None else ""
    head = f"{desc} of " if desc else ""
    return (f"Prior study: {head}{comparison.prior_study_date.isoformat()}{series}; interval "
            f"{comparison.interval_days} days; current study of {comparison.current_study_date.isoformat()}.")


def registration_line(comparison: Comparison) -> str:
    """The registration, its quality figure against the threshold, and whether it passed."""
    reg = comparison.registration
    verdict = "passed" if reg.passed else f"FAILED: {reg.reason or 'quality below the threshold'}"
    return (f"Registration: {reg.kind}; {reg.quality_name} {reg.quality_value:.2f} (threshold "
            f"{reg.quality_threshold:.2f}), {verdict}.")


def comparison_block(w: Writer, comparison: Comparison, red: tuple[int, int, int],
                     grey: tuple[int, int, int]) -> None:
    """Draw the block (module docstring) at the writer's position."""
    w.heading("Comparison with the prior study (AI)")
    w.para(prior_line(comparison), 9)
    reg = comparison.registration
    w.para(registration_line(comparison), 8.5, (0, 0, 0) if reg.passed else red)
    if not reg.passed:
        w.para("Comparison not made: lesions were not matched and no change is reported.", 9, red)
    elif comparison.changes:
        statuses = [ch.status for ch in comparison.changes]
        w.table(HEADINGS, change_rows(comparison), WIDTHS, bold_rows=lambda i: statuses[i] in _EMPHASIS)
        w.para(f"Sizes: long x short axis (axial) with the mean diameter, and volume. Change criteria: "
               f"{comparison.criteria.describe()}. VDT: volume doubling time, given for growing lesions."
               + (" Not in prior/current field: outside that examination's field of view, no comparison possible."
                  if ChangeStatus.NOT_COVERED in statuses else ""), 7.5, grey)
    else:
        w.para("No lesion was measured in either study.", 9)
    for caution in comparison.cautions:
        w.para(f"Caution: {caution}", 8.5, red)
    rec = comparison.recommendation
    if rec is not None:
        w.para(f"Guideline ({rec.rule}): {rec.text}", 9)
    elif comparison.recommendation_reason:
        w.para(f"No guideline recommendation: {comparison.recommendation_reason}", 8.5, grey)
