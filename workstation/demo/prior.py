"""The demo study's prior: the same chest a year earlier, in another pose, with known change.

The follow-up reading (``inference.followup``) needs a pair whose answers are
known. The prior is the phantom of ``workstation.demo.anatomy`` with the
nodules as they were a year before the current demo study (``PRIOR_NODULES``):

- the right upper lobe nodule was smaller (6 mm, now 9 mm: grown, known doubling time);
- the right lower lobe nodule was absent (new now);
- the two left nodules were the same size (stable).

The whole chest is then posed differently on the table: its label map is
resampled (nearest neighbour, so labels stay exact) through ``PRIOR_POSE``, a
rotation of a few degrees and a shift; HU and noise are added afterwards with
their own seed. The truth (``followup_truth.json``) records the transform from
current to prior LPS, each nodule's status, sizes then and now, voxel volumes
and the doubling time ``interval * ln 2 / ln(V_now / V_then)`` from those
voxel volumes. The prior is its own study (own UIDs, StudyDate one year
earlier, a different accession) of the same patient.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from workstation.demo.anatomy import (
    NODULES,
    Grid,
    Nodule,
    Phantom,
    _paint_nodules,
    _Painter,
    build_labels,
    labels_to_hu,
)
from workstation.demo.phantom import (
    FOLLOWUP_TRUTH_FILE,
    GENERATOR_VERSION,
    NOTES_FILE,
    STUDY_DATE,
    TRUTH_FILE,
    _write_series,
)
from workstation.demo.truth import DemoTruth, compute_truth

logger = logging.getLogger(__name__)

PRIOR_STUDY_DATE = "20230315"
PRIOR_ROLE = ("prior",)
PRIOR_SEED_OFFSET = 1000
PRIOR_ATTRIBUTES: dict[str, Any] = {
    "StudyDate": PRIOR_STUDY_DATE,
    "SeriesDate": PRIOR_STUDY_DATE,
    "AcquisitionDate": PRIOR_STUDY_DATE,
    "ContentDate": PRIOR_STUDY_DATE,
    "AccessionNumber": "DEMOACC0000",
    "StudyID": "0",
    "PatientAge": "067Y",
    "ReasonForTheRequestedProcedure": "Chronic cough; evaluate lungs",
    "AdditionalPatientHistory": "67-year-old former smoker, 40 pack-years, stopped 2015. Chronic cough.",
}
PRIOR_NOTES_TEXT = """\
Clinical notes (synthetic demo patient, not a real person)

