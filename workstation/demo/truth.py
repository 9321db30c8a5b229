"""Ground truth of the demo study, counted from the voxels that were written.

Conventions (what analysis tests compare against):

- A lung's mask is its parenchyma including its nodules and (right lung) the
  emphysema region, excluding airways and their walls, vessels, the heart and
  everything outside the pleural cavity. Volumes are voxel counts times the voxel
  volume, so they are exact on the written grid.
- %LAA-950 is the share of a lung mask's voxels whose written HU is strictly
  below -950, in percent. Noise is clipped at ±4 sigma, so normal lung (-850 HU)
  never counts; emphysema (-970 HU) mostly does, and the truth says how much.
- Nodule volume is the voxelised sphere on the grid; the nominal sphere volume
  (pi d^3 / 6) is given beside it.
- Coordinates are DICOM patient LPS in mm; spacing is ``(slice, row, column)``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workstation.demo.anatomy import (
    EMPHYSEMA_REGION,
    LEFT_LUNG,
    NOISE_SIGMA_HU,
    RIGHT_LUNG,
    TABLE_Y,
    TISSUE_HU,
    Phantom,
    Tissue,
)

logger = logging.getLogger(__name__)

LAA_THRESHOLD_HU = -950


def _vec(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v)


@dataclass(frozen=True)
class NoduleTruth:
    """One solid nodule: where, how big, which lung."""

    center_lps_mm: tuple[float, float, float]
    diameter_mm: float
    side: str
    lobe: str
    voxel_count: int
    volume_ml: float
    nominal_volume_ml: float


@dataclass(frozen=True)
class LungTruth:
    """One lung (mask convention in the module docstring) and the ellipsoid it was cut from."""

    side: str
    voxel_count: int
    volume_ml: float
    laa950_percent: float
    envelope_center_lps_mm: tuple[float, float, float]
    envelope_radii_mm: tuple[float, float, float]


@dataclass(frozen=True)
class EmphysemaTruth:
    """The emphysematous region (a sub-region of one lung)."""

    side: str
    voxel_count: int
    volume_ml: float
    below_950_percent: float
    nominal_hu: float
    envelope_center_lps_mm: tuple[float, float, float]
    envelope_radii_mm: tuple[float, float, float]


@dataclass(frozen=True)
class DemoTruth:
    """Everything a test needs to check an analysis of the demo study."""

    generator_version: str
    seed: int
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    affine: tuple[tuple[float, ...], ...]
    nodules: tuple[NoduleTruth, ...]
    lungs: tuple[LungTruth, ...]
    emphysema: EmphysemaTruth
    total_lung_volume_ml: float
    total_laa950_percent: float
    body_present: bool
    body_volume_ml: float
    table_top_y_mm: float
    noise_sigma_hu: float
    tissue_hu: dict[str, float]

    def lung(self, side: str) -> LungTruth:
        """The lung of ``side`` ("right" or "left")."""
        for lung in self.lungs:
            if lung.side == side:
                return lung
        raise KeyError(side)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)

    def to_json(self) -> str:
        """Stable JSON text (sorted keys), byte-identical for identical truths."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoTruth:
        """Rebuild a truth written by ``to_dict``."""
        def vec3(v: Any) -> tuple[float, float, float]:
            return _vec(v)  # type: ignore[return-value]

        nodules = tuple(
            NoduleTruth(**{**n, "center_lps_mm": vec3(n["center_lps_mm"])}) for n in data["nodules"]
        )
        lungs = tuple(
            LungTruth(**{**lung, "envelope_center_lps_mm": vec3(lung["envelope_center_lps_mm"]),
                         "envelope_radii_mm": vec3(lung["envelope_radii_mm"])})
            for lung in data["lungs"]
        )
        e = data["emphysema"]
        emphysema = EmphysemaTruth(**{**e, "envelope_center_lps_mm": vec3(e["envelope_center_lps_mm"]),
                                      "envelope_radii_mm": vec3(e["envelope_radii_mm"])})
        return cls(**{
            **data,
            "shape": tuple(int(v) for v in data["shape"]),
            "spacing_mm": vec3(data["spacing_mm"]),
            "origin_lps_mm": vec3(data["origin_lps_mm"]),
            "affine": tuple(_vec(row) for row in data["affine"]),
            "nodules": nodules,
            "lungs": lungs,
            "emphysema": emphysema,
            "tissue_hu": {str(k): float(v) for k, v in data["tissue_hu"].items()},
        })


