"""Where things lie across the two studies of a comparison: the registration's transform and each study's field.

``RegistrationResult`` maps a point of the *current* study to the same anatomy
in the *prior* study (LPS mm, ``p_prior = M @ [x, y, z, 1]``); ``to_current``
is its inverse. ``FieldOfView`` is the part of LPS space one study's volume
imaged (its voxel grid); a lesion carried into the other study through the
registration is only comparable when it lands inside that study's field
(``inference.followup.matching``: the ``not covered`` status). Both are plain
typed values, so the matching needs neither the volumes nor any service.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import WorkstationError
from inference.volume import Volume

logger = logging.getLogger(__name__)


class ComparisonFormatError(WorkstationError):
    """A stored ``"comparison"`` block is missing a field or holds a value of the wrong kind."""



@dataclass(frozen=True)
class RegistrationResult:
    """The transform aligning the prior to the current study, with how well it did.

    ``matrix`` (4x4, row-major, LPS mm) maps current -> prior points. ``kind``
    is ``"rigid"``, ``"affine"`` or ``"identity"`` (the same frame of reference,
    nothing to do). ``metric_name``/``metric_value`` are the optimiser's final
    value (Mattes mutual information: more negative is better). The quality
    check is independent of the optimiser: ``quality_name`` names it (e.g.
    "normalised cross-correlation of body voxels") and ``quality_value`` is its
    figure, judged against ``quality_threshold``. ``passed`` is False when the
    check failed; ``reason`` then says why, and a caller must not use the
    transform silently (the comparison reports it).
    """

    matrix: tuple[tuple[float, ...], ...]
    kind: str
    metric_name: str
    metric_value: float
    quality_name: str
    quality_value: float
    quality_threshold: float
    passed: bool
    reason: str = ""
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (4, 4):
            raise ComparisonFormatError(f"a registration needs a 4x4 matrix, got shape {m.shape}")
        if abs(float(np.linalg.det(m[:3, :3]))) < 1e-9:
            raise ComparisonFormatError("the registration matrix is singular")
        rows = tuple(tuple(float(v) for v in row) for row in m)
        object.__setattr__(self, "matrix", rows)

    @classmethod
    def from_array(cls, matrix: npt.ArrayLike, **fields: Any) -> RegistrationResult:
        """Build from a numpy 4x4 (the other fields as keywords)."""
        m = np.asarray(matrix, dtype=np.float64)
        rows = tuple(tuple(float(v) for v in row) for row in m)
        return cls(matrix=rows, **fields)

    @property
    def array(self) -> npt.NDArray[np.float64]:
        """``matrix`` as a numpy 4x4 (a fresh copy)."""
        return np.asarray(self.matrix, dtype=np.float64)

    def to_prior(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Current-study LPS points ``(..., 3)`` -> the same anatomy in the prior's LPS."""
        m = self.array
        pts = np.asarray(points, dtype=np.float64)
        return np.asarray(pts @ m[:3, :3].T + m[:3, 3], dtype=np.float64)

    def to_current(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Prior-study LPS points ``(..., 3)`` -> the same anatomy in the current study's LPS."""
        inv = np.linalg.inv(self.array)
        pts = np.asarray(points, dtype=np.float64)
        return np.asarray(pts @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)

    @property
    def rotation_deg(self) -> float:
        """Total rotation angle of the linear part (its polar rotation), degrees."""
        u, _, vt = np.linalg.svd(self.array[:3, :3])
        r = u @ vt
        cos = (float(np.trace(r)) - 1.0) / 2.0
        return math.degrees(math.acos(max(-1.0, min(1.0, cos))))

    @property
    def translation_mm(self) -> float:
        """Length of the translation part, mm."""
        return float(np.linalg.norm(self.array[:3, 3]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "matrix_current_to_prior_lps": [list(r) for r in self.matrix],
            "kind": self.kind,
            "metric": {"name": self.metric_name, "value": self.metric_value},
            "quality": {"name": self.quality_name, "value": self.quality_value, "threshold": self.quality_threshold},
            "passed": self.passed,
            "reason": self.reason,
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegistrationResult:
        """The inverse of ``to_dict``."""
        try:
            return cls.from_array(
                data["matrix_current_to_prior_lps"],
                kind=str(data["kind"]),
                metric_name=str(data["metric"]["name"]),
                metric_value=float(data["metric"]["value"]),
                quality_name=str(data["quality"]["name"]),
                quality_value=float(data["quality"]["value"]),
                quality_threshold=float(data["quality"]["threshold"]),
                passed=bool(data["passed"]),
                reason=str(data.get("reason", "")),
                elapsed_s=float(data.get("elapsed_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ComparisonFormatError(f"bad registration record: {exc!r}") from exc


@dataclass(frozen=True)
class FieldOfView:
    """The LPS extent a study's volume imaged: its grid ``shape`` (slices, rows, columns) and voxel -> LPS ``affine``.

    A voxel covers half a voxel either side of its centre, so the field spans
    continuous indices ``-0.5 .. n - 0.5`` along each axis. ``contains`` asks
    whether points lie inside it by at least ``margin_mm`` (a lesion's centre
    with half its long axis as the margin: the lesion would have been imaged
    whole). The grid is the field: air around the patient counts as imaged, and
    a reconstruction circle smaller than the grid is not modelled.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        m = np.asarray(self.affine, dtype=np.float64)
        if m.shape != (4, 4) or abs(float(np.linalg.det(m[:3, :3]))) < 1e-12:
            raise ComparisonFormatError(f"a field of view needs a non-singular 4x4 affine, got {m.shape}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ComparisonFormatError(f"a field of view needs three positive sizes, got {self.shape}")
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1]), int(self.shape[2])))
        object.__setattr__(self, "affine", tuple(tuple(float(v) for v in row) for row in m))

    @classmethod
    def of(cls, volume: Volume) -> FieldOfView:
        """The field of a loaded volume."""
        return cls(volume.shape, tuple(tuple(float(v) for v in row) for row in volume.affine))

    @property
    def spacing(self) -> npt.NDArray[np.float64]:
        """Voxel size in mm along each index axis."""
        return np.asarray(np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0), dtype=np.float64)

    def contains(self, points: npt.ArrayLike, margin_mm: npt.ArrayLike = 0.0) -> npt.NDArray[np.bool_]:
        """Whether each LPS point ``(n, 3)`` lies inside the field by at least ``margin_mm`` (scalar or ``(n,)``)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        inv = np.linalg.inv(np.asarray(self.affine, dtype=np.float64))
        idx = pts @ inv[:3, :3].T + inv[:3, 3]
        margin = np.broadcast_to(np.asarray(margin_mm, dtype=np.float64), (len(pts),))[:, None] / self.spacing
        size = np.asarray(self.shape, dtype=np.float64)
        inside = (idx >= -0.5 + margin) & (idx <= size - 0.5 - margin)
        return np.asarray(inside.all(axis=1), dtype=np.bool_)
