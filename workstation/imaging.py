"""Turning volumes and label maps into pictures: window/level, overlays, which slices are key images.

Qt-free (numpy), so the command line, exports and tests render what the window
shows; ``workstation.key_images`` draws the key images and the montage from these.

Window/level presets come from one place, ``resources/presets/window_level.json``
(``load_presets``), read by the viewer and by the key images alike. CT values are
absolute (HU), so fixed presets work (lung, mediastinum, abdomen, bone, brain).
The first window of a CT follows the series, as a radiologist would set it: the
file's ``default_rules`` match the body region and kernel
(``inference.acquisition``) in order (a chest CT with a lung kernel opens in the
lung window, other chest CTs in the mediastinal one, a head CT in the brain
window), the modality's ``default`` otherwise. MR and other modalities have
arbitrary units: their window comes from percentiles of a small subsample of
the loaded slices (``auto_window``), cheap enough to run right after the first
slice of a streamed series arrives.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.acquisition import body_region, is_sharp_kernel
from inference.contract import AnalysisResult
from inference.image_refs import lesion_slice, slice_text
from inference.labels import LabelTable
from inference.volume import Volume
from workstation.settings import resources_dir

logger = logging.getLogger(__name__)

AI_BANNER = "AI RESULT - DRAFT, NOT VERIFIED"


def window(slice2d: npt.NDArray[Any], center: float, width: float, invert: bool = False) -> npt.NDArray[np.uint8]:
    """Map intensities to 0..255 grey levels: ``center - width/2`` -> 0, ``center + width/2`` -> 255, rounded.

    The one window/level rule (DICOM PS3.3 C.11.2.1.2, linear): the viewer, key images, the montage
    and the PDF all use it, so a value looks the same everywhere. ``invert`` for MONOCHROME1.
    """
    width = max(float(width), 1e-6)
    lo = float(center) - width / 2.0
    out = (np.asarray(slice2d, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / width)
    np.clip(out, 0.0, 255.0, out=out)
    grey: npt.NDArray[np.uint8] = (out + np.float32(0.5)).astype(np.uint8)
    return 255 - grey if invert else grey


def label_rgb_table(table: LabelTable, max_value: int | None = None,
                    hidden: set[int] | frozenset[int] = frozenset()) -> npt.NDArray[np.uint8]:
    """The label colour table: RGB per label value ``0..max_value`` (black for background, hidden or unknown).

    The one place label values become colours: the viewer's overlay (``viewing.label_colours``), key
    images, the montage and the PDF index it.
    """
    top = max((lab.value for lab in table), default=0) if max_value is None else max_value
    lut = np.zeros((top + 1, 3), dtype=np.uint8)
    for lab in table:
        if 0 < lab.value <= top and lab.value not in hidden:
            lut[lab.value] = [int(c) & 0xFF for c in lab.color]
    return lut


def _lut(table: LabelTable) -> npt.NDArray[np.uint8]:
    return label_rgb_table(table)


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


# ----------------------------------------------------------------------------- window/level presets

PRESETS_FILE = ("presets", "window_level.json")
AUTO_SAMPLE_SLICES = 12
AUTO_SAMPLE_SIDE = 128


@dataclass(frozen=True)
class Preset:
    """One named window: ``key`` is the keyboard digit that picks it."""

    key: str
    id: str
    name: str
    window: float
    level: float


@dataclass(frozen=True)
class DefaultRule:
    """The preset a series opens in when its region (and, if given, kernel sharpness) match.

    ``region`` '' matches a series whose region the header does not tell;
    ``sharp_kernel`` None matches any kernel.
    """

    preset: str
    region: str | None = None
    sharp_kernel: bool | None = None

    def matches(self, region: str, sharp: bool) -> bool:
        """Whether a series of this region and kernel sharpness opens in ``preset``."""
        return ((self.region is None or self.region == region)
                and (self.sharp_kernel is None or self.sharp_kernel == sharp))


@dataclass(frozen=True)
class PresetBook:
    """Presets per modality (upper case), each modality's default preset id and rules, and the auto percentiles."""

    presets: dict[str, tuple[Preset, ...]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    auto_percentiles: tuple[float, float] = (1.0, 99.0)
    rules: dict[str, tuple[DefaultRule, ...]] = field(default_factory=dict)

    def for_modality(self, modality: str) -> tuple[Preset, ...]:
        """The presets of a modality (empty: use the automatic window)."""
        return self.presets.get(modality.upper(), ())

    def default_for(self, modality: str, metadata: dict[str, Any] | None = None) -> Preset | None:
        """The preset a freshly opened series shows, if any: the first rule its header matches, else the
        modality's default. ``metadata`` is the volume's (body part, descriptions, kernel)."""
        wanted = self.defaults.get(modality.upper())
        if metadata is not None:
            region = body_region(metadata)
            sharp = is_sharp_kernel(str(metadata.get("kernel") or ""))
            rule = next((r for r in self.rules.get(modality.upper(), ()) if r.matches(region, sharp)), None)
            if rule is not None:
                wanted = rule.preset
        presets = self.for_modality(modality)
        return next((p for p in presets if p.id == wanted), presets[0] if presets else None)

    def by_key(self, modality: str, key: str) -> Preset | None:
        """The preset bound to a digit key for this modality."""
        return next((p for p in self.for_modality(modality) if p.key == key), None)

    def by_id(self, modality: str, preset_id: str) -> Preset | None:
        """The preset of this modality with this id (``lung``, ``abdomen``...)."""
        return next((p for p in self.for_modality(modality) if p.id == preset_id), None)


_FALLBACK = PresetBook(
    presets={"CT": (Preset("1", "lung", "Lung", 1500, -600), Preset("2", "mediastinum", "Mediastinum", 350, 50),
                    Preset("3", "abdomen", "Abdomen", 400, 40), Preset("4", "bone", "Bone", 2000, 500),
                    Preset("5", "brain", "Brain", 80, 40))},
    defaults={"CT": "abdomen"},
    rules={"CT": (DefaultRule("lung", "chest", True), DefaultRule("mediastinum", "chest"),
                  DefaultRule("bone", "head", True), DefaultRule("brain", "head"), DefaultRule("lung", "", True))},
)


def _parse(data: dict[str, Any]) -> PresetBook:
    presets: dict[str, tuple[Preset, ...]] = {}
    defaults: dict[str, str] = {}
    rules: dict[str, tuple[DefaultRule, ...]] = {}
    for modality, entry in data.get("modalities", {}).items():
        items = tuple(Preset(str(p["key"]), str(p["id"]), str(p["name"]), float(p["window"]), float(p["level"]))
                      for p in entry.get("presets", []))
        if any(p.window <= 0 for p in items):
            raise ValueError(f"{modality}: a window width must be positive")
        presets[modality.upper()] = items
        if "default" in entry:
            defaults[modality.upper()] = str(entry["default"])
        ids = {p.id for p in items}
        parsed = tuple(DefaultRule(str(r["preset"]), r.get("region"), r.get("sharp_kernel"))
                       for r in entry.get("default_rules", []))
        unknown = [r.preset for r in parsed if r.preset not in ids]
        if unknown:
            raise ValueError(f"{modality}: default_rules name unknown presets {unknown}")
        rules[modality.upper()] = parsed
    lo, hi = (float(v) for v in data.get("auto_percentiles", (1.0, 99.0)))
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"auto_percentiles must rise within 0..100, got {lo}, {hi}")
    return PresetBook(presets, defaults, (lo, hi), rules)


