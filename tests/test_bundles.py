"""MONAI Model Zoo bundles: discovery, the exact spatial round trip, engine runs, cancel, OOM fallback, install.

Every bundle is built offline by ``tests.bundle_factory`` (nothing is downloaded).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import itertools
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import AnalysisRequest, CancelledError, CancelToken, DeviceChoice, ModelError, RunContext, Volume
from inference.bundles import BundleModel, discover_bundles
from inference.bundles.layout import BundleInfo
from inference.bundles.sliding import Attempt, _describe, count_windows, plan_attempts
from inference.bundles.spatial import to_input_grid, to_model_space
from inference.engine import Engine
from inference.volume import LPS_TO_RAS
from tests import bundle_factory as bf
from tests.requirements import import_or_missing
from workstation.services.models import install_bundle, list_models, remove_bundle

torch = import_or_missing("torch", "bash scripts/setup.sh test (installs torch first)")

REPO = Path(__file__).resolve().parents[1]
GEOMETRIES = {"oblique_sagittal": bf.oblique_sagittal_volume, "axial": bf.axial_volume,
              "coronal_flipped": bf.coronal_flipped_volume}


class _BundlesOnlyEngine(Engine):
    """The engine without the built-in CT model, for checkouts where ``inference.builtin_ct`` is not there yet."""

    def _builtin(self) -> list[Any]:
        return []


def make_engine(models_dir: Path) -> Engine:
    """The real engine (its built-in model lookup comes first), or the bundles-only one if that is absent."""
    try:
        importlib.import_module("inference.builtin_ct").BuiltinCTModel  # noqa: B018 - is it there yet?
    except (ImportError, AttributeError):
        return _BundlesOnlyEngine(models_dir)
    return Engine(models_dir)


def make_ctx(progress: Any = None, cancel: CancelToken | None = None) -> RunContext:
    return RunContext(DeviceChoice("cpu", "CPU"), progress or (lambda f, s: None), cancel or CancelToken(), {})


def get_bundle(models_dir: Path, name: str) -> BundleModel:
    return next(m for m in discover_bundles(models_dir) if m.id == f"bundle.{name}")


def oriented_spacing(volume: Volume, axcodes: str, divide: tuple[int, int, int] = (1, 1, 1)
                     ) -> tuple[float, float, float]:
    """Voxel sizes along the axes of the bundle's ``Orientationd(axcodes)`` output, divided by ``divide``."""
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    img = MetaTensor(torch.zeros((1, *volume.shape)), affine=torch.as_tensor(LPS_TO_RAS @ volume.affine))
    out = Orientation(axcodes=axcodes, labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    sizes = np.linalg.norm(out.affine.numpy()[:3, :3], axis=0) / np.asarray(divide)
    return float(sizes[0]), float(sizes[1]), float(sizes[2])


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- discovery

def test_discovery_reads_metadata_without_importing_torch(models_dir: Path) -> None:
    bf.make_threshold_bundle(models_dir, "thr_mr", modality="MRI")
    bf.make_unet_bundle(models_dir)
    (models_dir / "a_language_model").mkdir()  # not a bundle: ignored silently
    (models_dir / "a_language_model" / "config.json").write_text("{}")
    code = ("import sys; from pathlib import Path; from inference.bundles import discover_bundles; "
            "ms = discover_bundles(Path(sys.argv[1])); "
            "print([(m.id, m.title, m.version, m.modalities, [lab.name for lab in m.labels]) for m in ms]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))")
    out = subprocess.run([sys.executable, "-c", code, str(models_dir)], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.splitlines()
    assert out[0] == str([("bundle.thr_mr", "Threshold", "0.3.1", ("MR",), ["bright"]),
                          ("bundle.tiny_unet", "Tiny UNet", "0.3.1", ("CT",), ["liver", "spleen"])])
    assert out[1] == "[]"
    unet = get_bundle(models_dir, "tiny_unet")
    assert unet.path == models_dir / "tiny_unet" and unet.problem is None


# ---------------------------------------------------------------- the spatial round trip

@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize(("axcodes", "factors"), [("LPI", (2, 1, 2)), ("PLS", (1, 3, 1)), ("RAS", (1, 1, 1))])
def test_threshold_bundle_round_trip_is_exact(models_dir: Path, geometry: str, axcodes: str,
                                              factors: tuple[int, int, int]) -> None:
    """Reorient + resample into model space, threshold there, come back: exactly ``volume > t`` voxel by voxel.

    The bundle's spacing is the input's (in its own axis order) divided by integers, so
    every input voxel centre is a model voxel centre and nearest-neighbour back is exact.
    """
    vol = GEOMETRIES[geometry]()
    bf.make_threshold_bundle(models_dir, "thr", axcodes=axcodes, pixdim=oriented_spacing(vol, axcodes, factors))
    model = get_bundle(models_dir, "thr")
    out = model.run(vol, make_ctx())
    assert out.labelmap.shape == vol.shape and out.labelmap.dtype == np.uint8
    np.testing.assert_array_equal(out.labelmap, (vol.array > 100.5).astype(np.uint8))
    assert [lab.name for lab in out.label_table] == ["bright"]
    # the model really saw a resampled image when asked to
    space = to_model_space(vol, model.load("cpu").preprocessing, "image", "thr")
    if factors == (1, 1, 1):
        assert sorted(space.image.shape[2:]) == sorted(vol.shape)
    else:
        assert np.prod(space.image.shape[2:]) > np.prod(vol.shape)


def test_yaml_config_and_both_weight_files(models_dir: Path) -> None:
    """A bundle with ``inference.yaml`` and both weight files but no network_def runs its TorchScript."""
    import yaml

    vol = bf.oblique_sagittal_volume()
    folder = bf.make_threshold_bundle(models_dir, "thr_yaml", axcodes="RAS", pixdim=oriented_spacing(vol, "RAS"))
    cfg_path = folder / "configs" / "inference.json"
    (folder / "configs" / "inference.yaml").write_text(yaml.safe_dump(json.loads(cfg_path.read_text())))
    cfg_path.unlink()
    (folder / "models" / "model.pt").write_bytes(b"unused: no network_def to load it into")
    out = get_bundle(models_dir, "thr_yaml").run(vol, make_ctx())
    np.testing.assert_array_equal(out.labelmap, vol.array > 100.5)


def test_volume_smaller_than_the_roi_is_padded(models_dir: Path) -> None:
    vol = bf.axial_volume(shape=(3, 7, 5))
    bf.make_threshold_bundle(models_dir, "thr", axcodes="RAS", pixdim=oriented_spacing(vol, "RAS"),
                             roi=(16, 16, 16))
    out = get_bundle(models_dir, "thr").run(vol, make_ctx())
    np.testing.assert_array_equal(out.labelmap, vol.array > 100.5)


def test_general_resampling_back_is_nearest_neighbour_within_a_voxel() -> None:
    """A model grid rotated by 7 degrees with non-integer spacing: the general (scipy) path."""
    vol = bf.axial_volume(shape=(24, 30, 28), spacing=(1.0, 1.0, 1.0))
    ras = LPS_TO_RAS @ vol.affine
    c, s = np.cos(0.12), np.sin(0.12)
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    centre = ras[:3, :3] @ (np.array(vol.shape) / 2) + ras[:3, 3]
    model_affine = rot @ np.diag([0.8, 0.9, 1.1, 1.0])
    model_affine[:3, 3] = centre - model_affine[:3, :3] @ np.array([20.0, 20.0, 15.0])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in (40, 40, 30)], indexing="ij"), -1)
    world = grid @ model_affine[:3, :3].T + model_affine[:3, 3]
    radius = 8.0
    labels = (np.linalg.norm(world - centre, axis=-1) < radius).astype(np.uint8)
    out = to_input_grid(labels, model_affine, vol)
    ours = np.stack(np.meshgrid(*[np.arange(n) for n in vol.shape], indexing="ij"), -1)
    dist = np.linalg.norm(ours @ ras[:3, :3].T + ras[:3, 3] - centre, axis=-1)
    truth = dist < radius
    wrong = out.astype(bool) != truth
    assert out.shape == vol.shape and out.dtype == np.uint8 and truth.sum() > 1000
    assert np.all(np.abs(dist[wrong] - radius) < 1.0)  # only within one model voxel of the surface


