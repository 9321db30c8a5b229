"""The MONAI Model Zoo layout: find bundles in the models folder and read their metadata (no torch here).

A bundle is a folder holding ``configs/metadata.json``, ``configs/inference.json``
(or ``.yaml``/``.yml``) and ``models/model.pt`` (a state dict) or
``models/model.ts`` (TorchScript). Reading a bundle's description needs only
JSON/YAML, so listing models never imports torch or MONAI.

Security: every path is resolved (symlinks followed) and must stay inside the
resolved models folder; a folder or file that escapes it is refused, because a
bundle's config can evaluate Python (``$`` expressions).
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.labels import Label, LabelTable, default_color

logger = logging.getLogger(__name__)

METADATA = Path("configs") / "metadata.json"
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
WEIGHT_NAMES = ("model.pt", "model.ts")
ID_PREFIX = "bundle."
_MODALITY_ALIASES = {"MRI": "MR", "CT": "CT", "PET": "PT", "ULTRASOUND": "US", "X-RAY": "CR"}


@dataclass
class BundleInfo:
    """What the models folder says about one bundle; ``problem`` is set when it cannot be used."""

    name: str
    path: Path
    title: str
    version: str
    modalities: tuple[str, ...] = ("*",)
    metadata: dict[str, Any] = field(default_factory=dict)
    config_path: Path | None = None
    weights_path: Path | None = None
    problem: str | None = None

    @property
    def id(self) -> str:
        """The model id the engine knows it by."""
        return ID_PREFIX + self.name


def is_inside(path: Path, root: Path) -> bool:
    """True if ``path`` resolves (following symlinks) to ``root`` or something under it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def looks_like_bundle(folder: Path) -> bool:
    """A candidate bundle: a visible folder with a ``configs`` or ``models`` sub-folder.

    Other folders (a language model for report drafting, install staging folders,
    which start with a dot) are not bundles and are skipped silently.
    """
    if folder.name.startswith(".") or not folder.is_dir():
        return False
    return (folder / "configs").is_dir() or (folder / "models").is_dir()


def modalities_from_metadata(metadata: dict[str, Any]) -> tuple[str, ...]:
    """DICOM modality codes from ``network_data_format.inputs.<first>.modality``; ``("*",)`` if absent."""
    raw = input_spec(metadata)[1].get("modality")
    if not isinstance(raw, str) or not raw.strip():
        return ("*",)
    out: list[str] = []
    for part in raw.replace(",", "/").split("/"):
        code = _MODALITY_ALIASES.get(part.strip().upper(), part.strip().upper())
        if code and code not in out:
            out.append(code)
    return tuple(out) or ("*",)


def output_spec(metadata: dict[str, Any]) -> dict[str, Any]:
    """``network_data_format.outputs.pred`` (or the first output), ``{}`` when absent."""
    outputs = metadata.get("network_data_format", {}).get("outputs", {})
    if not isinstance(outputs, dict):
        return {}
    spec: Any = outputs.get("pred") or next(iter(outputs.values()), {})
    return spec if isinstance(spec, dict) else {}


def input_spec(metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The input key (``image`` unless the metadata names another) and its description."""
    inputs = metadata.get("network_data_format", {}).get("inputs", {})
    if not isinstance(inputs, dict) or not inputs:
        return "image", {}
    key = "image" if "image" in inputs else next(iter(inputs))
    spec: Any = inputs[key]
    return str(key), spec if isinstance(spec, dict) else {}


def label_table_from_metadata(metadata: dict[str, Any], n_channels: int | None = None) -> LabelTable:
    """Label values and names from ``channel_def`` (channel index -> name; channel 0 is background).

    A single-channel (sigmoid) output has one label, value 1, named by channel 0
    (or 1) of ``channel_def``. Without ``channel_def`` the labels are "class N".
    """
    spec = output_spec(metadata)
    raw = spec.get("channel_def") or {}
    names: dict[int, str] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            try:
                names[int(key)] = str(value)
            except (TypeError, ValueError):
                logger.warning("ignoring channel_def entry %r: %r", key, value)
    channels = n_channels or int(spec.get("num_channels") or 0) or (max(names) + 1 if names else 2)
    if channels == 1:
        name = names.get(1) or names.get(0) or "foreground"
        if name.lower() == "background":
            name = "foreground"
        return LabelTable((Label(1, name, default_color(1)),))
    return LabelTable(tuple(Label(i, names.get(i, f"class {i}"), default_color(i)) for i in range(1, channels)))


def read_metadata(path: Path) -> dict[str, Any]:
    """Parse ``metadata.json``; ``ValueError`` with the reason if it is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def read_config_text(name: str, text: str) -> dict[str, Any]:
    """Parse an inference config (JSON or YAML by file name); ``ValueError`` with the reason."""
    try:
        if name.endswith((".yaml", ".yml")):
            yaml: Any = importlib.import_module("yaml")  # untyped; PyYAML comes with MONAI
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # JSON and YAML raise different errors; both mean "bad config"
        raise ValueError(f"cannot parse {name}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{name} is not a mapping")
    return data


def inspect_bundle(folder: Path, root: Path) -> BundleInfo:
    """Describe the bundle in ``folder`` (inside ``root``); problems go to ``BundleInfo.problem``."""
    name = folder.name
    info = BundleInfo(name=name, path=folder, title=name, version="")
    if not is_inside(folder, root):
        info.problem = f"'{folder}' leads outside the models folder {root} (refused: bundle configs can run code)"
        return info
    meta_path = folder / METADATA
    if not meta_path.is_file():
        info.problem = f"no {METADATA.as_posix()}"
        return info
    if not is_inside(meta_path, folder):
        info.problem = f"{METADATA.as_posix()} leads outside the bundle (refused)"
        return info
    try:
        info.metadata = read_metadata(meta_path)
    except ValueError as exc:
        info.problem = str(exc)
        return info
    info.title = str(info.metadata.get("name") or name)
    info.version = str(info.metadata.get("version") or "")
    info.modalities = modalities_from_metadata(info.metadata)
    configs = [folder / "configs" / n for n in CONFIG_NAMES if (folder / "configs" / n).is_file()]
    weights = [folder / "models" / n for n in WEIGHT_NAMES if (folder / "models" / n).is_file()]
    for p in [*configs, *weights]:
        if not is_inside(p, folder):
            info.problem = f"{p.relative_to(folder).as_posix()} leads outside the bundle (refused)"
            return info
    if not configs:
        info.problem = "no configs/inference.json (or .yaml)"
    elif not weights:
        info.problem = "no weights: models/model.pt or models/model.ts is missing"
    else:
        info.config_path, info.weights_path = configs[0], weights[0]
    return info


def discover(models_dir: Path) -> list[BundleInfo]:
    """Every bundle folder in ``models_dir``, sorted by name; broken ones carry their ``problem``."""
    root = models_dir.resolve()
    out: list[BundleInfo] = []
    try:
        children = sorted(models_dir.iterdir())
    except OSError as exc:
        logger.warning("cannot list models folder %s: %s", models_dir, exc)
        return out
    for child in children:
        try:
            if not looks_like_bundle(child):
                continue
            info = inspect_bundle(child, root)
        except OSError as exc:
            info = BundleInfo(child.name, child, child.name, "", problem=f"cannot read: {exc}")
        if info.problem:
            logger.warning("bundle '%s' is unusable: %s", child.name, info.problem)
        out.append(info)
    return out
