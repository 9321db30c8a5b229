"""The GPU path, checked in one short run on a lent GPU (issue 16); ``--dry-run`` runs the same code on the CPU.

1. AMP against fp32: the wholeBody-like SegResNet bundle (105 outputs, random weights,
   ``tests.bundle_factory.make_segresnet_bundle``) through ``BundleModel.run`` on a synthetic CT,
   once with float16 autocast and once in fp32: time of each (after a warm-up) and the share of voxels
   whose labels agree.
2. A real CUDA out-of-memory: a network with a 4096-channel fp32 hidden layer (14.5 GB a 96^3 window)
   asked for all its windows in one batch; ``run_network``'s cascade halves the batch until it fits.
   Printed: the notes the user would see, the batch that ran, the time, and that its labels equal a run
   planned at that batch directly.
3. GPU memory of the 105-class 1x1x1-convolution bundle (``bench_many_classes``) and of the SegResNet one:
   ``torch.cuda.max_memory_allocated`` during ``BundleModel.run`` (slab stitching; the full ``classes x
   volume`` output would be 105 x 266^2 x 200 x 4 B = 5.9 GB on its own).
4. Drafting on the GPU with the tiny random LM the tests build (``tests.llm_factory``): device used,
   time, tokens per second.

Sizes: 200 x 512^2 CT (model grid 266^2 x 200); in ``--dry-run`` 24 x 128^2 on the CPU, ROI 32, and the
out-of-memory step only checks the plan (a CPU cannot raise a CUDA out-of-memory). The whole run takes
about 2-4 minutes on one H100 (most of it preprocessing on the CPU). Prints a summary; ``--json PATH``
writes it too.

usage: python benchmarks/gpu_check.py [--dry-run] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.bench_many_classes import synthetic_ct  # noqa: E402
from benchmarks.machine import cpu_name  # noqa: E402
from inference.cancel import CancelToken  # noqa: E402
from inference.contract import DeviceChoice, RunContext  # noqa: E402


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _ctx(device: str, amp: bool) -> RunContext:
    return RunContext(DeviceChoice(device, device, amp), lambda f, s: None, CancelToken(), {})


def _timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def amp_vs_fp32(models: Path, volume: Any, device: str, roi: int) -> dict[str, Any]:
    """SegResNet-105 through the adapter with and without autocast: times and label agreement."""
    from inference.bundles import discover_bundles
    from tests.bundle_factory import make_segresnet_bundle

    folder = make_segresnet_bundle(models, "segresnet105")
    cfg_path = folder / "configs" / "inference.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["inferer"]["roi_size"] = [roi] * 3
    cfg_path.write_text(json.dumps(cfg))
    model = next(m for m in discover_bundles(models) if m.id == "bundle.segresnet105")
    model.run(volume, _ctx(device, True))  # warm-up: load, cuDNN autotuning
    _peak_reset(device)
    amp, t_amp = _timed(device, lambda: model.run(volume, _ctx(device, True)).labelmap)
    peak_amp = _peak_gb(device)
    _peak_reset(device)
    fp32, t_fp32 = _timed(device, lambda: model.run(volume, _ctx(device, False)).labelmap)
    peak_fp32 = _peak_gb(device)
    return {
        "amp_s": t_amp,
        "fp32_s": t_fp32,
        "speed-up": t_fp32 / t_amp,
        "agreement": float((amp == fp32).mean()),
        "labels_present": len(np.unique(fp32)),
        "peak_gb_amp": peak_amp,
        "peak_gb_fp32": peak_fp32,
    }


class HungryNet:
    """Conv3d(1, 4096, 3) then Conv3d(4096, 3, 1): 14.5 GB of fp32 activations per 96^3 window."""

    def __init__(self, hidden: int) -> None:
        import torch

        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv3d(1, hidden, 3, padding=1), torch.nn.Conv3d(hidden, 3, 1)).eval()

    def __call__(self, x: Any) -> Any:
        return self.net(x)

    def to(self, device: str) -> HungryNet:
        self.net.to(device)
        return self


def forced_oom(device: str, dry: bool) -> dict[str, Any]:
    """All windows in one batch until the cascade finds a batch that fits; the same labels as that batch."""
    import torch

    from inference.bundles.sliding import WindowSettings, plan_attempts, run_network

    shape, roi, hidden = ((48, 48, 40), 16, 64) if dry else ((192, 192, 160), 96, 4096)
    image = torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(0))
    windows = 8 if dry else 18
    settings = WindowSettings((roi,) * 3, windows, 0.25, "gaussian")
    net = HungryNet(hidden)
    plan = plan_attempts(device, windows)
    out: dict[str, Any] = {"plan": [f"batch {a.sw_batch_size} on {a.sw_device}/{a.device}" for a in plan]}
    if dry:
        out["note"] = "dry run: a CPU cannot raise a CUDA out-of-memory; the plan is shown only"
        return out
    image = image.to(device)
    ctx = _ctx(device, False)
    _peak_reset(device)
    (labels, _, attempt), seconds = _timed(device, lambda: run_network(image, net, settings, ctx, "hungry"))
    out.update(
        {
            "notes": ctx.notes,
            "ran_with": f"batch {attempt.sw_batch_size} on {attempt.sw_device}/{attempt.device}",
            "seconds": seconds,
            "peak_gb": _peak_gb(device),
        }
    )
    direct = [a for a in plan if a == attempt][:1]
    again, _, _ = run_network(image, net, settings, _ctx(device, False), "hungry", plan=direct)
    out["same_labels_as_direct_run"] = float((again == labels).mean())
    return out


def class_memory(models: Path, volume: Any, device: str, roi: int) -> dict[str, Any]:
    """Peak GPU memory of the 2- and 105-class 1x1x1 bundles (slab stitching) and of SegResNet-105."""
    from inference.bundles import discover_bundles
    from tests.bundle_factory import make_conv_bundle

    out: dict[str, Any] = {}
    for classes in (2, 105):
        make_conv_bundle(models, f"conv{classes}", classes, roi=(roi,) * 3)
    for name in ("conv2", "conv105", "segresnet105"):  # segresnet105: built by amp_vs_fp32, if that ran
        model = next((m for m in discover_bundles(models) if m.id == f"bundle.{name}"), None)
        if model is None:
            continue
        model.load(device)
        _peak_reset(device)
        _, seconds = _timed(device, lambda model=model: model.run(volume, _ctx(device, True)))  # type: ignore[misc]
        out[name] = {"seconds": seconds, "peak_gb": _peak_gb(device)}
    return out


def drafting(device: str, dry: bool) -> dict[str, Any]:
    """The tiny random LM of the tests drafting a report on ``device``."""
    from inference.drafting import TransformersDrafter
    from tests.llm_factory import build_tiny_llm, sample_inputs

    n = 32 if dry else 128
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_llm(Path(tmp) / "tiny-llama")
        drafter = TransformersDrafter(folder, device=device, max_new_tokens=n)
        drafter.load()
        drafter.draft(sample_inputs(), max_new_tokens=4)  # warm-up
        draft, seconds = _timed(device, lambda: drafter.draft(sample_inputs(), max_new_tokens=n))
    meta = draft.metadata
    return {
        "device": meta.get("device"),
        "new_tokens": meta.get("new_tokens"),
        "seconds": seconds,
        "tokens_per_s": (meta.get("new_tokens") or 0) / seconds,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="small sizes on the CPU: checks the script itself")
    ap.add_argument("--json", type=Path, help="also write the summary here")
    args = ap.parse_args()

    import monai
    import torch

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --dry-run to exercise the script on the CPU)")
        return 2
    device = "cpu" if dry else "cuda:0"
    card = "CPU (dry run)" if dry else torch.cuda.get_device_name(0)
    print(f"device: {card}; CPU {cpu_name()}, torch {torch.__version__}, MONAI {monai.__version__}", flush=True)
    summary: dict[str, Any] = {"card": card, "torch": torch.__version__, "dry_run": dry}
    slices, size, roi = (24, 128, 32) if dry else (200, 512, 96)
    volume = synthetic_ct(slices, size)
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        steps = [
            ("amp_vs_fp32", lambda: amp_vs_fp32(models, volume, device, roi)),
            ("forced_oom", lambda: forced_oom(device, dry)),
            ("class_memory", lambda: class_memory(models, volume, device, roi)),
            ("drafting", lambda: drafting(device, dry)),
        ]
        for name, step in steps:
            t0 = time.perf_counter()
            try:
                summary[name] = step()
            except Exception as exc:  # one failing check must not hide the others
                traceback.print_exc()
                summary[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name} ({time.perf_counter() - t0:.1f} s): {json.dumps(summary[name], default=str)}", flush=True)
    print("\nsummary")
    print(json.dumps(summary, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 1 if any(isinstance(v, dict) and "error" in v for v in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