def load_presets(path: Path | None = None) -> PresetBook:
    """Read the presets file; on a missing or broken file, log it and use the built-in CT presets."""
    path = path if path is not None else resources_dir().joinpath(*PRESETS_FILE)
    try:
        return _parse(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("window/level presets %s unusable (%s); using built-in CT presets", path, exc)
        return _FALLBACK


def preset_window(preset_id: str, modality: str = "CT", book: PresetBook | None = None) -> tuple[float, float]:
    """``(level, width)`` of a named preset of the presets file (the built-in one if the file lacks it).

    The key images and exports take their windows from here, so they match the viewer's keys.
    """
    preset = (book if book is not None else load_presets()).by_id(modality, preset_id)
    preset = preset if preset is not None else _FALLBACK.by_id(modality, preset_id)
    if preset is None:
        raise KeyError(f"no {modality} window/level preset {preset_id!r}")
    return preset.level, preset.window


def auto_window(array: npt.NDArray[Any], loaded: npt.NDArray[np.bool_] | None = None,
                percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """``(window, level)`` spanning the given percentiles of a subsample of the loaded slices.

    At most ``AUTO_SAMPLE_SLICES`` slices, each strided to about
    ``AUTO_SAMPLE_SIDE`` pixels a side: a few thousand values, well under a millisecond.
    """
    slices = np.flatnonzero(loaded) if loaded is not None else np.arange(array.shape[0])
    if slices.size == 0:
        return 1.0, 0.5
    pick = slices[np.linspace(0, slices.size - 1, min(AUTO_SAMPLE_SLICES, slices.size)).round().astype(int)]
    step_r = max(1, array.shape[1] // AUTO_SAMPLE_SIDE)
    step_c = max(1, array.shape[2] // AUTO_SAMPLE_SIDE)
    sample = np.asarray(array[pick, ::step_r, ::step_c], dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 1.0, 0.5
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi - lo < 1e-6:
        lo, hi = float(sample.min()), float(sample.max())
    window = max(hi - lo, 1.0 if array.dtype.kind in "iu" else 1e-3)
    return window, (hi + lo) / 2.0
