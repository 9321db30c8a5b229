"""Canonical orientation and the coarse working grid of the built-in CT model.

Every rule of the model speaks anatomy ("the top slices", "posterior to the
spine", "the patient's right"), so the volume is first viewed in one canonical
orientation: axis 0 runs inferior to superior (+z), axis 1 anterior to
posterior (+y), axis 2 right to left (+x), exactly LPS. Only axis permutations
and flips are used (numpy views, no resampling), so every canonical voxel is an
original voxel and the label map maps back exactly.

Coarse masks (body, lungs, bone, compartments) are computed on a block-averaged
grid of at most ``COARSE_VOXEL_BUDGET`` voxels and refined at full resolution by
HU thresholds (``assemble``); small volumes are processed at full resolution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

COARSE_VOXEL_BUDGET = 12_000_000
"""Largest coarse grid (voxels): about 1 s per full-grid pass of connected components on two cores."""

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Canonical:
    """How the original ``[slice, row, column]`` axes map onto canonical ``[z, y, x]``.

    ``perm[k]`` is the original axis shown as canonical axis ``k``; ``flip[k]``
    says whether it runs backwards. ``spacing`` is canonical ``(z, y, x)`` mm.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    @classmethod
    def from_affine(cls, affine: npt.NDArray[np.float64], shape: tuple[int, int, int]) -> Canonical:
        """Assign each LPS axis (z, y, x) the index axis most aligned with it."""
        m = np.asarray(affine, dtype=np.float64)[:3, :3]
        norms = np.linalg.norm(m, axis=0)
        unit = m / norms
        perm: list[int] = []
        free = [0, 1, 2]
        for lps_row in (2, 1, 0):  # z first: slices are usually the worst-resolved axis
            best = max(free, key=lambda ax: abs(unit[lps_row, ax]))
            perm.append(best)
            free.remove(best)
        flip = tuple(bool(unit[row, ax] < 0) for row, ax in zip((2, 1, 0), perm, strict=True))
        spacing = tuple(float(norms[ax]) for ax in perm)
        cshape = tuple(int(shape[ax]) for ax in perm)
        return cls((perm[0], perm[1], perm[2]), (flip[0], flip[1], flip[2]),
                   (spacing[0], spacing[1], spacing[2]), (cshape[0], cshape[1], cshape[2]))

    def view(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The original array seen in canonical orientation (a view, no copy)."""
        out = np.transpose(array, self.perm)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]

    def restore(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A canonical array back in the original axis order (contiguous copy)."""
        flipped = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        inverse = np.argsort(self.perm)
        return np.ascontiguousarray(np.transpose(flipped, tuple(int(i) for i in inverse)))

    def index_matrix(self) -> npt.NDArray[np.float64]:
        """4x4 matrix mapping homogeneous canonical indices to original indices."""
        mat = np.zeros((4, 4))
        mat[3, 3] = 1.0
        for k, (ax, f) in enumerate(zip(self.perm, self.flip, strict=True)):
            if f:
                mat[ax, k] = -1.0
                mat[ax, 3] = self.shape[k] - 1
            else:
                mat[ax, k] = 1.0
        return mat


def coarse_factors(spacing: tuple[float, float, float], shape: tuple[int, int, int],
                   budget: int = COARSE_VOXEL_BUDGET) -> tuple[int, int, int]:
    """Integer block sizes that bring the grid under ``budget`` voxels, coarsening the finest axis first."""
    f = [1, 1, 1]
    while np.prod([-(-n // k) for n, k in zip(shape, f, strict=True)]) > budget:
        axis = min(range(3), key=lambda a: (spacing[a] * f[a], -a))
        f[axis] += 1
    return (f[0], f[1], f[2])


def _padded(array: npt.NDArray[Any], factors: tuple[int, int, int]) -> npt.NDArray[Any]:
    pads = [(0, (-n) % k) for n, k in zip(array.shape, factors, strict=True)]
    if any(p[1] for p in pads):
        return np.pad(array, pads, mode="edge")
    return array


def block_mean_max(array: npt.NDArray[Any], factors: tuple[int, int, int]) -> tuple[F32, F32]:
    """Block mean (float32) and block maximum of ``array`` over ``factors`` blocks.

    The mean drives tissue thresholds (it averages noise like a thicker
    reconstruction would); the maximum keeps thin cortical bone visible.
    Built from strided views so no float copy of the full volume is made.
    """
    if factors == (1, 1, 1):
        full = np.asarray(array, dtype=np.float32)
        return full, full
    src = _padded(array, factors)
    fz, fy, fx = factors
    mean: F32 | None = None
    peak: npt.NDArray[Any] | None = None
    for oz in range(fz):
        for oy in range(fy):
            for ox in range(fx):
                part = src[oz::fz, oy::fy, ox::fx]
                if mean is None or peak is None:
                    mean = part.astype(np.float32)
                    peak = part.copy()
                else:
                    mean += part
                    np.maximum(peak, part, out=peak)
    assert mean is not None and peak is not None
    mean *= np.float32(1.0 / (fz * fy * fx))
    return mean, peak.astype(np.float32)


def upsample(coarse: npt.NDArray[Any], factors: tuple[int, int, int],
             z0: int, z1: int, shape_yx: tuple[int, int]) -> npt.NDArray[Any]:
    """Nearest-neighbour expansion of coarse rows for full-resolution slices ``z0:z1``."""
    fz, fy, fx = factors
    cz0, cz1 = z0 // fz, -(-z1 // fz)
    block = coarse[cz0:cz1]
    if fz > 1:
        block = np.repeat(block, fz, axis=0)
    off = z0 - cz0 * fz
    block = block[off:off + (z1 - z0)]
    if fy > 1:
        block = np.repeat(block, fy, axis=1)
    if fx > 1:
        block = np.repeat(block, fx, axis=2)
    return block[:, :shape_yx[0], :shape_yx[1]]


def vox(mm: float, spacing: float) -> int:
    """A radius in voxels for ``mm`` millimetres (at least 1)."""
    return max(1, round(mm / spacing))
