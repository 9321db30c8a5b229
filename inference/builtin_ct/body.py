"""The patient's body: everything denser than -500 HU that belongs to the patient, with its cavities.

The table and clothing are removed by an in-plane opening (they touch the
patient only through thin contacts), then the largest 3-D component is the
patient, with any other component at least 3 % its size (arms that the
scan shows apart from the trunk); the opening's bite out of the skin is given back, and every axial
slice is hole-filled so lungs and bowel gas count as inside the body. The trunk
is the largest body region of each slice after cutting contacts narrower than
~12 mm (arms held at the sides are separate regions, or touch the trunk
along a short contact), less what an arm occupies in a neighbouring slice
where it lies apart (an arm touching the trunk in some slices only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from inference.builtin_ct.grid import vox
from inference.builtin_ct.morph import FACE, dilate, fill_holes_2d, label, largest_per_slice, opening

logger = logging.getLogger(__name__)

BODY_MIN_HU = -500.0
DETACH_MM = 3.0  # table and clothing contacts thinner than ~2x this are cut
MIN_PART_FRACTION = 0.03
MIN_PART_ML = 30.0
ARM_CONTACT_MM = 6.0
ARM_MERGED_SHARE = 0.5


@dataclass
class BodyMasks:
    """Coarse body masks: ``body`` (hole-filled) and ``trunk`` (largest region per slice)."""

    body: npt.NDArray[np.bool_]
    trunk: npt.NDArray[np.bool_]


def _patient(mask: npt.NDArray[np.bool_], voxel_ml: float) -> npt.NDArray[np.bool_]:
    """The largest component and any other large one (arms apart from the trunk in a short scan)."""
    lab, n = label(mask, FACE)
    if n == 0:
        return np.zeros_like(mask)
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    keep = (counts >= MIN_PART_FRACTION * counts.max()) & (counts * voxel_ml >= MIN_PART_ML)
    return np.asarray(keep[lab], dtype=bool)


def segment_body(hu: npt.NDArray[np.float32], spacing: tuple[float, float, float]) -> BodyMasks:
    """Body and trunk masks on the coarse canonical grid."""
    dense = hu > BODY_MIN_HU
    r = (0, vox(DETACH_MM, spacing[1]), vox(DETACH_MM, spacing[2]))
    core = _patient(opening(dense, r), voxel_ml=float(np.prod(spacing)) / 1000.0)
    if not core.any():
        logger.info("no body found (nothing denser than %.0f HU)", BODY_MIN_HU)
        empty = np.zeros_like(dense)
        return BodyMasks(empty, empty)
    body = fill_holes_2d(core)
    # give back the skin the opening removed, but only next to the patient
    body = fill_holes_2d(body | (dense & dilate(body, r)))
    # arms resting against the trunk touch it along a short contact: cut it before picking the trunk
    cut = (0, vox(ARM_CONTACT_MM, spacing[1]), vox(ARM_CONTACT_MM, spacing[2]))
    trunk = dilate(largest_per_slice(opening(body, cut)), cut) & body
    trunk = largest_per_slice(trunk)
    trunk = _arms_across_slices(body, trunk)
    return BodyMasks(body, trunk)


def _arms_across_slices(body: npt.NDArray[np.bool_], trunk: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Take from the trunk what an arm occupies in the next slice where that arm lies apart from the trunk.

    An arm that touches the trunk in some slices is apart from it in others; its
    cross-section moves little from slice to slice, so the trunk pixels that
    were arm in a neighbouring slice are arm too, when at least
    ``ARM_MERGED_SHARE`` of that arm's cross-section falls in the trunk (not a
    sliver of a widening flank). Carried slice by slice up and down, the
    footprint can only shrink (no dilation), so it never spreads into the trunk.
    """
    limb = body & ~trunk
    if not limb.any() or trunk.shape[0] < 2:
        return trunk
    arm = limb.copy()
    for order in (range(1, trunk.shape[0]), range(trunk.shape[0] - 2, -1, -1)):
        for z in order:
            prev = z - 1 if order.step == 1 else z + 1
            if not (arm[prev] & trunk[z]).any():
                continue
            lab, n = ndi.label(arm[prev])
            inside = np.bincount(lab[trunk[z]], minlength=n + 1)
            whole = np.bincount(lab.ravel(), minlength=n + 1)
            merged = inside >= ARM_MERGED_SHARE * whole  # the arm's whole cross-section now lies in the "trunk"
            merged[0] = False
            arm[z] |= merged[lab] & trunk[z]
    out = trunk & ~arm
    return largest_per_slice(out) if (out != trunk).any() else trunk
