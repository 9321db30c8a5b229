"""Run a network over an image into a label map: sliding windows with progress, cancel, AMP and an OOM cascade.

The windows are MONAI's (``sliding_window_inference``'s padding, layout, order
and weights) and are stitched cell by cell straight into the label map
(``stitching``), so the full ``classes x volume`` float output is never held; a
network whose output grid differs from its window falls back to MONAI's own
stitching. The predictor is wrapped so that before every network call (one batch
of ``sw_batch_size`` windows) the cancel token is checked, and after it progress
is reported as "sliding window i/n".

Out of memory (``torch.cuda.OutOfMemoryError``) is answered by a cascade of
attempts (``plan_attempts``): halve ``sw_batch_size`` down to 1, then keep the
windows on the GPU but stitch on the CPU
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

import numpy as np
import numpy.typing as npt

from inference.bundles.stitching import OutputGridMismatchError, labels_from_logits, stitch_labels, window_layout
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


def count_windows(spatial_shape: Sequence[int], roi_size: Sequence[int], overlap: float | Sequence[float]) -> int:
    """How many windows ``sliding_window_inference`` will run on one image of ``spatial_shape``."""
    return len(window_layout(spatial_shape, roi_size, overlap).slices)


def _first_output(out: Any) -> torch.Tensor:
    """The segmentation output when a network returns several (deep supervision, dicts)."""
    if isinstance(out, (tuple, list)):
        return _first_output(out[0])
    if isinstance(out, dict):
        return _first_output(out.get("pred", next(iter(out.values()))))
    return out  # type: ignore[no-any-return]


def _run_once(image: torch.Tensor, network: Any, settings: WindowSettings, attempt: Attempt,
              ctx: RunContext, span: tuple[float, float]) -> tuple[npt.NDArray[np.integer[Any]], int]:
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own convention
    from monai.data.utils import compute_importance_map, get_valid_patch_size
    from monai.utils import PytorchPadMode, look_up_option

    spatial = tuple(int(s) for s in image.shape[2:])
    layout = None if settings.roi_size is None else window_layout(spatial, settings.roi_size, settings.overlap)
    batches = 1 if layout is None else math.ceil(len(layout.slices) / attempt.sw_batch_size)
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
        if layout is None:
            return labels_from_logits(predictor(image.to(attempt.sw_device)).to(attempt.device))
        padded = image
        if any(layout.pad):
            mode = look_up_option(settings.padding_mode, PytorchPadMode)
            padded = F.pad(image, pad=layout.pad, mode=mode, value=settings.cval)
        importance = compute_importance_map(get_valid_patch_size(layout.image_size, layout.roi), mode=settings.mode,
                                            sigma_scale=settings.sigma_scale, device=attempt.sw_device,
                                            dtype=image.dtype)[None, None]
        try:
            labels, channels = stitch_labels(padded, layout, attempt.sw_batch_size, predictor, importance,
                                             attempt.sw_device, attempt.device)
        except OutputGridMismatchError as exc:
            logger.info("%s; stitching the full output with MONAI instead", exc)
            from monai.inferers import sliding_window_inference

            done = 0
            out = sliding_window_inference(
                image, list(settings.roi_size or ()), attempt.sw_batch_size, predictor, overlap=settings.overlap,
                mode=settings.mode, sigma_scale=settings.sigma_scale, padding_mode=settings.padding_mode,
                cval=settings.cval, sw_device=attempt.sw_device, device=attempt.device)
            return labels_from_logits(_first_output(out))
    return np.ascontiguousarray(labels[layout.crop(spatial)]), channels


def _describe(failed: Attempt, nxt: Attempt) -> str:
    where = f"out of memory on {failed.sw_device} with sw_batch_size {failed.sw_batch_size}"
    if nxt.sw_device == "cpu" and failed.sw_device != "cpu":
        return f"{where}; retrying fully on the CPU (much slower)"
    if nxt.device == "cpu" and failed.device != "cpu":
        return f"{where}; retrying with windows on {nxt.sw_device} and stitching the output on the CPU"
    return f"{where}; retrying with sw_batch_size {nxt.sw_batch_size}"


def run_network(image: torch.Tensor, network: Any, settings: WindowSettings, ctx: RunContext, name: str,
                span: tuple[float, float] = (0.15, 0.85),
                plan: list[Attempt] | None = None) -> tuple[npt.NDArray[np.integer[Any]], int, Attempt]:
    """The label map ``[X, Y, Z]`` of ``image`` ``[1, C, X, Y, Z]``, the output's channel count, and the attempt.

    Labels are the argmax over channels (``> 0`` for a single sigmoid channel) of
    what ``sliding_window_inference`` would return, uint8 (uint16 above 256
    channels). ``plan`` defaults to ``plan_attempts(ctx.device.device,
    settings.sw_batch_size)``. The network is moved to each attempt's
    ``sw_device`` (so after a CPU fallback it is on the CPU: callers that cache
    networks must check the returned attempt).
    """
    import torch

    attempts = plan or plan_attempts(ctx.device.device, settings.sw_batch_size, settings.roi_size is not None)
    for i, attempt in enumerate(attempts):
        try:
            network.to(attempt.sw_device)
            source = image.to("cpu") if attempt.sw_device == "cpu" else image
            labels, channels = _run_once(source, network, settings, attempt, ctx, span)
            return labels, channels, attempt
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
