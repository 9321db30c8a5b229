"""Comparison records for the report layer's tests, made by the follow-up engine's own matching and guidelines.

``sample_comparison`` takes the current findings' lesions (``tests.llm_factory.sample_inputs``
or a real analysis), makes a prior a year earlier from them — the first lesion smaller
(it has grown since), the third unchanged, the others absent (new now), and one prior
lesion that is gone now (resolved) — and compares them through
``inference.followup.matching.match_lesions`` and ``guidelines.recommend``, so
statuses, volume changes and doubling times are the engine's, not typed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date

import numpy as np

from inference.findings import Lesion
from inference.followup.guidelines import recommend
from inference.followup.matching import match_lesions
from inference.followup.model import Comparison, RegistrationResult
from inference.followup.space import FieldOfView

PRIOR_DATE = date(2025, 11, 5)
CURRENT_DATE = date(2026, 11, 6)  # 366 days later
PRIOR_SERIES = 3
GROWTH = 1.25  # linear growth of the first lesion since the prior


def registration(passed: bool = True) -> RegistrationResult:
    """An identity-like rigid registration (a small shift) that passed or failed its quality check."""
    m = np.eye(4)
    m[:3, 3] = (2.0, -1.0, 3.0)
    return RegistrationResult.from_array(
        m, kind="rigid", metric_name="Mattes mutual information", metric_value=-0.71,
        quality_name="normalised cross-correlation of body voxels", quality_value=0.91 if passed else 0.22,
        quality_threshold=0.5, passed=passed,
        reason="" if passed else "normalised cross-correlation 0.22 is below the threshold 0.5")


def prior_lesions(current: Sequence[Lesion]) -> list[Lesion]:
    """The prior's lesions (see the module docstring), in the prior's frame (shifted like ``registration``)."""
    def moved(les: Lesion, number: int, scale: float, instance: int) -> Lesion:
        x, y, z = les.centroid_lps
        return dataclasses.replace(les, number=number, centroid_lps=(x + 2.0, y - 1.0, z + 3.0),
                                   long_axis_mm=les.long_axis_mm / scale, short_axis_mm=les.short_axis_mm / scale,
                                   volume_ml=les.volume_ml / scale ** 3, series_number=PRIOR_SERIES,
                                   instance_number=instance)

    grown, stable = current[0], current[2]
    gone = dataclasses.replace(current[-1], number=3, centroid_lps=(-95.0, 20.0, -100.0), long_axis_mm=6.2,
                               short_axis_mm=5.1, volume_ml=0.085, series_number=PRIOR_SERIES, instance_number=21)
    return [moved(stable, 1, 1.0, 70), moved(grown, 2, GROWTH, 33), gone]


def sample_comparison(current: Sequence[Lesion], *, passed: bool = True, description: str = "CT CHEST",
                      screening: bool = False, current_field: FieldOfView | None = None,
                      prior_field: FieldOfView | None = None) -> Comparison:
    """The comparison of ``current`` (at least three lesions) with the made-up prior.

    ``current_field``/``prior_field``: the studies' fields of view (None: every place imaged by both).
    """
    reg = registration(passed)
    interval = (CURRENT_DATE - PRIOR_DATE).days
    compared = list(current)
    changes = match_lesions(compared, prior_lesions(current), reg, interval, current_field=current_field,
                            prior_field=prior_field) if passed else ()
    outcome = recommend(compared, changes, screening=screening, interval_days=interval)
    return Comparison(PRIOR_DATE, "1.2.826.0.1.3680043.8.498.1", description, PRIOR_SERIES,
                      "1.2.826.0.1.3680043.8.498.2", CURRENT_DATE, reg, changes, outcome.recommendation,
                      outcome.reason,
                      cautions=() if passed else ("registration failed its quality check; lesions were not matched",))
