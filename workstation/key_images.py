"""Key images of an analysis, drawn one way for the montage, the PDF and any other export.

A radiologist reads a key image like a film: in the window the report names,
with the patient's sides marked on the edges (R/L, A/P), structures outlined so
the anatomy stays readable, lesions filled and circled with their number from
the findings table, and a legend of the colours in the picture. The montage
(``workstation analyze``) and the PDF report used to draw their own pictures in
different windows (W400/L40 against W300/L40) without side markers; both now
come from here.

Qt-free (numpy + Pillow).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.contract import AnalysisResult
from inference.labels import readable_name
from inference.volume import Volume, direction_letter
from workstation.imaging import AI_BANNER, key_slices, overlay, preset_window, slice_caption, window

logger = logging.getLogger(__name__)

MARKER_COLOUR = (255, 255, 255)
LESION_RING = (255, 255, 0)


def key_window(result: AnalysisResult, picks: Sequence[int]) -> tuple[float, float]:
    """(level, width) of the key images: the lung window when lung is in most of them, else the
    series' own first window (CT), else a soft-tissue (abdomen) window. One window for every key image;
    the named windows are the viewer's presets (``resources/presets/window_level.json``)."""
    lungs = [lab.value for lab in result.label_table if lab.name.startswith("lung") and not lab.lesion]
    with_lung = sum(bool(np.isin(result.labelmap[k], lungs).any()) for k in picks) if lungs else 0
    if picks and with_lung * 2 >= len(picks) and with_lung > 0:
        return preset_window("lung")
    meta = result.request.volume.metadata
    center, width = meta.get("window_center"), meta.get("window_width")
    if isinstance(center, int | float) and isinstance(width, int | float) and width > 1:
        return float(center), float(width)
    return preset_window("abdomen")


def edge_letters(volume: Volume) -> dict[str, str]:
    """The patient direction at each edge of a grid slice drawn rows down, columns right.

    ``{"left": "R", "right": "L", "top": "A", "bottom": "P"}`` for a standard axial series.
    """
    rows, cols = volume.affine[:3, 1], volume.affine[:3, 2]
    return {"left": direction_letter(-cols), "right": direction_letter(cols),
            "top": direction_letter(-rows), "bottom": direction_letter(rows)}


def legend(result: AnalysisResult, picks: Sequence[int]) -> list[tuple[str, tuple[int, int, int]]]:
    """(readable name, colour) of every label shown in the key images, in the table's order."""
    shown = set(np.unique(result.labelmap[list(picks)]).tolist()) if picks else set()
    return [(readable_name(lab.name), lab.color) for lab in result.label_table if lab.value in shown]


def key_image(result: AnalysisResult, k: int, win: tuple[float, float], size: int) -> Any:
    """Grid slice ``k`` as a Pillow image ``size`` pixels wide with square pixels: structures
    outlined, lesions filled and circled with their number, the patient's sides on the edges."""
    from PIL import Image, ImageDraw, ImageFont

    volume = result.request.volume
    labels = result.labelmap[k]
    lesion_values = [lab.value for lab in result.label_table if lab.lesion]
    rgb = overlay(window(volume.array[k], *win), labels, result.label_table, opacity=0.0, outline=True)
    for lab in result.label_table:
        if lab.lesion:
            mask = labels == lab.value
            rgb[mask] = (0.45 * rgb[mask] + 0.55 * np.asarray(lab.color)).astype(np.uint8)
    _, dr, dc = volume.spacing
    rows, cols = labels.shape
    scale = size / max(cols * dc, rows * dr)
    img = Image.fromarray(rgb, "RGB").resize((max(1, round(cols * dc * scale)), max(1, round(rows * dr * scale))),
                                             Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(12, size // 20))
    axial = int(np.argmax(np.abs(volume.affine[2, :3]))) == 0
    for les in result.findings.lesions:
        reach = max(1.0, les.long_axis_3d_mm / 2 / volume.spacing[0])  # slices the lesion spans, about
        if not axial or les.label not in lesion_values or abs(les.centroid_index[0] - k) > reach:
            continue
        y, x = les.centroid_index[1] * dr * scale, les.centroid_index[2] * dc * scale
        radius = (les.long_axis_mm / 2 + 5) * scale
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=LESION_RING, width=2)
        draw.text((x + radius + 2, y - radius - 4), f"#{les.number}", fill=LESION_RING, font=font,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    _draw_edge_letters(draw, img.width, img.height, edge_letters(volume), font)
    return img


def _draw_edge_letters(draw: Any, width: int, height: int, letters: dict[str, str], font: Any) -> None:
    """R/L and A/P (or S/I) in the middle of each edge, outlined so they read on any grey."""
    pad = 4
    spots = {"left": (pad, height / 2, "lm"), "right": (width - pad, height / 2, "rm"),
             "top": (width / 2, pad, "mt"), "bottom": (width / 2, height - pad, "mb")}
    for edge, (x, y, anchor) in spots.items():
        draw.text((x, y), letters[edge], fill=MARKER_COLOUR, font=font, anchor=anchor,
                  stroke_width=2, stroke_fill=(0, 0, 0))


def write_montage(result: AnalysisResult, path: str | Path, slices: Sequence[int] | None = None,
                  columns: int = 3, tile: int = 384) -> Path:
    """A PNG of key images (``key_image``) in one window, each captioned with its image and position,
    a banner saying it is an unverified AI result, and a legend of the colours shown.

    Tile captions (``slice_caption``: "series 2, image 78  z -43.8 mm") are also stored,
    one per line, in the PNG's ``Captions`` text chunk.
    """
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo

    volume = result.request.volume
    picks = list(slices) if slices is not None else key_slices(result)
    if not picks:
        picks = [volume.shape[0] // 2]
    win = key_window(result, picks)
    entries = legend(result, picks)
    font = ImageFont.load_default(size=14)
    rows = (len(picks) + columns - 1) // columns
    top, caption_h, legend_h = 24, 18, 26
    sheet = Image.new("RGB", (columns * tile, top + rows * (tile + caption_h) + legend_h), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    captions: list[str] = []
    for i, k in enumerate(picks):
        img = key_image(result, k, win, tile)
        cell_x, cell_y = (i % columns) * tile, top + (i // columns) * (tile + caption_h)
        sheet.paste(img, (cell_x + (tile - img.width) // 2, cell_y + caption_h + (tile - img.height) // 2))
        z = volume.index_to_lps([k, 0, 0])[2]
        captions.append(f"{slice_caption(volume, k)}  z {z:.1f} mm")
        draw.text((cell_x + 6, cell_y + 2), captions[-1], fill=(255, 255, 0), font=font)
    draw.text((6, 5), f"{AI_BANNER} - {result.provenance.model_id} {result.provenance.model_version} - "
              f"W {win[1]:.0f} L {win[0]:.0f}", fill=(255, 80, 80), font=font)
    x, y = 6, sheet.height - legend_h + 6
    for name, colour in entries:
        draw.rectangle((x, y + 2, x + 11, y + 13), fill=tuple(colour))
        draw.text((x + 16, y), name, fill=(230, 230, 230), font=font)
        x += 16 + int(draw.textlength(name, font=font)) + 18
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_itxt("Captions", "\n".join(captions))
    info.add_itxt("Legend", "\n".join(name for name, _ in entries))
    sheet.save(out, pnginfo=info)
    return out