def test_general_resampling_back_keeps_the_labels_of_the_border_voxels() -> None:
    """Input voxels within half a model voxel beyond the last model voxel centre take its label (they were
    background before issue 16: scipy's ``constant`` mode cuts at the last centre); farther ones are background."""
    vol = bf.axial_volume(shape=(13, 13, 13), spacing=(1.0, 1.0, 1.0))
    ras = LPS_TO_RAS @ vol.affine
    model_affine = ras @ np.diag([1.3, 1.3, 1.3, 1.0])  # same origin, 1.3 mm: input voxel 12 is model 9.23
    out = to_input_grid(np.ones((10, 10, 10), dtype=np.uint8), model_affine, vol)
    assert out.all()
    # a model grid one voxel shorter along the first axis ends at 8.5 model voxels = 11.05 input voxels
    out = to_input_grid(np.ones((9, 10, 10), dtype=np.uint8), model_affine, vol)
    assert out[:12].all() and not out[12].any()


# ---------------------------------------------------------------- the UNet through the engine

def _unet_volume() -> Volume:
    return bf.axial_volume(shape=(20, 40, 36))


def _unet_bundle(models_dir: Path, name: str = "tiny_unet", **kw: Any) -> Path:
    # RAS order of the axial volume is (column 0.7, row 0.8, slice 2.5 mm): z is up-sampled x2
    return bf.make_unet_bundle(models_dir, name, pixdim=(0.7, 0.8, 1.25), **kw)


