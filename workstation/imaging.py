"""Turning volumes and label maps into pictures: window/level, overlays, which slices are key images.

Qt-free (numpy), so the command line, exports and tests render what the window
shows; ``workstation.key_images`` draws the key images and the montage from these.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.contract import AnalysisResult
from inference.image_refs import lesion_slice, slice_text
from inference.labels import LabelTable
from inference.volume import Volume

logger = logging.getLogger(__name__)

LUNG_WINDOW = (-600.0, 1500.0)
SOFT_TISSUE_WINDOW = (40.0, 400.0)
AI_BANNER = "AI RESULT - DRAFT, NOT VERIFIED"


def window(slice2d: npt.NDArray[Any], center: float, width: float) -> npt.NDArray[np.uint8]:
    """Map intensities to 0..255 grey levels with a window centre/width."""
    lo = center - width / 2.0
    scaled = (slice2d.astype(np.float32) - lo) * (255.0 / max(width, 1e-6))
    out: npt.NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


def _lut(table: LabelTable) -> npt.NDArray[np.uint8]:
    lut = np.zeros((max((lab.value for lab in table), default=0) + 1, 3), dtype=np.uint8)
    for lab in table:
        lut[lab.value] = lab.color
    return lut


def overlay(grey: npt.NDArray[np.uint8], labels: npt.NDArray[Any], table: LabelTable,
            opacity: float = 0.35, outline: bool = True) -> npt.NDArray[np.uint8]:
    """RGB image: ``grey`` with the label colours blended in, and label borders drawn solid."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    lut = _lut(table)
    lab = np.where(labels < len(lut), labels, 0).astype(np.intp)
    mask = lab > 0
    colors = lut[lab].astype(np.float32)
    rgb[mask] = (1 - opacity) * rgb[mask] + opacity * colors[mask]
    if outline:
        edge = np.zeros_like(mask)
        edge[1:, :] |= lab[1:, :] != lab[:-1, :]
        edge[:-1, :] |= lab[1:, :] != lab[:-1, :]
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        edge[:, :-1] |= lab[:, 1:] != lab[:, :-1]
        edge &= mask
        rgb[edge] = colors[edge]
    return rgb.astype(np.uint8)


def key_slices(result: AnalysisResult, count: int = 6) -> list[int]:
    """Slices worth showing: through the largest lesions first, then spread over the labelled range.

    A lesion's slice is the one showing the image its findings name (``lesion_slice``):
    the slice through its centre, or on a resampled grid the slice nearest that acquired image.
    """
    chosen: list[int] = []
    volume = result.request.volume
    for lesion in sorted(result.findings.lesions, key=lambda x: -x.volume_ml):
        k = lesion_slice(volume, lesion)
        if k not in chosen:
            chosen.append(k)
        if len(chosen) >= count // 2:
            break
    occupied = np.nonzero(result.labelmap.reshape(result.labelmap.shape[0], -1).any(axis=1))[0]
    if occupied.size:
        for k in np.linspace(occupied[0], occupied[-1], count + 2)[1:-1]:
            if len(chosen) >= count:
                break
            k_int = round(float(k))
            if all(abs(k_int - c) > 1 for c in chosen):
                chosen.append(k_int)
    return sorted(chosen)


def slice_caption(volume: Volume, k: int) -> str:
    """What a key image of grid slice ``k`` is called: the acquired image a radiologist goes to.

    ``series 2, image 78`` (``(nearest)`` added on a resampled slice between acquired
    planes); a volume not made from DICOM images says ``slice 43/120`` (1-based, in grid order).
    """
    return slice_text(volume, k, "long") or f"slice {k + 1}/{volume.shape[0]}"
