"""Memory and time of a 105-class bundle against a 2-class one (issue 16): slab stitching vs full stitching.

Two bundles whose network is a 1x1x1 ``Conv3d`` (random seeded weights: the
network costs nothing, so what is measured is the stitching and the spatial
round trip): 105 output channels (MONAI's ``wholeBody_ct_segmentation`` has 105)
and 2. Both use the Model Zoo preprocessing (``Orientationd`` RAS, ``Spacingd``
1.5 mm isotropic, ``ScaleIntensityRanged``) and the whole-body bundle's inferer
settings (ROI 96^3, overlap 0.25, one window a batch). The CT is synthetic:
``--slices`` 512x512 axial slices, 0.78 mm pixels, 1.5 mm slices, realistic HU
(air, fat, soft tissue, lungs, bone, noise), so the model grid is 266x266xN.

Each run is a fresh interpreter that reports its own peak RSS (``VmHWM``, the
probe of ``bench_hostile_import``) and the wall time of ``BundleModel.run``
(ours: windows stitched cell by cell straight into the label map). "full" is
the path before issue 16, in the same kind of child: ``to_model_space``, MONAI's
``sliding_window_inference`` (the whole ``classes x volume`` float output),
the same argmax, the same return to the input grid. Targets: 105-class peak at
most 1.3x the 2-class one and at most 2.5 GB; time at most 1.5x.

``--zoo`` adds the network of ``wholeBody_ct_segmentation`` (SegResNet, 105 outputs, built from a config
like the bundle's, random weights) on a ``--zoo-slices`` CT: ours only; minutes on a CPU.

usage: python benchmarks/bench_many_classes.py [--slices 200] [--repeats 1] [--skip-full] [--zoo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_hostile_import import PEAK_RSS  # noqa: E402
from benchmarks.machine import cpu_name  # noqa: E402
from inference.volume import Volume, affine_from_geometry  # noqa: E402


def synthetic_ct(slices: int, size: int = 512) -> Volume:
    """An axial CT of ``slices`` x ``size``^2 (0.78 mm pixels at 512, 1.5 mm slices) with realistic HU.

    Air, subcutaneous fat, soft tissue, lungs in the upper half, a spine, noise (SD 15 HU); built slice by
    slice in int16, so making it costs no more memory than the volume itself.
    """
    n = size
    k = size / 512
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    cy, cx = n / 2, n / 2
    body = ((xx - cx) / (220 * k)) ** 2 + ((yy - cy) / (160 * k)) ** 2 <= 1
    inner = ((xx - cx) / (205 * k)) ** 2 + ((yy - cy) / (145 * k)) ** 2 <= 1
    spine = (xx - cx) ** 2 + (yy - cy - 95 * k) ** 2 <= (22 * k) ** 2
    lungs = [
        ((xx - cx - side * 100 * k) / (80 * k)) ** 2 + ((yy - cy + 10 * k) / (110 * k)) ** 2 <= 1 for side in (-1, 1)
    ]
    rng = np.random.default_rng(0)
    arr = np.empty((slices, n, n), dtype=np.int16)
    for z in range(slices):
        sl = np.full((n, n), -1000.0, dtype=np.float32)
        sl[body] = -100.0
        sl[inner] = 40.0
        if z > slices // 2:
            for lung in lungs:
                sl[lung] = -850.0
        sl[spine] = 700.0
        sl += rng.normal(0, 15, size=(n, n)).astype(np.float32)
        arr[z] = np.clip(sl, -1024, 3000).astype(np.int16)
    pixel = 400.0 / n
    affine = affine_from_geometry((-200.0, -200.0, 0.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1.5, pixel, pixel))
    return Volume(arr, affine, modality="CT", units="HU")


CHILD = (
    PEAK_RSS
    + r"""
import numpy as np
sys.path.insert(0, sys.argv[1])
from benchmarks.bench_many_classes import synthetic_ct

mode, models_dir, name, slices = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
from pathlib import Path
from inference.bundles import discover_bundles
from inference.cancel import CancelToken
from inference.contract import DeviceChoice, RunContext
import torch

volume = synthetic_ct(slices)
model = next(m for m in discover_bundles(Path(models_dir)) if m.id == "bundle." + name)
ctx = RunContext(DeviceChoice("cpu", "CPU"), lambda f, s: None, CancelToken(), {})
model.load("cpu")
t0 = time.perf_counter()
if mode == "slab":
    labels = model.run(volume, ctx).labelmap
