"""Build MONAI Model Zoo bundles offline for tests: a tiny UNet, a TorchScript threshold, broken ones, zips.

Layout of each bundle (what ``inference.bundles`` and the Model Zoo expect)::

    <models_dir>/<name>/configs/metadata.json
    <models_dir>/<name>/configs/inference.json
    <models_dir>/<name>/models/model.pt   (state dict)  or  models/model.ts (TorchScript)

The threshold bundle's network computes a known function of its input: two
logits ``[t - x, x - t]`` per voxel, so the argmax is ``x > t`` where ``t`` is
the threshold mapped through the bundle's ``ScaleIntensityRanged``. Its
preprocessing reorients (``axcodes``) and resamples (``pixdim``), so comparing
its label map with ``volume.array > threshold`` tests the whole spatial round trip.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from inference.volume import Volume, affine_from_geometry

A_MIN, A_MAX = -1000.0, 1000.0


def _write(folder: Path, metadata: dict[str, Any], config: dict[str, Any] | str) -> None:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2))
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (folder / "configs" / "inference.json").write_text(text)


def metadata(title: str, channel_def: dict[str, str], modality: str = "CT", in_channels: int = 1) -> dict[str, Any]:
    """A Model Zoo ``metadata.json`` with the fields the workstation reads."""
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema.json",
        "version": "0.3.1",
        "name": title,
        "task": "test segmentation",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": modality,
                                 "num_channels": in_channels, "dtype": "float32"}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(channel_def),
                                 "channel_def": channel_def}},
        },
    }


def preprocessing(axcodes: str, pixdim: list[float], mode: str = "bilinear") -> dict[str, Any]:
    """The usual Model Zoo preprocessing, loader transforms included."""
    return {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": axcodes},
            {"_target_": "Spacingd", "keys": "image", "pixdim": pixdim, "mode": mode},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": A_MIN, "a_max": A_MAX,
             "b_min": 0.0, "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image", "device": "@device"},
        ],
    }


def unet_config(channels: list[int], out_channels: int, roi: list[int], sw_batch_size: int,
                pixdim: list[float], overlap: float = 0.25) -> dict[str, Any]:
    """An ``inference.json`` for a MONAI ``UNet`` (the Model Zoo's spleen bundle, shrunk)."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "/workspace/data/not_here",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": out_channels,
                        "channels": channels, "strides": [2] * (len(channels) - 1), "num_res_units": 1,
                        "norm": "batch"},
        "network": "$@network_def.to(@device)",
        "preprocessing": preprocessing("RAS", pixdim),
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": roi, "sw_batch_size": sw_batch_size,
                    "overlap": overlap},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }


UNET_LABELS = {"0": "background", "1": "liver", "2": "spleen"}


def make_unet_bundle(models_dir: Path, name: str = "tiny_unet", channels: tuple[int, ...] = (4, 8, 16),
                     roi: tuple[int, int, int] = (32, 32, 32), sw_batch_size: int = 2,
                     pixdim: tuple[float, float, float] = (1.5, 1.5, 2.0), overlap: float = 0.25,
                     modality: str = "CT", seed: int = 0, nested: bool = False) -> Path:
    """A MONAI ``UNet`` with random (seeded) weights saved as a state dict in ``models/model.pt``."""
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=len(UNET_LABELS), channels=channels,
               strides=[2] * (len(channels) - 1), num_res_units=1, norm="batch")
    folder = models_dir / name
    _write(folder, metadata("Tiny UNet", UNET_LABELS, modality),
           unet_config(list(channels), len(UNET_LABELS), list(roi), sw_batch_size, list(pixdim), overlap))
    state = net.state_dict()
    torch.save({"model": state} if nested else state, folder / "models" / "model.pt")
    return folder


def scaled(threshold: float) -> float:
    """``threshold`` (HU) as the network sees it after ``ScaleIntensityRanged`` to [0, 1]."""
    return (threshold - A_MIN) / (A_MAX - A_MIN)