def test_unet_bundle_runs_end_to_end_through_the_engine(models_dir: Path) -> None:
    vol = _unet_volume()
    _unet_bundle(models_dir)
    engine = make_engine(models_dir)
    assert "bundle.tiny_unet" in [m.id for m in engine.models("CT")]
    stages: list[tuple[float, str]] = []
    result = engine.run(AnalysisRequest(vol, "bundle.tiny_unet", "cpu"), progress=lambda f, s: stages.append((f, s)))
    assert result.labelmap.shape == vol.shape and result.labelmap.dtype == np.uint8
    assert [lab.name for lab in result.label_table] == ["liver", "spleen"]
    assert set(np.unique(result.labelmap)) <= {0, 1, 2}
    assert result.provenance.model_id == "bundle.tiny_unet" and result.provenance.model_version == "0.3.1"
    assert result.provenance.device == "cpu" and not result.provenance.notes
    # progress: one report per window batch (model grid 36x40x39, roi 32, overlap 0.25: 8 windows, 2 a batch)
    assert count_windows((36, 40, 39), (32, 32, 32), 0.25) == 8
    windows = [(f, s) for f, s in stages if s.startswith("sliding window")]
    assert [s for _, s in windows] == [f"sliding window {i}/4" for i in range(1, 5)]
    assert all(a[0] < b[0] for a, b in itertools.pairwise(windows))
    assert [f for f, _ in stages] == sorted(f for f, _ in stages) and stages[-1] == (1.0, "done")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # MONAI's own chatter
def test_unet_bundle_matches_monais_own_load_infer_invert_pipeline(models_dir: Path, tmp_path: Path) -> None:
    """The same bundle run the Model Zoo way (NIfTI -> LoadImaged -> ... -> Invertd) gives the same labels."""
    import nibabel as nib
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.transforms import Invertd

    vol = bf.oblique_sagittal_volume(shape=(12, 30, 26))
    folder = bf.make_unet_bundle(models_dir, pixdim=oriented_spacing(vol, "RAS", (2, 1, 2)), roi=(24, 24, 24))
    ours = get_bundle(models_dir, "tiny_unet").run(vol, make_ctx()).labelmap

    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol.array.astype(np.float32), LPS_TO_RAS @ vol.affine), path)
    parser = ConfigParser(json.loads((folder / "configs" / "inference.json").read_text()))
    parser["device"] = "$torch.device('cpu')"
    pre = parser.get_parsed_content("preprocessing")
    data = pre({"image": str(path)})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    net.eval()
    with torch.inference_mode():
        logits = sliding_window_inference(data["image"][None], [24, 24, 24], 2, net, overlap=0.25)
        pred = torch.argmax(logits[0], 0, keepdim=True).float()
    data["pred"] = MetaTensor(pred, affine=data["image"].affine, meta=dict(data["image"].meta))
    data["pred"].applied_operations = list(data["image"].applied_operations)
    theirs = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert len(np.unique(ours)) > 1
    np.testing.assert_array_equal(ours, theirs[0].numpy().astype(np.uint8))


def test_weights_nested_under_model_key_load_the_same(models_dir: Path) -> None:
    vol = _unet_volume()
    _unet_bundle(models_dir, "flat")
    _unet_bundle(models_dir, "nested", nested=True)
    a = get_bundle(models_dir, "flat").run(vol, make_ctx()).labelmap
    b = get_bundle(models_dir, "nested").run(vol, make_ctx()).labelmap
    np.testing.assert_array_equal(a, b)


