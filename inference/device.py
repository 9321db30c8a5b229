"""Choose where models run: CUDA if usable, else MPS if present, else CPU. torch is imported lazily."""

from __future__ import annotations

import logging

from inference.contract import DeviceChoice
from inference.errors import ModelError

logger = logging.getLogger(__name__)


def choose_device(preference: str = "auto", amp: bool | None = None) -> DeviceChoice:
    """Resolve ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` to a usable device.

    AMP (float16 autocast) is on by default on CUDA only. Asking for a device
    that is not available is an error that says so, not a silent CPU run.
    """
    import torch

    pref = preference.lower().strip()
    if pref == "auto":
        if torch.cuda.is_available():
            pref = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            pref = "mps"
        else:
            pref = "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("CUDA was requested but no usable CUDA device is present (use --device cpu)")
        dev = torch.device(pref)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        return DeviceChoice(f"cuda:{index}", f"GPU {name}", True if amp is None else amp)
    if pref == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise ModelError("MPS was requested but is not available")
        return DeviceChoice("mps", "Apple GPU (MPS)", False)
    if pref == "cpu":
        threads = torch.get_num_threads()
        return DeviceChoice("cpu", f"CPU ({threads} threads)", False)
    raise ModelError(f"unknown device '{preference}': use auto, cpu, cuda, cuda:N or mps")


def release_device_memory(device: str) -> None:
    """Give cached GPU memory back after a run or a cancel."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