def make_threshold_bundle(models_dir: Path, name: str = "threshold", threshold: float = 100.5,
                          axcodes: str = "LPI", pixdim: tuple[float, float, float] = (1.0, 1.0, 1.0),
                          roi: tuple[int, int, int] = (16, 16, 16), sw_batch_size: int = 3,
                          modality: str = "CT") -> Path:
    """A TorchScript network whose argmax is ``x > threshold`` voxel by voxel."""
    import torch

    class Threshold(torch.nn.Module):
        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.t - x, x - self.t], dim=1)

    folder = models_dir / name
    config = {
        "device": "$torch.device('cpu')",
        "preprocessing": preprocessing(axcodes, list(pixdim)),
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(roi), "sw_batch_size": sw_batch_size,
                    "overlap": 0.5, "mode": "gaussian"},
    }
    _write(folder, metadata("Threshold", {"0": "background", "1": "bright"}, modality), config)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x, but Model Zoo bundles ship it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Threshold(scaled(threshold))), str(folder / "models" / "model.ts"))
    return folder


def make_conv_bundle(models_dir: Path, name: str, classes: int, roi: tuple[int, int, int] = (96, 96, 96),
                     pixdim: tuple[float, float, float] = (1.5, 1.5, 1.5), overlap: float = 0.25,
                     mode: str = "constant", sw_batch_size: int = 1, kernel: int = 1, sigmoid: bool = False,
                     seed: int = 0) -> Path:
    """A ``torch.nn.Conv3d(1, classes, kernel)`` bundle: a network that costs (almost) nothing, so a run
    measures the stitching and the spatial round trip. ``kernel=1`` (more than one class): class ``c`` wins
    where the scaled intensity is nearest ``c / (classes - 1)`` (tangents of a parabola), so every intensity
    band of a CT gets its own label; a larger kernel has random (seeded) weights, and windows disagree near
    their borders. ``sigmoid`` makes the postprocessing a sigmoid + threshold (a multi-label bundle; one
    channel here)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Conv3d(1, classes, kernel, padding=kernel // 2)
    if kernel == 1 and classes > 1:
        t = torch.linspace(0.0, 1.0, classes)
        with torch.no_grad():
            net.weight.copy_((100.0 * t).view(classes, 1, 1, 1, 1))
            assert net.bias is not None  # Conv3d has one by default
            net.bias.copy_(-50.0 * t * t)
    channel_def = {str(i): ("background" if i == 0 else f"structure {i}") for i in range(classes)}
    if sigmoid:
        channel_def = {"0": "lesion"}
    post: list[dict[str, Any]] = (
        [{"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
         {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}] if sigmoid else
        [{"_target_": "Activationsd", "keys": "pred", "softmax": True},
         {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}])
    config = {
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": classes,
                        "kernel_size": kernel, "padding": kernel // 2},
        "preprocessing": preprocessing("RAS", list(pixdim)),
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(roi), "sw_batch_size": sw_batch_size,
                    "overlap": overlap, "mode": mode},
        "postprocessing": {"_target_": "Compose", "transforms": post},
    }
    folder = models_dir / name
    _write(folder, metadata(f"Conv {classes}", channel_def), config)
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    return folder


def make_segresnet_bundle(models_dir: Path, name: str = "wholebody_like", classes: int = 105,
                          pixdim: tuple[float, float, float] = (1.5, 1.5, 1.5), sw_batch_size: int = 1,
                          seed: int = 0) -> Path:
    """The network of MONAI's ``wholeBody_ct_segmentation`` (a ``SegResNet``, 105 outputs) built from a config
    like its own, with random (seeded) weights: its time and memory, not its anatomy."""
    import torch
    from monai.networks.nets import SegResNet

    net_def = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": classes,
               "init_filters": 32, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": 0.2}
    torch.manual_seed(seed)
    net = SegResNet(**{k: v for k, v in net_def.items() if k != "_target_"})
    config = {
        "device": "$torch.device('cpu')",
        "network_def": net_def,
        "preprocessing": preprocessing("RAS", list(pixdim)),
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": sw_batch_size,
                    "overlap": 0.25, "mode": "gaussian"},
    }
    channel_def = {str(i): ("background" if i == 0 else f"structure {i}") for i in range(classes)}
    folder = models_dir / name
    _write(folder, metadata("Whole-body-like SegResNet", channel_def), config)
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    return folder


class _RunsCode:
    """Unpickling this calls ``open(path, "w")``: what a malicious checkpoint could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def make_broken_bundles(models_dir: Path) -> dict[str, str]:
    """Broken bundles by kind -> folder name: each must give a ``ModelError`` naming its problem."""
    out = {}
    # missing weights
    folder = make_unet_bundle(models_dir, "no_weights")
    (folder / "models" / "model.pt").unlink()
    out["no_weights"] = folder.name
    # weights file that is not a checkpoint
    folder = make_unet_bundle(models_dir, "corrupt_weights")
    (folder / "models" / "model.pt").write_bytes(b"PK\x03\x04 this is not a torch checkpoint" * 10)
    out["corrupt_weights"] = folder.name
    # config that is not JSON
    folder = make_unet_bundle(models_dir, "bad_config")
    (folder / "configs" / "inference.json").write_text('{"network_def": {"_target_": "UNet",')
    out["bad_config"] = folder.name
    # weights of another network
    folder = make_unet_bundle(models_dir, "mismatch")
    cfg = json.loads((folder / "configs" / "inference.json").read_text())
    cfg["network_def"]["channels"] = [8, 16, 32]
    (folder / "configs" / "inference.json").write_text(json.dumps(cfg))
    out["mismatch"] = folder.name
    # a network class MONAI does not have
    folder = make_unet_bundle(models_dir, "unknown_network")
    cfg["network_def"]["_target_"] = "NoSuchNetwork"
    (folder / "configs" / "inference.json").write_text(json.dumps(cfg))
    out["unknown_network"] = folder.name
    # a pickle that runs code when unpickled (creates PWNED in the bundle): weights_only must refuse it
    folder = make_unet_bundle(models_dir, "pickled_code")
    with (folder / "models" / "model.pt").open("wb") as fh:
        pickle.dump(_RunsCode(str(folder / "PWNED")), fh)
    out["pickled_code"] = folder.name
    # unreadable metadata
    folder = make_unet_bundle(models_dir, "bad_metadata")
    (folder / "configs" / "metadata.json").write_text("[1, 2")
    out["bad_metadata"] = folder.name
    return out


