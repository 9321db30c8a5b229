"""Run a network over an image: sliding windows with progress, cancel, AMP and an out-of-memory cascade.

The predictor handed to MONAI's ``sliding_window_inference`` is wrapped so that
before every network call (one batch of ``sw_batch_size`` windows) the cancel
token is checked, and after it progress is reported as "sliding window i/n".

Out of memory (``torch.cuda.OutOfMemoryError``) is answered by a cascade of
attempts (``plan_attempts``): halve ``sw_batch_size`` down to 1, then keep the
windows on the GPU but stitch the full-size output on the CPU
(``sw_device=cuda, device=cpu``), then run fully on the CPU. Each step adds a
note to the run so the user learns why it was slower. On a CPU device only the
batch halving applies (CPU allocation failures are not CUDA errors).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.contract import RunContext
from inference.errors import ModelError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSettings:
    """How the bundle's inferer runs the network; ``roi_size=None`` means the whole image at once."""

    roi_size: tuple[int, ...] | None = None
    sw_batch_size: int = 1
    overlap: float | tuple[float, ...] = 0.25
    mode: str = "constant"
    sigma_scale: float | tuple[float, ...] = 0.125
    padding_mode: str = "constant"
    cval: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """One try: where windows run (``sw_device``), where the output is stitched (``device``), batch size."""

    sw_batch_size: int
    sw_device: str
    device: str


def plan_attempts(device: str, sw_batch_size: int, windowed: bool = True) -> list[Attempt]:
    """The out-of-memory cascade for ``device``: batch halving, then CPU stitching, then CPU only."""
    attempts = []
    batch = max(1, sw_batch_size)
    while True:
        attempts.append(Attempt(batch, device, device))
        if batch == 1 or not windowed:
            break
        batch = max(1, batch // 2)
    if device != "cpu":
        if windowed:
            attempts.append(Attempt(1, device, "cpu"))
        attempts.append(Attempt(1, "cpu", "cpu"))
    return attempts


def _scan_interval(image: Sequence[int], roi: Sequence[int], overlap: Sequence[float]) -> list[int]:
    """MONAI's window step per axis (``monai.inferers.utils._get_scan_interval``)."""
    out = []
    for size, r, o in zip(image, roi, overlap, strict=True):
        out.append(int(r) if r == size else max(1, int(r * (1 - o))))
    return out


def count_windows(spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float | Sequence[float]) -> int:
    """How many windows ``sliding_window_inference`` will run on one image of ``spatial_shape``."""
    from monai.data.utils import dense_patch_slices

    dims = len(spatial_shape)
    roi = [int(s) if r is None or int(r) <= 0 else int(r) for r, s in zip(roi_size, spatial_shape, strict=True)]
    padded = [max(s, r) for s, r in zip(spatial_shape, roi, strict=True)]
    ovl = [float(overlap)] * dims if isinstance(overlap, (int, float)) else [float(o) for o in overlap]
    return len(dense_patch_slices(padded, roi, _scan_interval(padded, roi, ovl)))


def _first_output(out: Any) -> torch.Tensor:
    """The segmentation output when a network returns several (deep supervision, dicts)."""
    if isinstance(out, (tuple, list)):
        return _first_output(out[0])
    if isinstance(out, dict):
        return _first_output(out.get("pred", next(iter(out.values()))))
    return out  # type: ignore[no-any-return]


def _run_once(image: torch.Tensor, network: Any, settings: WindowSettings, attempt: Attempt,
              ctx: RunContext, span: tuple[float, float]) -> torch.Tensor:
    import torch
    from monai.inferers import sliding_window_inference

    spatial = tuple(int(s) for s in image.shape[2:])
    if settings.roi_size is None:
        batches = 1
    else:
        batches = math.ceil(count_windows(spatial, settings.roi_size, settings.overlap) / attempt.sw_batch_size)
    done = 0
    lo, hi = span

    def predictor(x: torch.Tensor) -> torch.Tensor:
        nonlocal done
        ctx.cancel.raise_if_cancelled()
        y = _first_output(network(x))
        done += 1
        ctx.progress(lo + (hi - lo) * min(1.0, done / batches), f"sliding window {min(done, batches)}/{batches}")
        return y

    amp = ctx.device.amp and attempt.sw_device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        if settings.roi_size is None:
            return predictor(image.to(attempt.sw_device)).to(attempt.device)
        out = sliding_window_inference(
            image, list(settings.roi_size), attempt.sw_batch_size, predictor, overlap=settings.overlap,
            mode=settings.mode, sigma_scale=settings.sigma_scale, padding_mode=settings.padding_mode,
            cval=settings.cval, sw_device=attempt.sw_device, device=attempt.device)
    return _first_output(out)


def _describe(failed: Attempt, nxt: Attempt) -> str:
    where = f"out of memory on {failed.sw_device} with sw_batch_size {failed.sw_batch_size}"
    if nxt.sw_device == "cpu" and failed.sw_device != "cpu":
        return f"{where}; retrying fully on the CPU (much slower)"
    if nxt.device == "cpu" and failed.device != "cpu":
        return f"{where}; retrying with windows on {nxt.sw_device} and stitching the output on the CPU"
    return f"{where}; retrying with sw_batch_size {nxt.sw_batch_size}"


def run_network(image: torch.Tensor, network: Any, settings: WindowSettings, ctx: RunContext, name: str,
                span: tuple[float, float] = (0.15, 0.85),
                plan: list[Attempt] | None = None) -> tuple[torch.Tensor, Attempt]:
    """The network's output for ``image`` ``[1, C, X, Y, Z]``, and the attempt that produced it.

    ``plan`` defaults to ``plan_attempts(ctx.device.device, settings.sw_batch_size)``.
    The network is moved to each attempt's ``sw_device`` (so after a CPU fallback it
    is on the CPU: callers that cache networks must check the returned attempt).
    """
    import torch

    attempts = plan or plan_attempts(ctx.device.device, settings.sw_batch_size, settings.roi_size is not None)
    for i, attempt in enumerate(attempts):
        try:
            network.to(attempt.sw_device)
            source = image.to("cpu") if attempt.sw_device == "cpu" else image
            return _run_once(source, network, settings, attempt, ctx, span), attempt
        except torch.cuda.OutOfMemoryError as exc:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if i + 1 == len(attempts):
                raise ModelError(f"bundle '{name}' ran out of memory on every fallback "
                                 f"(last: windows on {attempt.sw_device}, output on {attempt.device}, "
                                 f"sw_batch_size {attempt.sw_batch_size})") from exc
            note = _describe(attempt, attempts[i + 1])
            logger.warning("bundle '%s': %s", name, note)
            ctx.note(note)
    raise ModelError(f"bundle '{name}': no inference attempt was planned")  # unreachable: plan is never empty
