"""The rule that analysis refuses a volume that is mostly invented by interpolation, and its override.

A series with missing slices or a gap between acquisitions is resampled onto a
regular grid (``workstation.dicomio.interpolation`` records how many grid slices
no acquired slice lies on). Measuring a nodule or a lung on slices that were
made up between two source slices 20 cm apart would give numbers that look as
real as any other, so when more than ``max_share`` of the grid is interpolated
the analysis is refused with ``InterpolatedSeriesError``, naming the gaps.

The user may analyse anyway (``--allow-interpolated``, or "Analyse anyway" in
the window); the override is then written into the result's provenance notes
and its findings' cautions, so the draft report quotes it.

Every analysis path goes through ``run_checked``: ``analyze_source`` (the
``analyze`` command), ``run_report`` (the ``report`` command) and the window's
worker (``workstation.services.jobs.run_job``). The window also asks
``interpolation_problem`` before submitting, to offer the choice at once.
Qt-free, and light to import (the window's worker imports it at start-up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.cancel import CancelToken
from inference.contract import AnalysisRequest, AnalysisResult, ProgressCallback, no_progress
from inference.errors import InterpolatedSeriesError
from inference.volume import Volume
from workstation.dicomio.interpolation import INTERPOLATION_KEY

if TYPE_CHECKING:
    from inference.engine import Engine

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARE = 0.10
CLI_HINT = "Override with --allow-interpolated."


@dataclass(frozen=True)
class InterpolationPolicy:
    """How much interpolation an analysis accepts: ``max_share`` of the grid slices, unless ``allow``.

    ``hint`` ends the refusal message: how this caller's user overrides it.
    """

    max_share: float = DEFAULT_MAX_SHARE
    allow: bool = False
    hint: str = CLI_HINT


@dataclass(frozen=True)
class InterpolationProblem:
    """A volume over the limit: how many of its grid slices are interpolated, and across which gaps."""

    label: str
    interpolated: int
    total: int
    max_gap_mm: float
    axis: str
    gaps: tuple[tuple[float, float], ...]

    @property
    def share(self) -> float:
        """The interpolated share of the grid slices."""
        return self.interpolated / self.total if self.total else 0.0

    def where(self) -> str:
        """``gaps of up to 202.5 mm between source slices at z = -99.5..103.0 mm``."""
        spans = ", ".join(f"{a:.1f}..{b:.1f}" for a, b in self.gaps)
        at = f" at {self.axis} = {spans} mm" if spans else ""
        return f"gaps of up to {self.max_gap_mm:g} mm between source slices{at}"

    def refusal(self, hint: str = "") -> str:
        """The message of the refusal."""
        text = (f"{self.label}: {self.interpolated} of {self.total} slices would be interpolated "
                f"({self.where()}); analysis refused.")
        return f"{text} {hint}".strip()

    def caution(self) -> str:
        """What the findings (and so the draft report) say when the user overrode the refusal."""
        return (f"Analysis was run at the user's request although {self.interpolated} of {self.total} slices "
                f"are interpolated ({self.where()}); measurements across the gaps are not reliable.")


def interpolation_problem(volume: Volume, label: str, max_share: float = DEFAULT_MAX_SHARE
                          ) -> InterpolationProblem | None:
    """The problem when more than ``max_share`` of ``volume``'s slices are interpolated, else None."""
    info: Any = volume.metadata.get(INTERPOLATION_KEY)
    if not isinstance(info, dict):
        return None
    interpolated, total = int(info.get("interpolated", 0)), int(info.get("total", 0))
    if total <= 0 or interpolated / total <= max_share:
        return None
    gaps = tuple((float(g["from_mm"]), float(g["to_mm"])) for g in info.get("gaps", ()))
    return InterpolationProblem(label or "series", interpolated, total, float(info.get("max_gap_mm", 0.0)),
                                str(info.get("axis", "z")), gaps)


def check_interpolation(volume: Volume, label: str, policy: InterpolationPolicy) -> InterpolationProblem | None:
    """Raise ``InterpolatedSeriesError`` for a volume over the limit unless the policy allows it.

    Returns the problem the user overrode (None when the volume is within the limit).
    """
    problem = interpolation_problem(volume, label, policy.max_share)
    if problem is None:
        return None
    if not policy.allow:
        logger.info("analysis refused: %d of %d slices interpolated", problem.interpolated, problem.total)
        raise InterpolatedSeriesError(problem.refusal(policy.hint), interpolated=problem.interpolated,
                                      total=problem.total)
    logger.info("analysing at the user's request although %d of %d slices are interpolated",
                   problem.interpolated, problem.total)
    return problem


def record_override(result: AnalysisResult, problem: InterpolationProblem) -> AnalysisResult:
    """Write the override into the result's provenance notes and its findings' cautions (once)."""
    caution = problem.caution()
    if caution not in result.provenance.notes:
        result.provenance.notes.append(caution)
    if caution not in result.findings.cautions:
        result.findings.cautions.append(caution)
    return result


def run_checked(engine: Engine, request: AnalysisRequest, *, label: str, policy: InterpolationPolicy,
                progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> AnalysisResult:
    """Run ``request`` on ``engine`` if the interpolation rule lets it; record an override in the result."""
    from workstation.services import audit_trail

    try:
        problem = check_interpolation(request.volume, label, policy)
        result = engine.run(request, progress, cancel)
    except BaseException as exc:
        audit_trail.model_run(request, None, exc)  # every run, refused or failed too, is in the audit trail
        raise
    result = record_override(result, problem) if problem is not None else result
    audit_trail.model_run(request, result)
    return result