def test_cancel_during_the_sliding_window_stops_at_the_next_batch(models_dir: Path) -> None:
    vol = _unet_volume()
    _unet_bundle(models_dir)
    token = CancelToken()
    seen: list[str] = []

    def progress(fraction: float, stage: str) -> None:
        seen.append(stage)
        if stage.startswith("sliding window 1/"):
            token.cancel()

    with pytest.raises(CancelledError):
        make_engine(models_dir).run(AnalysisRequest(vol, "bundle.tiny_unet", "cpu"), progress, token)
    assert [s for s in seen if s.startswith("sliding window")] == ["sliding window 1/4"]


# ---------------------------------------------------------------- out-of-memory cascade

class FlakyNetwork:
    """FAULT INJECTION, not a GPU test: wraps a network and raises ``torch.cuda.OutOfMemoryError``
    on its first ``failures`` calls, so the fallback control flow runs on a CPU-only machine."""

    def __init__(self, network: Any, failures: int) -> None:
        self.network, self.failures, self.calls = network, failures, 0
        self.batches: list[int] = []

    def __call__(self, x: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise torch.cuda.OutOfMemoryError("injected: CUDA out of memory")
        self.batches.append(int(x.shape[0]))
        return self.network(x)

    def to(self, device: str) -> FlakyNetwork:
        self.network.to(device)
        return self


def _inject(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[FlakyNetwork]:
    made: list[FlakyNetwork] = []
    original = BundleModel.load

    def load(self: BundleModel, device: str) -> Any:
        loaded = original(self, device)
        made.append(FlakyNetwork(loaded.network, failures))
        return dataclasses.replace(loaded, network=made[-1])

    monkeypatch.setattr(BundleModel, "load", load)
    return made


def test_out_of_memory_halves_the_window_batch_and_notes_it(models_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    vol = _unet_volume()
    _unet_bundle(models_dir, "unet_b4", sw_batch_size=4)
    _unet_bundle(models_dir, "unet_b1", sw_batch_size=1)  # same seed, same weights: the reference
    engine = make_engine(models_dir)
    reference = engine.run(AnalysisRequest(vol, "bundle.unet_b1", "cpu")).labelmap
    made = _inject(monkeypatch, failures=2)
    result = engine.run(AnalysisRequest(vol, "bundle.unet_b4", "cpu"))
    assert result.provenance.notes == [
        "out of memory on cpu with sw_batch_size 4; retrying with sw_batch_size 2",
        "out of memory on cpu with sw_batch_size 2; retrying with sw_batch_size 1",
    ]
    assert made[-1].batches == [1] * 8
    np.testing.assert_array_equal(result.labelmap, reference)


def test_out_of_memory_on_every_fallback_is_a_model_error(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unet_bundle(models_dir, sw_batch_size=2)
    _inject(monkeypatch, failures=10**6)
    with pytest.raises(ModelError, match="ran out of memory on every fallback"):
        make_engine(models_dir).run(AnalysisRequest(_unet_volume(), "bundle.tiny_unet", "cpu"))


def test_gpu_out_of_memory_plan_goes_to_cpu_stitching_then_cpu() -> None:
    plan = plan_attempts("cuda:0", 4)
    assert plan == [Attempt(4, "cuda:0", "cuda:0"), Attempt(2, "cuda:0", "cuda:0"), Attempt(1, "cuda:0", "cuda:0"),
                    Attempt(1, "cuda:0", "cpu"), Attempt(1, "cpu", "cpu")]
    notes = [_describe(a, b) for a, b in itertools.pairwise(plan)]
    assert notes[1] == "out of memory on cuda:0 with sw_batch_size 2; retrying with sw_batch_size 1"
    assert notes[2].endswith("retrying with windows on cuda:0 and stitching the output on the CPU")
    assert notes[3].endswith("retrying fully on the CPU (much slower)")
    assert plan_attempts("cuda:0", 4, windowed=False) == [Attempt(4, "cuda:0", "cuda:0"), Attempt(1, "cpu", "cpu")]
    assert plan_attempts("cpu", 3) == [Attempt(3, "cpu", "cpu"), Attempt(1, "cpu", "cpu")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_out_of_memory_cascade_on_cuda(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol = _unet_volume()
    _unet_bundle(models_dir, sw_batch_size=4)
    _inject(monkeypatch, failures=4)  # batch 4, 2, 1, then CPU stitching fail: fully on the CPU succeeds
    result = make_engine(models_dir).run(AnalysisRequest(vol, "bundle.tiny_unet", "cuda"))
    assert len(result.provenance.notes) == 4 and "fully on the CPU" in result.provenance.notes[-1]
    assert result.labelmap.shape == vol.shape


# ---------------------------------------------------------------- problems are clear errors

@pytest.mark.parametrize(("kind", "message"), [
    ("no_weights", "no weights: models/model.pt or models/model.ts is missing"),
    ("corrupt_weights", "cannot read weights models/model.pt"),
    ("bad_config", "bad config: cannot parse inference.json"),
    ("mismatch", "weights models/model.pt do not match the network"),
    ("unknown_network", "cannot build the network from 'network_def'"),
    ("bad_metadata", "cannot read metadata.json"),
    ("pickled_code", "holds Python objects, not just tensors (refused: loading it could run code)"),
])
def test_broken_bundles_do_not_break_the_listing_and_explain_themselves(models_dir: Path, kind: str,
                                                                        message: str) -> None:
    names = bf.make_broken_bundles(models_dir)
    bf.make_threshold_bundle(models_dir)
    engine = make_engine(models_dir)
    ids = [m.id for m in engine.models()]
    assert "bundle.threshold" in ids and all(f"bundle.{n}" in ids for n in names.values())
    with pytest.raises(ModelError, match=f"bundle '{names[kind]}'") as err:
        engine.run(AnalysisRequest(bf.axial_volume(), f"bundle.{names[kind]}", "cpu"))
    assert message in str(err.value)
    assert not (models_dir / "pickled_code" / "PWNED").exists()


def test_unsupported_modality_and_multichannel_input_are_model_errors(models_dir: Path) -> None:
    bf.make_threshold_bundle(models_dir)
    engine = make_engine(models_dir)
    with pytest.raises(ModelError, match="is for CT images, not MR"):
        engine.run(AnalysisRequest(bf.axial_volume(modality="MR"), "bundle.threshold", "cpu"))
    meta_path = models_dir / "threshold" / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = 4
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="needs 4 input channels"):
        engine.run(AnalysisRequest(bf.axial_volume(), "bundle.threshold", "cpu"))


def test_a_bundle_outside_the_models_folder_is_never_loaded(models_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "config_code_ran"
    evil = bf.make_threshold_bundle(tmp_path / "elsewhere", "evil")
    cfg_path = evil / "configs" / "inference.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["imports"] = [f"$open({str(marker)!r}, 'w').write('ran')"]  # would run if the config were parsed
    cfg_path.write_text(json.dumps(cfg))
    (models_dir / "evil").symlink_to(evil, target_is_directory=True)
    good = bf.make_threshold_bundle(models_dir, "linked_config")
    (good / "configs" / "inference.json").unlink()
    (good / "configs" / "inference.json").symlink_to(cfg_path)

    engine = make_engine(models_dir)
    for name in ("evil", "linked_config"):
        with pytest.raises(ModelError, match="outside") as err:
            engine.run(AnalysisRequest(bf.axial_volume(), f"bundle.{name}", "cpu"))
        assert name in str(err.value)
    # and the load-time check holds even for a description that claims no problem
    info = BundleInfo("evil", models_dir / "evil", "Evil", "1", config_path=cfg_path,
                      weights_path=evil / "models" / "model.ts")
    with pytest.raises(ModelError, match="outside the models folder"):
        BundleModel(info, models_dir.resolve()).load("cpu")
    assert not marker.exists()


# ---------------------------------------------------------------- install / list / remove

def test_install_list_remove_round_trip(models_dir: Path, tmp_path: Path) -> None:
    src = bf.make_threshold_bundle(tmp_path / "src", "thr_zoo")
    zip_path = bf.zip_bundle(src, tmp_path / "thr_zoo_v0.3.1.zip")
    entry = install_bundle(zip_path, models_dir)
    assert entry["id"] == "bundle.thr_zoo" and entry["title"] == "Threshold" and entry["labels"] == ["bright"]
    assert entry["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert entry["modalities"] == ["CT"] and entry["version"] == "0.3.1" and entry["problem"] is None
    record = json.loads((models_dir / "thr_zoo" / ".install.json").read_text())
    assert record["sha256"] == entry["sha256"] and record["installed_at"]
    assert [m["id"] for m in list_models(models_dir, include_builtin=False)] == ["bundle.thr_zoo"]
    assert "bundle.thr_zoo" in [m["id"] for m in list_models(models_dir)]  # after the built-in models
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")]  # no staging left behind
    # the installed bundle works
    vol = bf.axial_volume()
    out = make_engine(models_dir).run(AnalysisRequest(vol, "bundle.thr_zoo", "cpu"))
    assert out.labelmap.shape == vol.shape

    with pytest.raises(ModelError, match="already installed"):
        install_bundle(zip_path, models_dir)
    src2 = bf.make_threshold_bundle(tmp_path / "src2", "thr_zoo", threshold=-0.5)
    zip2 = bf.zip_bundle(src2, tmp_path / "thr_zoo_v2.zip")
    again = install_bundle(zip2, models_dir, replace=True)
    assert again["sha256"] == hashlib.sha256(zip2.read_bytes()).hexdigest() != entry["sha256"]

    removed = remove_bundle("bundle.thr_zoo", models_dir)
    assert removed == models_dir / "thr_zoo" and not removed.exists() and list_models(models_dir, False) == []
    with pytest.raises(ModelError, match=r"no bundle 'bundle\.thr_zoo'"):
        remove_bundle("bundle.thr_zoo", models_dir)


def test_install_of_a_zip_without_a_top_folder_uses_the_zip_name(models_dir: Path, tmp_path: Path) -> None:
    src = bf.make_threshold_bundle(tmp_path / "src", "whatever")
    entry = install_bundle(bf.zip_bundle(src, tmp_path / "flat_bundle.zip", top_folder=False), models_dir)
    assert entry["id"] == "bundle.flat_bundle"


@pytest.mark.parametrize(("entry", "message"), [
    ("thr/../../escaped.txt", "outside the bundle folder"),
    ("/tmp/absolute.txt", "absolute"),
    ("thr\\..\\..\\win.txt", "Windows-style"),
])
def test_install_refuses_path_traversal(models_dir: Path, tmp_path: Path, entry: str, message: str) -> None:
    src = bf.make_threshold_bundle(tmp_path / "src", "thr")
    zip_path = bf.zip_bundle(src, tmp_path / "bad.zip", extra={entry: b"gotcha"})
    with pytest.raises(ModelError, match=message):
        install_bundle(zip_path, models_dir)
    assert list(models_dir.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_install_refuses_symlinks_and_incomplete_or_unreadable_bundles(models_dir: Path, tmp_path: Path) -> None:
    src = bf.make_threshold_bundle(tmp_path / "src", "thr")
    link = zipfile.ZipInfo("thr/models/link.pt")
    link.external_attr = (0o120777 << 16)
    zip_path = bf.zip_bundle(src, tmp_path / "link.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ModelError, match="symbolic links"):
        install_bundle(zip_path, models_dir)

    (src / "models" / "model.ts").rename(tmp_path / "model.ts")
    with pytest.raises(ModelError, match=r"missing models/model\.pt or models/model\.ts"):
        install_bundle(bf.zip_bundle(src, tmp_path / "no_weights.zip"), models_dir)
    (tmp_path / "model.ts").rename(src / "models" / "model.ts")

    (src / "configs" / "metadata.json").write_text("{oops")
    with pytest.raises(ModelError, match=r"metadata\.json is unreadable"):
        install_bundle(bf.zip_bundle(src, tmp_path / "bad_meta.zip"), models_dir)

    (tmp_path / "not_a.zip").write_bytes(b"hello")
    with pytest.raises(ModelError, match="not a readable zip"):
        install_bundle(tmp_path / "not_a.zip", models_dir)
    assert list(models_dir.iterdir()) == []


def test_listing_reports_broken_bundles_and_never_imports_torch(models_dir: Path) -> None:
    bf.make_broken_bundles(models_dir)
    code = ("import sys; from pathlib import Path; from workstation.services.models import list_models; "
            "rows = list_models(Path(sys.argv[1]), include_builtin=False); "
            "print(sorted((r['id'], bool(r['problem'])) for r in rows)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')))")
    out = subprocess.run([sys.executable, "-c", code, str(models_dir)], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.splitlines()
    assert out[0] == str([("bundle.bad_config", False), ("bundle.bad_metadata", True),
                          ("bundle.corrupt_weights", False), ("bundle.mismatch", False),
                          ("bundle.no_weights", True), ("bundle.pickled_code", False),
                          ("bundle.unknown_network", False)])
    assert out[1] == "[]"
