"""Pair the current study's lesions with the prior's through the registration, and say how each changed.

Each prior lesion's centre is carried into the current study's space
(``RegistrationResult.to_current``); a current and a prior lesion may be the
same one when their centres lie within ``ChangeCriteria.match_distance_mm``
plus ``match_size_factor`` times the larger long axis. Pairs are chosen one to
one by the Hungarian method on distance (scipy), so a close pair is never
broken to make a farther one. Unpaired current lesions are ``new``, unpaired
prior lesions ``resolved`` -- unless the other study never imaged the place:
an unpaired lesion whose centre, carried through the registration, does not
lie inside the other study's ``FieldOfView`` by at least half its long axis
(it would not have been imaged whole) is ``not covered`` (no change is known).
Without the fields (``None``) every place is taken as imaged by both studies.

Status of a pair (``ChangeCriteria``): ``grown`` when the mean diameter rose by
more than 1.5 mm (Fleischner 2017, Lung-RADS v2022) or the volume by more than
25 %; ``shrunk`` for the mirror image; ``stable`` otherwise. The volume
doubling time ``VDT = interval * ln 2 / ln(V_now / V_then)`` is given for
grown lesions only; otherwise it is None and ``doubling_time_reason`` says why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from inference.findings.model import Lesion
from inference.followup.model import ChangeCriteria, ChangeStatus, LesionChange, LesionSnapshot
from inference.followup.space import FieldOfView, RegistrationResult

logger = logging.getLogger(__name__)


def doubling_time_days(volume_then_ml: float, volume_now_ml: float, interval_days: float) -> tuple[float | None, str]:
    """``(VDT in days, "")`` for a growing lesion, else ``(None, why not)``."""
    if interval_days <= 0:
        return None, "no time elapsed between the studies"
    if volume_then_ml <= 0 or volume_now_ml <= 0:
        return None, "a volume is zero"
    if volume_now_ml <= volume_then_ml:
        return None, "not growing (volume did not increase)"
    return interval_days * math.log(2.0) / math.log(volume_now_ml / volume_then_ml), ""


def classify(prior: LesionSnapshot, current: LesionSnapshot, criteria: ChangeCriteria) -> ChangeStatus:
    """``grown``/``shrunk``/``stable`` of one pair by the stated thresholds."""
    d = current.mean_diameter_mm - prior.mean_diameter_mm
    ratio = current.volume_ml / prior.volume_ml if prior.volume_ml > 0 else math.inf
    if d > criteria.diameter_mm or ratio > 1.0 + criteria.volume_fraction:
        return ChangeStatus.GROWN
    if d < -criteria.diameter_mm or ratio < 1.0 - criteria.volume_fraction:
        return ChangeStatus.SHRUNK
    return ChangeStatus.STABLE


def change_of_pair(
    prior: LesionSnapshot,
    current: LesionSnapshot,
    interval_days: float,
    criteria: ChangeCriteria,
    distance_mm: float | None = None,
) -> LesionChange:
    """The change record of a matched pair (status, volume and diameter change, doubling time)."""
    status = classify(prior, current, criteria)
    pct = (current.volume_ml / prior.volume_ml - 1.0) * 100.0 if prior.volume_ml > 0 else None
    if status is ChangeStatus.GROWN:
        vdt, why = doubling_time_days(prior.volume_ml, current.volume_ml, interval_days)
    else:
        vdt, why = None, f"not given for a {status.value} lesion (doubling time applies to growth)"
    return LesionChange(
        status=status,
        current=current,
        prior=prior,
        volume_change_percent=None if pct is None else round(pct, 1),
        diameter_change_mm=round(current.mean_diameter_mm - prior.mean_diameter_mm, 2),
        doubling_time_days=None if vdt is None else round(vdt, 1),
        doubling_time_reason=why,
        distance_mm=None if distance_mm is None else round(distance_mm, 2),
    )


def match_lesions(
    current: Sequence[Lesion],
    prior: Sequence[Lesion],
    registration: RegistrationResult,
    interval_days: float,
    criteria: ChangeCriteria | None = None,
    *,
    current_field: FieldOfView | None = None,
    prior_field: FieldOfView | None = None,
) -> tuple[LesionChange, ...]:
    """Every current and prior lesion in one change record each, current lesions first (by number).

    Order: matched, new and not covered current lesions in the current study's
    numbering, then the resolved and not covered prior lesions in the prior's.
    ``prior_field``/``current_field``: the studies' fields of view, which decide
    ``not covered`` for unpaired lesions (module docstring).
    """
    from scipy.optimize import linear_sum_assignment

    crit = criteria or ChangeCriteria()
    cur = [LesionSnapshot.from_lesion(x) for x in current]
    pri = [LesionSnapshot.from_lesion(x) for x in prior]
    pairs: dict[int, tuple[int, float]] = {}
    if cur and pri:
        moved = registration.to_current([p.centroid_lps for p in pri])
        here = np.asarray([c.centroid_lps for c in cur], dtype=np.float64)
        dist = np.linalg.norm(here[:, None, :] - moved[None, :, :], axis=2)
        size = np.maximum.outer(np.asarray([c.long_axis_mm for c in cur]), np.asarray([p.long_axis_mm for p in pri]))
        allowed = dist <= crit.match_distance_mm + crit.match_size_factor * size
        cost = np.where(allowed, dist, 1e9)
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols, strict=True):
            if allowed[i, j]:
                pairs[int(i)] = (int(j), float(dist[i, j]))
    changes: list[LesionChange] = []
    for i, c in sorted(enumerate(cur), key=lambda t: t[1].number):
        if i in pairs:
            j, d = pairs[i]
            changes.append(change_of_pair(pri[j], c, interval_days, crit, d))
        else:
            changes.append(_unpaired_current(c, registration, prior_field))
    used = {j for j, _ in pairs.values()}
    for j, p in sorted(enumerate(pri), key=lambda t: t[1].number):
        if j not in used:
            changes.append(_unpaired_prior(p, registration, current_field))
    outside = sum(ch.status is ChangeStatus.NOT_COVERED for ch in changes)
    logger.info("matched %d of %d current and %d prior lesions; %d outside the other study's field of view",
                len(pairs), len(cur), len(pri), outside)
    return tuple(changes)


def imaged_in(field: FieldOfView | None, centre_there: npt.ArrayLike, long_axis_mm: float) -> bool:
    """Whether a lesion whose centre lies at ``centre_there`` (LPS of the other study) was imaged whole there.

    ``field`` None (not known): taken as imaged.
    """
    if field is None:
        return True
    return bool(field.contains(np.asarray(centre_there, dtype=np.float64).reshape(1, 3), long_axis_mm / 2.0)[0])


def _unpaired_current(c: LesionSnapshot, registration: RegistrationResult, prior_field: FieldOfView | None
                      ) -> LesionChange:
    """A current lesion without a prior partner: ``new``, or ``not covered`` when the prior never imaged it."""
    if imaged_in(prior_field, registration.to_prior(c.centroid_lps), c.long_axis_mm):
        return LesionChange(status=ChangeStatus.NEW, current=c, prior=None,
                            doubling_time_reason="new lesion: no prior volume")
    return LesionChange(status=ChangeStatus.NOT_COVERED, current=c, prior=None,
                        doubling_time_reason="not included in the prior examination's field of view: no prior volume")


def _unpaired_prior(p: LesionSnapshot, registration: RegistrationResult, current_field: FieldOfView | None
                    ) -> LesionChange:
    """A prior lesion without a current partner: ``resolved``, or ``not covered`` when the current does not image it."""
    if imaged_in(current_field, registration.to_current(p.centroid_lps), p.long_axis_mm):
        return LesionChange(status=ChangeStatus.RESOLVED, current=None, prior=p,
                            doubling_time_reason="resolved: no current volume")
    return LesionChange(status=ChangeStatus.NOT_COVERED, current=None, prior=p,
                        doubling_time_reason="not included in the current examination's field of view: "
                                             "no current volume")