else:
    from monai.inferers import sliding_window_inference
    from inference.bundles.spatial import to_input_grid, to_model_space
    from inference.bundles.stitching import labels_from_logits
    loaded = model.load("cpu")
    space = to_model_space(volume, loaded.preprocessing, "image", name)
    s = loaded.settings
    with torch.inference_mode():
        logits = sliding_window_inference(space.image, list(s.roi_size), s.sw_batch_size, loaded.network,
                                          overlap=s.overlap, mode=s.mode, sigma_scale=s.sigma_scale)
    model_labels, _ = labels_from_logits(logits)
    del logits
    labels = to_input_grid(model_labels, space.affine, volume)
seconds = time.perf_counter() - t0
import hashlib
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "labels": int(len(np.unique(labels))),
                  "digest": hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]}))
"""
)


def measure(mode: str, models_dir: Path, name: str, slices: int) -> dict[str, Any]:
    """One run in a fresh interpreter: its wall time, peak RSS and a digest of the label map."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), mode, str(models_dir), name, str(slices)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {name} failed:\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each (median time, max peak)")
    ap.add_argument("--skip-full", action="store_true", help="do not measure the old full stitching")
    ap.add_argument("--zoo", action="store_true", help="also the wholeBody SegResNet (random weights), ours only")
    ap.add_argument("--zoo-slices", type=int, default=300)
    args = ap.parse_args()

    import torch

    from tests.bundle_factory import make_conv_bundle, make_segresnet_bundle

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )
    print(
        f"CT: synthetic, {args.slices} x 512 x 512, 0.78 x 0.78 x 1.5 mm -> model grid ~266x266x{args.slices}; "
        "ROI 96^3, overlap 0.25, sw_batch_size 1, 1x1x1 Conv3d"
    )
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        for classes in (2, 105):
            make_conv_bundle(models, f"conv{classes}", classes)
        modes = ["slab"] if args.skip_full else ["slab", "full"]
        for mode in modes:
            for classes in (2, 105):
                runs = [measure(mode, models, f"conv{classes}", args.slices) for _ in range(args.repeats)]
                digests = {r["digest"] for r in runs}
                results[(mode, classes)] = {
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "peak_mb": max(r["peak_rss_mb"] for r in runs),
                    "labels": runs[0]["labels"],
                }
                r = results[(mode, classes)]
                print(
                    f"{mode:5s} {classes:3d} classes: {r['seconds']:7.1f} s  peak RSS {r['peak_mb']:7.0f} MB  "
                    f"({int(r['labels'])} labels present, digest {'/'.join(sorted(digests))})",
                    flush=True,
                )
        if args.zoo:
            make_segresnet_bundle(models, "segresnet105")
            z = measure("slab", models, "segresnet105", args.zoo_slices)
            print(
                f"wholeBody-like SegResNet (105 classes, random weights) on {args.zoo_slices} slices: "
                f"{z['seconds']:.1f} s, peak RSS {z['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    s2, s105 = results[("slab", 2)], results[("slab", 105)]
    mem_ratio = s105["peak_mb"] / s2["peak_mb"]
    time_ratio = s105["seconds"] / s2["seconds"]
    print(
        f"ours 105 vs 2 classes: peak {mem_ratio:.2f}x (target <= 1.3x), {s105['peak_mb'] / 1024:.2f} GB "
        f"(target <= 2.5 GB), time {time_ratio:.2f}x (target <= 1.5x)"
    )
    if not args.skip_full:
        f2, f105 = results[("full", 2)], results[("full", 105)]
        print(
            f"full stitching 105 vs 2 classes: peak {f105['peak_mb'] / f2['peak_mb']:.2f}x, "
            f"{f105['peak_mb'] / 1024:.2f} GB, time {f105['seconds'] / f2['seconds']:.2f}x"
        )
        print(
            f"105 classes, ours vs full: peak {s105['peak_mb'] / f105['peak_mb']:.2f}x, "
            f"time {s105['seconds'] / f105['seconds']:.2f}x"
        )
    ok = mem_ratio <= 1.3 and s105["peak_mb"] <= 2.5 * 1024 and time_ratio <= 1.5
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