def zip_bundle(bundle: Path, zip_path: Path, top_folder: bool = True,
               extra: dict[str, bytes] | None = None) -> Path:
    """Zip a bundle folder (under its own name, as Model Zoo downloads are), plus ``extra`` raw entries."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                rel = p.relative_to(bundle.parent if top_folder else bundle).as_posix()
                zf.write(p, rel)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return zip_path


def oblique_sagittal_volume(seed: int = 0, shape: tuple[int, int, int] = (7, 19, 23),
                            spacing: tuple[float, float, float] = (3.0, 0.7, 0.9)) -> Volume:
    """An asymmetric sagittal volume tilted by 0.1 rad, integer values in [-1000, 1000], with a bright block.

    Sizes, spacings and content differ per axis, so any flip or transposition in a
    round trip changes the result.
    """
    th = 0.1
    slice_dir = np.array([1.0, 0.0, 0.0])  # slices go towards the patient's left
    row_dir = np.array([0.0, -np.cos(th), np.sin(th)])  # along a row: anterior (tilted)
    col_dir = np.array([0.0, -np.sin(th), -np.cos(th)])  # down a column: inferior (tilted)
    affine = affine_from_geometry((10.0, 20.0, 30.0), row_dir, col_dir, slice_dir, spacing)
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1001, size=shape).astype(np.int16)
    arr[1:3, 2:9, 3:7] = 900  # an off-centre block
    return Volume(arr, affine, modality="CT", units="HU")


def axial_volume(seed: int = 1, shape: tuple[int, int, int] = (9, 26, 21),
                 spacing: tuple[float, float, float] = (2.5, 0.8, 0.7), modality: str = "CT") -> Volume:
    """A standard axial (LPS-aligned) asymmetric volume."""
    affine = affine_from_geometry((-40.0, -30.0, 100.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), spacing)
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1001, size=shape).astype(np.int16)
    arr[:4, :10, -6:] = 1000
    return Volume(arr, affine, modality=modality, units="HU")


def coronal_flipped_volume(seed: int = 2, shape: tuple[int, int, int] = (11, 8, 17),
                           spacing: tuple[float, float, float] = (1.8, 2.2, 0.6)) -> Volume:
    """A coronal volume whose slices run posterior -> anterior and rows superior -> inferior."""
    affine = affine_from_geometry((5.0, 50.0, 60.0), (-1, 0, 0), (0, 0, -1), (0, -1, 0), spacing)
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1001, size=shape).astype(np.int16)
    return Volume(arr, affine, modality="CT", units="HU")
