"""Overhead of running a MONAI bundle through our adapter vs bare ``sliding_window_inference``.

Same network, ROI, overlap and window batch; same device (CPU unless --device).
"ours" is ``BundleModel.run`` on an LPS ``Volume``: float cast and reorientation
to RAS, the bundle's preprocessing (``Orientationd``, ``Spacingd`` at the volume's
own spacing, so no resampling, ``ScaleIntensityRanged``), the wrapped sliding
window (cancel check and progress per batch), argmax, and the label map put back
on the input grid. "bare" is ``sliding_window_inference`` on the image already in
model space (preprocessed once, outside the timing) plus the same argmax
(``labels_from_logits``) to a uint8 array. The network is loaded (and cached) before timing. Median of repeats,
alternating the order.

usage: python benchmarks/bench_engine_overhead.py [--size 160] [--roi 96] [--sw-batch 4] [--overlap 0.5]
                                                 [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402
from inference.cancel import CancelToken  # noqa: E402
from inference.contract import DeviceChoice, RunContext  # noqa: E402
from inference.volume import Volume, affine_from_geometry  # noqa: E402
from tests.bundle_factory import make_unet_bundle  # noqa: E402


def machine() -> str:
    """CPU model, cores, torch threads, versions (and the GPU if one is used)."""
    import monai
    import torch

    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    import os

    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"MONAI {monai.__version__}, Python {platform.python_version()}{gpu}")


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_both(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and process CPU seconds (all threads): CPU time is less disturbed by a noisy shared host."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160, help="volume edge in voxels (1 mm isotropic, axial LPS)")
    ap.add_argument("--roi", type=int, default=96)
    # the Model Zoo spleen_ct_segmentation bundle's inferer settings
    ap.add_argument("--sw-batch", type=int, default=4)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch
    from monai.inferers import sliding_window_inference

    from inference.bundles import discover_bundles
    from inference.bundles.spatial import ras_view, to_model_space
    from inference.bundles.stitching import labels_from_logits

    channels = (16, 32, 64, 128)
    n = args.size
    models_dir = Path(tempfile.mkdtemp(prefix="bench_bundles_"))
    make_unet_bundle(models_dir, "unet_bench", channels=channels, roi=(args.roi,) * 3, sw_batch_size=args.sw_batch,
                     pixdim=(1.0, 1.0, 1.0), overlap=args.overlap)
    (model,) = discover_bundles(models_dir)
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(n, n, n)).astype(np.int16)
    affine = affine_from_geometry((-80.0, -80.0, 0.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1.0, 1.0, 1.0))
    volume = Volume(arr, affine, modality="CT", units="HU")
    ctx = RunContext(DeviceChoice(args.device, args.device), lambda f, s: None, CancelToken(), {})

    loaded = model.load(args.device)
    net = loaded.network
    params = sum(p.numel() for p in net.parameters())
    space = to_model_space(volume, loaded.preprocessing, "image", model.name)
    image = space.image.to(args.device)
    s = loaded.settings

    def bare() -> np.ndarray:
        with torch.inference_mode():
            logits = sliding_window_inference(image, list(s.roi_size or ()), s.sw_batch_size, net,
                                              overlap=s.overlap, mode=s.mode)
        return labels_from_logits(logits)[0]

    stage_log: list[list[tuple[float, str]]] = []

    def ours() -> np.ndarray:
        log: list[tuple[float, str]] = [(time.perf_counter(), "start")]
        run_ctx = RunContext(ctx.device, lambda f, st: log.append((time.perf_counter(), st)), CancelToken(), {})
        out = np.asarray(model.run(volume, run_ctx).labelmap)
        log.append((time.perf_counter(), "end"))
        stage_log.append(log)
        return out

    # warm-up, and both must give the same labels (up to the grid permutation)
    ref, got = bare(), ours()
    assert got.shape == volume.shape, got.shape
    assert np.array_equal(ras_view(volume.with_array(got))[0], ref), "ours and bare disagree"
    r_ours: list[tuple[float, float]] = []
    r_bare: list[tuple[float, float]] = []
    for i in range(args.repeats):
        if i % 2:
            r_bare.append(timed_both(bare))
            r_ours.append(timed_both(ours))
        else:
            r_ours.append(timed_both(ours))
            r_bare.append(timed_both(bare))
    t_ours, t_bare = [w for w, _ in r_ours], [w for w, _ in r_bare]
    c_ours, c_bare = statistics.median(c for _, c in r_ours), statistics.median(c for _, c in r_bare)
    with torch.inference_mode():
        logits = sliding_window_inference(image, list(s.roi_size or ()), s.sw_batch_size, net, overlap=s.overlap)
        t_torch_argmax = statistics.median(timed(lambda: torch.argmax(logits[0], dim=0)) for _ in range(3))
        t_our_argmax = statistics.median(timed(lambda: labels_from_logits(logits)) for _ in range(3))
    pre_s, net_s, post_s, grid_s = [], [], [], []
    for log in stage_log[1:]:  # not the warm-up
        at = {st.split(" ")[0]: t for t, st in log if not st.startswith("sliding window")}
        pre_s.append(at["running"] - at["start"])
        net_s.append(at["post-processing"] - at["running"])
        post_s.append(at["end"] - at["post-processing"])
        grid_s.append(at["end"] - at["placing"])
    pre, post, grid = statistics.median(pre_s), statistics.median(post_s), statistics.median(grid_s)
    m_ours, m_bare = statistics.median(t_ours), statistics.median(t_bare)
    print(f"machine: {machine()}")
    print(f"network: MONAI UNet channels {channels}, strides (2, 2, 2), 1 residual unit per level, "
          f"{params / 1e6:.2f} M parameters, 3 output channels")
    print(f"volume: {n}^3 int16, 1 mm, axial LPS (flipped to RAS by the adapter); roi {args.roi}^3, "
          f"overlap {args.overlap}, sw_batch_size {args.sw_batch}, device {args.device}, {args.repeats} repeats")
    print(f"bare sliding_window_inference + argmax: median {m_bare * 1000:.0f} ms  "
          f"(all: {', '.join(f'{t * 1000:.0f}' for t in t_bare)})")
    print(f"ours BundleModel.run (pre + infer + post): median {m_ours * 1000:.0f} ms  "
          f"(all: {', '.join(f'{t * 1000:.0f}' for t in t_ours)})")
    print(f"ratio ours/bare, wall: {m_ours / m_bare:.3f}x of medians, {min(t_ours) / min(t_bare):.3f}x of minimums "
          "(target <= 1.05x)")
    print(f"ratio ours/bare, process CPU time: {c_ours / c_bare:.3f}x (medians {c_ours * 1000:.0f} / "
          f"{c_bare * 1000:.0f} ms)")
    print(f"argmax over {logits.shape[1]} channels: labels_from_logits {t_our_argmax * 1000:.0f} ms "
          f"(used by both), torch.argmax(dim=0) {t_torch_argmax * 1000:.0f} ms")
    print(f"ours by stage (medians): pre {pre * 1000:.0f} ms, network {statistics.median(net_s) * 1000:.0f} ms, "
          f"post {post * 1000:.0f} ms (argmax, also in bare, then {grid * 1000:.0f} ms back to the input grid)")
    extra = pre + grid
    print(f"adapter work that bare does not do (pre + back to the grid): {extra * 1000:.0f} ms = "
          f"{extra / m_bare * 100:.1f}% of bare")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
