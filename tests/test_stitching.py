"""Sliding-window stitching straight into labels (issue 16): MONAI's labels, without classes x volume floats.

The reference everywhere is MONAI's own ``sliding_window_inference`` (the full
float output) followed by ``torch.argmax`` (or ``> 0`` for one sigmoid channel).
Networks have random (seeded) weights and 3x3x3 kernels, so neighbouring
windows disagree and the blending matters. In float64 ties cannot happen and the
labels must be equal voxel for voxel; in float32 too, except where MONAI's two
best scores are within a few ulps of each other (where the order of additions
in the overlap of the last two windows of an axis may decide).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import AnalysisRequest, CancelToken, DeviceChoice, RunContext
from inference.bundles import BundleModel, discover_bundles
from inference.bundles.sliding import WindowSettings, count_windows, run_network
from inference.bundles.stitching import StitchStats, stitch_labels, window_layout
from inference.engine import Engine
from inference.volume import LPS_TO_RAS
from tests import bundle_factory as bf
from tests.requirements import import_or_missing

torch = import_or_missing("torch", "bash scripts/setup.sh test (installs torch first)")


def _ctx(progress: Any = None) -> RunContext:
    return RunContext(DeviceChoice("cpu", "CPU"), progress or (lambda f, s: None), CancelToken(), {})


def _network(classes: int, dtype: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, classes, 3, padding=1).to(dtype).eval()


def _monai(image: Any, net: Any, s: WindowSettings) -> Any:
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        return sliding_window_inference(
            image,
            list(s.roi_size or ()),
            s.sw_batch_size,
            net,
            overlap=s.overlap,
            mode=s.mode,
            sigma_scale=s.sigma_scale,
        )


def _labels(scores: Any) -> Any:
    return (scores[0, 0] > 0).numpy() if scores.shape[1] == 1 else torch.argmax(scores[0], 0).numpy()


def _near_ties(scores: Any, tol: float) -> Any:
    """Voxels where MONAI's two best scores (or a sigmoid logit and 0) are within ``tol``."""
    s = scores[0].double()
    if s.shape[0] == 1:
        return (s[0].abs() <= tol).numpy()
    top = torch.topk(s, 2, dim=0).values
    return ((top[0] - top[1]) <= tol * top[0].abs().clamp(min=1)).numpy()