67-year-old man, former smoker, 40 pack-years. Chronic cough. CT chest requested.
"""

PRIOR_NODULES: tuple[Nodule | None, ...] = (
    Nodule(NODULES[0].center, 6.0, NODULES[0].side, NODULES[0].lobe),  # grew to 9 mm
    None,  # new in the current study
    NODULES[2],  # stable
    NODULES[3],  # stable
)
"""The prior's nodules, aligned with ``anatomy.NODULES`` (None: absent then), in the phantom's frame."""

PRIOR_POSE_DEG = (2.0, -3.0, 4.0)
"""Rotation about the LPS x, y and z axes (degrees), applied in that order."""
PRIOR_POSE_SHIFT_MM = (8.0, -6.0, 12.0)
"""Translation (LPS mm) after the rotation."""


def prior_to_current() -> npt.NDArray[np.float64]:
    """4x4 mapping a point of the prior study's LPS to the same anatomy in the current study's LPS.

    The prior image at point ``p`` shows the anatomy the current image shows
    at ``R @ p + t`` (``R`` from ``PRIOR_POSE_DEG``, ``t`` = ``PRIOR_POSE_SHIFT_MM``).
    """
    ax, ay, az = (math.radians(a) for a in PRIOR_POSE_DEG)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = PRIOR_POSE_SHIFT_MM
    return m


def current_to_prior() -> npt.NDArray[np.float64]:
    """The inverse of ``prior_to_current``: what a perfect registration finds."""
    return np.asarray(np.linalg.inv(prior_to_current()), dtype=np.float64)


@dataclass(frozen=True)
class NoduleChangeTruth:
    """One nodule of the pair: index in ``anatomy.NODULES``, status, sizes and volumes then and now."""

    index: int
    status: str
    center_current_lps_mm: tuple[float, float, float]
    center_prior_lps_mm: tuple[float, float, float] | None
    diameter_now_mm: float
    diameter_then_mm: float | None
    volume_now_ml: float
    volume_then_ml: float | None
    doubling_time_days: float | None
    nominal_doubling_time_days: float | None


@dataclass(frozen=True)
class FollowupTruth:
    """The demo pair's known answers."""

    current_study_date: str
    prior_study_date: str
    interval_days: int
    current_to_prior: tuple[tuple[float, ...], ...]
    nodules: tuple[NoduleChangeTruth, ...]

    def to_json(self) -> str:
        """Stable JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FollowupTruth:
        """Rebuild a truth written by ``to_json``."""

        def vec(v: Any) -> tuple[float, float, float] | None:
            return None if v is None else (float(v[0]), float(v[1]), float(v[2]))

        nodules = tuple(
            NoduleChangeTruth(
                **{
                    **n,
                    "center_current_lps_mm": vec(n["center_current_lps_mm"]),
                    "center_prior_lps_mm": vec(n["center_prior_lps_mm"]),
                }
            )
            for n in data["nodules"]
        )
        return cls(
            current_study_date=data["current_study_date"],
            prior_study_date=data["prior_study_date"],
            interval_days=int(data["interval_days"]),
            current_to_prior=tuple(tuple(float(v) for v in row) for row in data["current_to_prior"]),
            nodules=nodules,
        )


def load_followup_truth(path: Path) -> FollowupTruth:
    """Read ``followup_truth.json`` (or the prior folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / FOLLOWUP_TRUTH_FILE
    return FollowupTruth.from_dict(json.loads(path.read_text(encoding="utf-8")))


def build_prior_phantom(shape: tuple[int, int, int] = (120, 256, 256), seed: int = 0) -> Phantom:
    """The prior in memory: prior nodules, re-posed label map, its own noise; nodule centres in prior LPS."""
    grid = Grid.for_shape(shape)
    upright = build_labels(grid, ())
    # prior voxel -> prior LPS -> current (phantom) LPS -> phantom voxel
    a = grid.affine
    m = np.linalg.inv(a) @ prior_to_current() @ a
    labels = ndimage.affine_transform(
        upright, m[:3, :3], offset=m[:3, 3], output_shape=grid.shape, order=0, mode="constant", cval=0
    )
    to_prior = current_to_prior()
    moved = tuple(
        Nodule(_point(to_prior, n.center), n.diameter_mm, n.side, n.lobe) for n in PRIOR_NODULES if n is not None
    )
    # Spheres are painted on the prior's own grid (not resampled), so they are digitised like the current ones.
    painter = _Painter(grid)
    painter.labels = labels
    _paint_nodules(painter, moved)
    return Phantom(grid, painter.labels, labels_to_hu(painter.labels, seed + PRIOR_SEED_OFFSET), seed, moved)


def _point(m: npt.NDArray[np.float64], p: tuple[float, float, float]) -> tuple[float, float, float]:
    q = m[:3, :3] @ np.asarray(p, dtype=np.float64) + m[:3, 3]
    return (round(float(q[0]), 4), round(float(q[1]), 4), round(float(q[2]), 4))


def _days(a: str, b: str) -> int:
    return (date(int(b[:4]), int(b[4:6]), int(b[6:])) - date(int(a[:4]), int(a[4:6]), int(a[6:]))).days


def followup_truth(current: DemoTruth, prior: DemoTruth) -> FollowupTruth:
    """The pair's truth from both studies' voxel-counted truths."""
    interval = _days(PRIOR_STUDY_DATE, STUDY_DATE)
    it = iter(prior.nodules)
    rows = []
    for i, (now, then) in enumerate(zip(current.nodules, PRIOR_NODULES, strict=True)):
        was = next(it) if then is not None else None
        vdt = nominal = None
        if was is None:
            status = "new"
        elif now.diameter_mm > was.diameter_mm:
            status = "grown"
            vdt = interval * math.log(2.0) / math.log(now.volume_ml / was.volume_ml)
            nominal = interval * math.log(2.0) / (3.0 * math.log(now.diameter_mm / was.diameter_mm))
        else:
            status = "stable"
        rows.append(
            NoduleChangeTruth(
                index=i,
                status=status,
                center_current_lps_mm=now.center_lps_mm,
                center_prior_lps_mm=was.center_lps_mm if was else None,
                diameter_now_mm=now.diameter_mm,
                diameter_then_mm=was.diameter_mm if was else None,
                volume_now_ml=now.volume_ml,
                volume_then_ml=was.volume_ml if was else None,
                doubling_time_days=vdt,
                nominal_doubling_time_days=nominal,
            )
        )
    return FollowupTruth(
        current_study_date=STUDY_DATE,
        prior_study_date=PRIOR_STUDY_DATE,
        interval_days=interval,
        current_to_prior=tuple(tuple(float(v) for v in row) for row in current_to_prior()),
        nodules=tuple(rows),
    )


def generate_demo_prior(
    folder: Path, current: DemoTruth, *, shape: tuple[int, int, int] = (120, 256, 256), seed: int = 0
) -> FollowupTruth:
    """Write the prior series, its ``notes.txt``, ``truth.json`` and the pair's ``followup_truth.json``.

    ``current`` is the current demo study's truth (``generate_demo_study``'s
    return value, same shape and seed). ``folder`` must be empty or missing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"the demo prior needs an empty folder: {folder}")
    phantom = build_prior_phantom(shape, seed)
    truth = compute_truth(phantom, GENERATOR_VERSION)
    _write_series(folder, phantom.grid, phantom.hu, seed, PRIOR_ROLE, PRIOR_ATTRIBUTES)
    pair = followup_truth(current, truth)
    (folder / NOTES_FILE).write_bytes(PRIOR_NOTES_TEXT.encode("utf-8"))
    (folder / TRUTH_FILE).write_bytes(truth.to_json().encode("utf-8"))
    (folder / FOLLOWUP_TRUTH_FILE).write_bytes(pair.to_json().encode("utf-8"))
    logger.info("wrote demo prior (%d slices) to %s", phantom.grid.shape[0], folder)
    return pair