def load_truth(path: Path) -> DemoTruth:
    """Read ``truth.json`` (or the study folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "truth.json"
    return DemoTruth.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def compute_truth(phantom: Phantom, generator_version: str) -> DemoTruth:
    """Count the truth from the phantom's label map and written HU values."""
    grid, labels, hu = phantom.grid, phantom.labels, phantom.hu
    voxel_ml = grid.voxel_ml
    _, _, x = grid.axes()
    low = hu < LAA_THRESHOLD_HU
    nodule = labels == Tissue.NODULE
    nodules: list[NoduleTruth] = []
    for n in phantom.nodules:
        idx = np.rint(np.linalg.inv(grid.affine) @ np.array([*n.center, 1.0]))[:3].astype(int)
        r = [math.ceil(n.diameter_mm / 2 / s) + 1 for s in grid.spacing]
        box = tuple(slice(max(i - k, 0), i + k + 1) for i, k in zip(idx, r, strict=True))
        count = int(nodule[box].sum())
        nodules.append(NoduleTruth(
            center_lps_mm=n.center, diameter_mm=n.diameter_mm, side=n.side, lobe=n.lobe,
            voxel_count=count, volume_ml=count * voxel_ml,
            nominal_volume_ml=math.pi * n.diameter_mm**3 / 6000.0,
        ))
    lungs: list[LungTruth] = []
    total = total_low = 0
    for side, tissue, envelope in (("right", Tissue.LUNG_RIGHT, RIGHT_LUNG),
                                   ("left", Tissue.LUNG_LEFT, LEFT_LUNG)):
        on_side = (x < 0) if side == "right" else (x > 0)
        mask = (labels == tissue) | (nodule & on_side[None, None, :])
        if side == "right":
            mask |= labels == Tissue.EMPHYSEMA
        count, count_low = int(mask.sum()), int((mask & low).sum())
        total, total_low = total + count, total_low + count_low
        lungs.append(LungTruth(
            side=side, voxel_count=count, volume_ml=count * voxel_ml,
            laa950_percent=_percent(count_low, count),
            envelope_center_lps_mm=envelope.center, envelope_radii_mm=envelope.radii,
        ))
    emph = labels == Tissue.EMPHYSEMA
    emph_count = int(emph.sum())
    body_count = int((labels >= Tissue.SOFT_TISSUE).sum())
    return DemoTruth(
        generator_version=generator_version,
        seed=phantom.seed,
        shape=grid.shape,
        spacing_mm=grid.spacing,
        origin_lps_mm=grid.origin,
        affine=tuple(_vec(row) for row in grid.affine),
        nodules=tuple(nodules),
        lungs=tuple(lungs),
        emphysema=EmphysemaTruth(
            side="right", voxel_count=emph_count, volume_ml=emph_count * voxel_ml,
            below_950_percent=_percent(int((emph & low).sum()), emph_count),
            nominal_hu=TISSUE_HU[Tissue.EMPHYSEMA],
            envelope_center_lps_mm=EMPHYSEMA_REGION.center, envelope_radii_mm=EMPHYSEMA_REGION.radii,
        ),
        total_lung_volume_ml=total * voxel_ml,
        total_laa950_percent=_percent(total_low, total),
        body_present=body_count > 0,
        body_volume_ml=body_count * voxel_ml,
        table_top_y_mm=TABLE_Y[0],
        noise_sigma_hu=NOISE_SIGMA_HU,
        tissue_hu={t.name.lower(): TISSUE_HU[t] for t in Tissue},
    )
