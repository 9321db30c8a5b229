"""Full-resolution label map from coarse regions and the voxels' own HU.

Each coarse voxel carries a *region* code: an overlay (lung, airway, nodule,
bone...) times 8 plus a compartment (subcutaneous, muscle zone, cavity, limb).
Each full-resolution voxel falls in one HU *bin*. The label is a lookup
``LUT[region, bin]``: the coarse masks say where a structure may be, the
voxel's HU says whether it is. Overlays have an *edge* variant one coarse
voxel wide around them, so boundaries follow the full-resolution HU rather
than the coarse blocks.

The pass runs slab by slab (bounded memory, cache friendly) and also returns a
histogram ``hist[z, region, bin]`` (canonical full-resolution slice z) from
which every count-based measurement is read without another pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.builtin_ct import soft_tissue as st
from inference.builtin_ct import table as t
from inference.builtin_ct.grid import upsample
from inference.builtin_ct.morph import dilate

logger = logging.getLogger(__name__)

Bool3 = npt.NDArray[np.bool_]

# overlays (region = overlay * 8 + compartment)
NONE, LUNG_R, LUNG_L, LUNG_R_EDGE, LUNG_L_EDGE, AIRWAY, AIRWAY_EDGE = 0, 1, 2, 3, 4, 5, 6
NODULE_R, NODULE_L, BONE_ZONE, MARROW, VERTEBRAL_MARROW = 7, 8, 9, 10, 11
N_OVERLAYS = 12
N_COMPARTMENTS = 8
N_REGIONS = N_OVERLAYS * N_COMPARTMENTS

# HU bins: lower edges of bins 1..7
BIN_EDGES = (t.LAA_HU, t.AIR_MAX_HU, t.FAT_HU[0], t.MUSCLE_HU[0], t.PARTIAL_BONE_HU, t.MUSCLE_HU[1] + 1,
             t.CORTEX_HU)
B_LAA, B_AIR, B_LOW, B_FAT, B_LEAN, B_LEAN_DENSE, B_DENSE, B_CORTEX = range(8)
N_BINS = 8
HU_LO, HU_HI = -1024, 3071
SLAB_SLICES = 16


def _bin_lut() -> npt.NDArray[np.uint8]:
    hu = np.arange(HU_LO, HU_HI + 1)
    return np.searchsorted(np.asarray(BIN_EDGES), hu, side="right").astype(np.uint8)


def _compartment_label(comp: int, b: int) -> int:
    if comp == st.OUT:
        return 0
    if comp == st.LIMB:  # arms: neither trunk muscle nor trunk fat
        return t.BODY
    if b == B_FAT:  # fat among the muscles (intermuscular) is neither visceral nor subcutaneous
        return {st.CAVITY: t.VISCERAL_FAT, st.SUBQ: t.SUBCUTANEOUS_FAT}.get(comp, t.BODY)
    if b in (B_LEAN, B_LEAN_DENSE) and comp == st.MUSCLE_ZONE:
        return t.MUSCLE
    return t.BODY


def _label_lut() -> npt.NDArray[np.uint8]:
    """``LUT[region * N_BINS + bin]`` -> label value."""
    lut = np.zeros((N_OVERLAYS, N_COMPARTMENTS, N_BINS), dtype=np.uint8)
    air = (B_LAA, B_AIR)
    for ov in range(N_OVERLAYS):
        for comp in range(N_COMPARTMENTS):
            for b in range(N_BINS):
                base = _compartment_label(comp, b) if comp < 5 else 0
                lab = base
                if ov in (LUNG_R, LUNG_L):
                    lab = (t.LUNG_RIGHT if ov == LUNG_R else t.LUNG_LEFT) if b in air else t.BODY
                elif ov in (LUNG_R_EDGE, LUNG_L_EDGE):
                    lab = (t.LUNG_RIGHT if ov == LUNG_R_EDGE else t.LUNG_LEFT) if b in air else base
                elif ov == AIRWAY:
                    lab = t.AIRWAY if b in air else t.BODY
                elif ov == AIRWAY_EDGE:
                    lab = t.AIRWAY if b in air else base
                elif ov in (NODULE_R, NODULE_L):
                    lab = (t.LUNG_RIGHT if ov == NODULE_R else t.LUNG_LEFT) if b in air else t.LUNG_NODULE
                elif ov == BONE_ZONE:
                    lab = t.BONE_CORTEX if b == B_CORTEX else t.BONE_MARROW if b in (B_LEAN_DENSE, B_DENSE) else base
                elif ov in (MARROW, VERTEBRAL_MARROW):
                    lab = t.BONE_CORTEX if b == B_CORTEX else t.BONE_MARROW
                if comp == st.OUT and ov == NONE:
                    lab = 0
                lut[ov, comp, b] = lab
    return lut.reshape(-1)


BIN_LUT = _bin_lut()
LABEL_LUT = _label_lut()


@dataclass
class Overlays:
    """Coarse masks to paint, in increasing precedence."""

    lung_right: Bool3
    lung_left: Bool3
    airway: Bool3
    nodule_right: Bool3
    nodule_left: Bool3
    bone_zone: Bool3
    marrow: Bool3
    vertebral_marrow: Bool3


def compose_regions(compartment: npt.NDArray[np.uint8], ov: Overlays, edges: bool) -> npt.NDArray[np.uint8]:
    """The coarse region code map (overlay * 8 + compartment).

    ``edges`` adds the one-voxel edge overlays (only useful when the coarse grid
    is coarser than the full one: at full resolution the masks are already exact).
    """
    overlay = np.zeros(compartment.shape, dtype=np.uint8)
    one = (1, 1, 1)
    if edges:
        overlay[dilate(ov.lung_right, one)] = LUNG_R_EDGE
        overlay[dilate(ov.lung_left, one)] = LUNG_L_EDGE
        overlay[dilate(ov.airway, one)] = AIRWAY_EDGE
    overlay[ov.bone_zone] = BONE_ZONE
    overlay[ov.marrow] = MARROW
    overlay[ov.vertebral_marrow] = VERTEBRAL_MARROW
    overlay[ov.lung_right] = LUNG_R
    overlay[ov.lung_left] = LUNG_L
    overlay[ov.airway] = AIRWAY
    nod_r = dilate(ov.nodule_right, one) & (ov.lung_right | ov.nodule_right) if edges else ov.nodule_right
    nod_l = dilate(ov.nodule_left, one) & (ov.lung_left | ov.nodule_left) if edges else ov.nodule_left
    overlay[nod_r] = NODULE_R
    overlay[nod_l] = NODULE_L
    return np.asarray(overlay * N_COMPARTMENTS + compartment, dtype=np.uint8)


def hu_bins(slab: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """HU bin of every voxel of ``slab`` (integer or float HU)."""
    if slab.dtype.kind == "f":
        idx = np.clip(np.floor(slab), HU_LO, HU_HI).astype(np.int16)
    elif slab.dtype == np.int16:
        idx = np.clip(slab, HU_LO, HU_HI)
    else:  # other integer types: widen first so the bounds are representable
        idx = np.clip(slab.astype(np.int32), HU_LO, HU_HI).astype(np.int16)
    idx -= HU_LO
    return np.asarray(BIN_LUT[idx], dtype=np.uint8)


@dataclass
class Assembled:
    """The canonical full-resolution label map and its histogram ``hist[z, region, bin]``."""

    labels: npt.NDArray[np.uint8]
    hist: npt.NDArray[np.int64]
    vertebral_marrow_hu_sum: float


def assemble(full: npt.NDArray[Any], region: npt.NDArray[np.uint8], factors: tuple[int, int, int],
             on_slab: Callable[[float], None] | None = None) -> Assembled:
    """Label every full-resolution voxel; ``on_slab(fraction done)`` is called after each slab."""
    nz, ny, nx = full.shape
    labels = np.empty((nz, ny, nx), dtype=np.uint8)
    hist = np.zeros((nz, N_REGIONS * N_BINS), dtype=np.int64)
    marrow_sum = 0.0
    step = max(SLAB_SLICES // factors[0], 1) * factors[0]
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        hu = full[z0:z1]
        reg = upsample(region, factors, z0, z1, (ny, nx))
        idx = reg.astype(np.uint16)
        idx *= N_BINS
        idx += hu_bins(hu)
        labels[z0:z1] = LABEL_LUT[idx]
        per_slice = idx.reshape(z1 - z0, -1).astype(np.int32)
        per_slice += (np.arange(z1 - z0, dtype=np.int32) * (N_REGIONS * N_BINS))[:, None]
        hist[z0:z1] = np.bincount(per_slice.ravel(), minlength=(z1 - z0) * N_REGIONS * N_BINS).reshape(z1 - z0, -1)
        vm = (reg // N_COMPARTMENTS == VERTEBRAL_MARROW) & (labels[z0:z1] == t.BONE_MARROW)
        if vm.any():
            marrow_sum += float(np.asarray(hu)[vm].sum(dtype=np.float64))
        if on_slab is not None:
            on_slab(z1 / nz)
    return Assembled(labels, hist.reshape(nz, N_REGIONS, N_BINS), marrow_sum)
