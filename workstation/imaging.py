"""Turning volumes and label maps into pictures: window/level, overlays, key-slice montages.

Qt-free (numpy + Pillow), so the command line and tests can render the same
images the window shows. Axial slices are drawn in the usual radiological
orientation of the acquisition plane (patient's right on the image left for
standard axial series), with square pixels whatever the in-plane spacing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.contract import AnalysisResult
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
    """Slices worth showing: through the largest lesions first, then spread over the labelled range."""
    chosen: list[int] = []
    for lesion in sorted(result.findings.lesions, key=lambda x: -x.volume_ml):
        k = round(lesion.centroid_index[0])
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


def render_slice(volume: Volume, k: int, labels: npt.NDArray[Any] | None, table: LabelTable | None,
                 win: tuple[float, float], size: int = 384) -> Any:
    """One slice as a Pillow image with square pixels, ``size`` pixels wide."""
    from PIL import Image

    grey = window(volume.array[k], *win)
    rgb = overlay(grey, labels[k], table) if labels is not None and table is not None else np.repeat(
        grey[..., None], 3, axis=2)
    _, dr, dc = volume.spacing
    rows, cols = grey.shape
    width_mm, height_mm = cols * dc, rows * dr
    scale = size / max(width_mm, height_mm)
    img = Image.fromarray(rgb, "RGB")
    return img.resize((max(1, round(width_mm * scale)), max(1, round(height_mm * scale))), Image.Resampling.BILINEAR)


def montage_window(result: AnalysisResult, min_share: float = 0.02) -> tuple[float, float]:
    """Lung window when lungs take a visible share of the label map, else soft tissue (e.g. an abdomen)."""
    lung_values = [lab.value for lab in result.label_table if lab.name.startswith("lung")]
    if not lung_values:
        return SOFT_TISSUE_WINDOW
    labelled = np.count_nonzero(result.labelmap)
    lung = np.count_nonzero(np.isin(result.labelmap, lung_values))
    return LUNG_WINDOW if labelled and lung >= min_share * labelled else SOFT_TISSUE_WINDOW


def write_montage(result: AnalysisResult, path: str | Path, slices: Sequence[int] | None = None,
                  columns: int = 3, tile: int = 384) -> Path:
    """A PNG of key slices with the overlay, each tile labelled with its position in mm."""
    from PIL import Image, ImageDraw

    volume = result.request.volume
    picks = list(slices) if slices is not None else key_slices(result)
    if not picks:
        picks = [volume.shape[0] // 2]
    win = montage_window(result)
    rows = (len(picks) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * tile + 24), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, k in enumerate(picks):
        img = render_slice(volume, k, result.labelmap, result.label_table, win, tile)
        x0 = (i % columns) * tile + (tile - img.width) // 2
        y0 = 24 + (i // columns) * tile + (tile - img.height) // 2
        sheet.paste(img, (x0, y0))
        z = volume.index_to_lps([k, 0, 0])[2]
        draw.text(((i % columns) * tile + 6, 24 + (i // columns) * tile + 4),
                  f"slice {k + 1}/{volume.shape[0]}  z {z:.1f} mm", fill=(255, 255, 0))
    draw.text((6, 6), f"{AI_BANNER} - {result.provenance.model_id} {result.provenance.model_version} - "
              f"W {win[1]:.0f} L {win[0]:.0f}", fill=(255, 80, 80))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