Case = tuple[int, tuple[int, int, int], tuple[int, int, int], float | tuple[float, ...], str, int]
CASES: dict[str, Case] = {
    # classes, image, roi, overlap, mode, window batch
    "anisotropic_gaussian": (5, (37, 29, 19), (16, 12, 8), 0.25, "gaussian", 3),
    "two_classes_constant": (2, (40, 33, 21), (16, 16, 16), 0.5, "constant", 1),
    "per_axis_overlap": (7, (30, 26, 14), (12, 10, 8), (0.3, 0.6, 0.0), "gaussian", 2),
    "smaller_than_roi": (4, (10, 30, 9), (16, 16, 16), 0.25, "constant", 2),  # padded, then cropped
    "pulled_back_last_windows": (3, (50, 45, 23), (16, 16, 16), 0.25, "gaussian", 4),  # 50 = 0,12,24,34
    "sigmoid_one_channel": (1, (30, 20, 17), (16, 12, 8), 0.4, "gaussian", 2),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_labels_equal_monais_full_stitching(case: str, dtype: str) -> None:
    classes, shape, roi, overlap, mode, batch = CASES[case]
    dt = getattr(torch, dtype)
    net = _network(classes, dt)
    image = torch.randn((1, 1, *shape), generator=torch.Generator().manual_seed(1), dtype=dt)
    settings = WindowSettings(roi, batch, overlap, mode)
    labels, channels, _ = run_network(image, net, settings, _ctx(), "test")
    full = _monai(image, net, settings)
    expected = _labels(full)
    assert channels == classes and labels.shape == shape and labels.dtype == np.uint8
    present = len(np.unique(expected))
    assert present == 2 if classes <= 2 else present >= 3  # the windows really disagree
    # float64: no ties at all, equal everywhere; float32: equal except within a few ulps of a tie
    ties = _near_ties(full, 1e-12 if dtype == "float64" else 1e-6)
    assert ties.mean() < (1e-9 if dtype == "float64" else 1e-3)
    np.testing.assert_array_equal(labels[~ties], expected[~ties])


def test_only_a_band_of_floats_is_held_not_classes_times_volume() -> None:
    """The most float scores alive at once, counted by the stitcher, is a fraction of classes x volume."""
    classes, shape, roi = 20, (100, 80, 48), (24, 24, 24)  # x: windows at 0, 18, ... 72 and 76 (pulled back)
    layout = window_layout(shape, roi, 0.25)
    importance = torch.ones((1, 1, *roi))
    stats = StitchStats()

    def predictor(x: Any) -> Any:  # scores that differ per voxel and class, at no cost
        return x.expand(-1, classes, -1, -1, -1) * torch.arange(1, classes + 1.0).view(1, -1, 1, 1, 1)

    image = torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        labels, _ = stitch_labels(image, layout, 2, predictor, importance, "cpu", "cpu", stats)
    assert (labels == classes - 1).all()  # positive inputs: the last class scores highest everywhere
    full = classes * int(np.prod(shape))
    assert stats.live == 0 and stats.cells > len(layout.slices)
    # an overlap band (6 of 100 along x) across the cross-section, plus the current row's band and windows:
    # 0.11 of classes x volume. Running the pulled-back last two rows one after the other (MONAI's order)
    # would hold their 20-voxel overlap across the cross-section: 0.21.
    assert stats.peak_scores < 0.15 * full, stats.peak_scores / full


def test_an_output_grid_unlike_the_window_falls_back_to_monais_stitching() -> None:
    """A network with a half-resolution output: MONAI's own stitching (zoomed), the same labels."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3, padding=1), torch.nn.AvgPool3d(2)).eval()
    image = torch.randn((1, 1, 32, 24, 16), generator=torch.Generator().manual_seed(2))
    settings = WindowSettings((16, 16, 8), 2, 0.5, "constant")
    labels, channels, _ = run_network(image, net, settings, _ctx(), "test")
    np.testing.assert_array_equal(labels, _labels(_monai(image, net, settings)))
    assert channels == 3 and labels.shape == (16, 12, 8)


class FailsOnce:
    """FAULT INJECTION: a network that raises ``torch.cuda.OutOfMemoryError`` on its ``at``-th call only,
    after some cells were already stitched, so the retry must start from clean buffers."""

    def __init__(self, network: Any, at: int) -> None:
        self.network, self.at, self.calls = network, at, 0

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise torch.cuda.OutOfMemoryError("injected: CUDA out of memory")
        return self.network(x)

    def to(self, device: str) -> FailsOnce:
        self.network.to(device)
        return self


def test_out_of_memory_midway_retries_from_scratch_with_the_same_labels() -> None:
    net = _network(4, torch.float32, seed=3)
    image = torch.randn((1, 1, 40, 30, 20), generator=torch.Generator().manual_seed(3))
    settings = WindowSettings((16, 16, 16), 4, 0.25, "gaussian")
    ctx = _ctx()
    labels, _, attempt = run_network(image, FailsOnce(net, at=3), settings, ctx, "test")
    assert attempt.sw_batch_size == 2
    assert ctx.notes == ["out of memory on cpu with sw_batch_size 4; retrying with sw_batch_size 2"]
    np.testing.assert_array_equal(labels, _labels(_monai(image, net, settings)))


# ---------------------------------------------------------------- whole bundles, MONAI's own pipeline


def _monai_pipeline(folder: Path, volume: Any, tmp_path: Path, post: Any) -> Any:
    """The bundle run the Model Zoo way: NIfTI -> its preprocessing -> full stitching -> ``post`` -> Invertd."""
    import nibabel as nib
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import Invertd

    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume.array.astype(np.float32), LPS_TO_RAS @ volume.affine), path)
    config = json.loads((folder / "configs" / "inference.json").read_text())
    parser = ConfigParser(config)
    pre = parser.get_parsed_content("preprocessing")
    data = pre({"image": str(path)})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    net.eval()
    inf = config["inferer"]
    with torch.inference_mode():
        scores = sliding_window_inference(
            data["image"][None], inf["roi_size"], inf["sw_batch_size"], net, overlap=inf["overlap"], mode=inf["mode"]
        )
        pred = post(scores[0]).float()
    data["pred"] = MetaTensor(pred, affine=data["image"].affine, meta=dict(data["image"].meta))
    data["pred"].applied_operations = list(data["image"].applied_operations)
    return Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(data)["pred"][0].numpy()


# RAS spacing of ``bf.axial_volume`` is (0.7, 0.8, 2.5) mm: the bundle up-samples the slices x2, so the way
# back to the input grid is exact slicing on both sides (general resampling: test_bundles.py)
UPSAMPLE_Z = (0.7, 0.8, 1.25)


def _bundle(models_dir: Path, name: str) -> BundleModel:
    return next(m for m in discover_bundles(models_dir) if m.id == f"bundle.{name}")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # MONAI's own chatter
def test_two_class_bundle_equals_monai_everywhere_through_resampling(tmp_path: Path) -> None:
    """Anisotropic CT (0.7 x 0.8 x 2.5 mm), slices up-sampled x2 by the bundle's ``Spacingd``, 2 classes."""
    models = tmp_path / "models"
    vol = bf.axial_volume(shape=(15, 41, 37))
    folder = bf.make_conv_bundle(
        models, "two", 2, roi=(16, 16, 16), pixdim=UPSAMPLE_Z, overlap=0.5, mode="gaussian", sw_batch_size=3, kernel=3
    )
    ours = Engine(models).run(AnalysisRequest(vol, "bundle.two", "cpu")).labelmap
    theirs = _monai_pipeline(folder, vol, tmp_path, lambda s: torch.argmax(s, 0, keepdim=True))
    assert 100 < ours.sum() < ours.size - 100  # both labels, not a trivial map
    np.testing.assert_array_equal(ours, theirs.astype(np.uint8))


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_sigmoid_bundle_thresholds_like_its_postprocessing(tmp_path: Path) -> None:
    """A bundle whose postprocessing is a sigmoid and a 0.5 threshold (``Activationsd`` + ``AsDiscreted``)."""
    from monai.transforms import Activations, AsDiscrete

    models = tmp_path / "models"
    vol = bf.axial_volume(shape=(12, 30, 27))
    folder = bf.make_conv_bundle(
        models,
        "lesion",
        1,
        roi=(16, 16, 8),
        pixdim=UPSAMPLE_Z,
        overlap=0.25,
        mode="gaussian",
        sw_batch_size=2,
        kernel=3,
        sigmoid=True,
        seed=4,
    )
    output = _bundle(models, "lesion").run(vol, _ctx())
    assert [lab.name for lab in output.label_table] == ["lesion"]
    theirs = _monai_pipeline(folder, vol, tmp_path, lambda s: AsDiscrete(threshold=0.5)(Activations(sigmoid=True)(s)))
    assert 100 < output.labelmap.sum() < output.labelmap.size - 100
    np.testing.assert_array_equal(output.labelmap, theirs.astype(np.uint8))


def test_progress_and_cancel_are_per_window_batch(tmp_path: Path) -> None:
    from inference import CancelledError

    models = tmp_path / "models"
    bf.make_conv_bundle(models, "many", 30, roi=(16, 16, 16), pixdim=UPSAMPLE_Z, sw_batch_size=2)
    vol = bf.axial_volume(shape=(20, 40, 40))  # model grid 40 x 40 x 40: 3 x 3 x 3 windows, 14 batches of 2
    assert count_windows((40, 40, 40), (16, 16, 16), 0.25) == 27
    seen: list[str] = []
    result = Engine(models).run(AnalysisRequest(vol, "bundle.many", "cpu"), lambda f, s: seen.append(s))
    windows = [s for s in seen if s.startswith("sliding window")]
    assert windows == [f"sliding window {i}/14" for i in range(1, 15)]
    assert result.labelmap.shape == vol.shape
    token = CancelToken()

    def progress(fraction: float, stage: str) -> None:
        seen.append(stage)
        if stage == "sliding window 2/14":
            token.cancel()

    seen.clear()
    with pytest.raises(CancelledError):
        _bundle(models, "many").run(vol, dataclasses.replace(_ctx(progress), cancel=token))
    assert [s for s in seen if s.startswith("sliding window")] == ["sliding window 1/14", "sliding window 2/14"]


# ---------------------------------------------------------------- memory, measured

MEMORY_CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from inference.bundles import discover_bundles
from inference.cancel import CancelToken
from inference.contract import DeviceChoice, RunContext
from inference.volume import Volume, affine_from_geometry


def hwm_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def ct(shape):
    arr = np.random.default_rng(0).integers(-1000, 1001, size=shape, dtype=np.int16)
    affine = affine_from_geometry((0.0, 0.0, 0.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1.0, 1.0, 1.0))
    return Volume(arr, affine, modality="CT", units="HU")


volume = ct((120, 160, 160))
model = next(m for m in discover_bundles(Path(sys.argv[1])) if m.id == "bundle." + sys.argv[2])
ctx = RunContext(DeviceChoice("cpu", "CPU"), lambda f, s: None, CancelToken(), {})
model.run(ct((8, 50, 50)), ctx)  # loads torch, MONAI and the network on a small volume
before = hwm_mb()  # the high-water mark so far: what the run on the real volume adds is its own
labels = model.run(volume, ctx).labelmap
print(json.dumps({"added_mb": hwm_mb() - before, "labels": len(np.unique(labels))}))
"""


def test_memory_does_not_grow_with_classes_times_volume(tmp_path: Path) -> None:
    """60 classes on a 160 x 160 x 120 grid: full stitching would hold 60 x 3.1 M floats (737 MB) more than
    2 classes; slab stitching adds a band and a window, whatever the number of classes (fresh processes)."""
    import subprocess
    import sys

    models = tmp_path / "models"
    for classes in (2, 60):
        bf.make_conv_bundle(models, f"c{classes}", classes, roi=(48, 48, 48), pixdim=(1.0, 1.0, 1.0))
    added = {}
    for classes in (2, 60):
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(models), f"c{classes}"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report["labels"] >= min(classes, 20)  # a realistic spread of labels, not one class
        added[classes] = report["added_mb"]
    full_logits_mb = 60 * 160 * 160 * 120 * 4 / 2**20
    assert added[60] - added[2] < 0.4 * full_logits_mb, added
