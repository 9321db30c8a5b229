"""Thick-slab viewing (MIP, MinIP, average) as radiologists read lung nodules. Qt-free.

A slab is ``thickness_mm`` of the volume along a view's normal, centred on the
shown slice: ``round(thickness / spacing)`` slices of that axis (at least one),
clipped at the ends of the volume. MIP shows the brightest voxel along each
ray (a nodule stands out from the vessels that run through the slab as lines),
MinIP the darkest (airways, emphysema), Avg the mean (a thicker, quieter slice).

``project`` reduces a slab one slice at a time into one 2-D buffer, so nothing
the size of the volume is ever copied: a 20-slice axial slab of 512x512 int16
takes about 0.3 ms (MIP) to 2 ms (Avg) on a 2-core VM. When the slab axis is the
array's innermost (the sagittal view of an axial series), the slab is reduced in
chunks of rows so the strided reads stay in cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SlabMode = Literal["mip", "minip", "avg"]
SLAB_MODES: tuple[SlabMode, ...] = ("mip", "minip", "avg")
MODE_NAMES: dict[SlabMode, str] = {"mip": "MIP", "minip": "MinIP", "avg": "Avg"}
THICKNESS_STEPS_MM: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0)
"""What ``[`` / ``]`` step through (0 = off)."""
MAX_THICKNESS_MM = 100.0
DEFAULT_THICKNESS_MM = 10.0
_CHUNK_ROWS = 32  # rows of the outer axis reduced together when the slab axis is the innermost

_OPS: dict[SlabMode, Any] = {"mip": np.maximum, "minip": np.minimum, "avg": np.add}


@dataclass
class SlabSettings:
    """The slab every view shows: its thickness in mm (0 = off) and how the slab is reduced."""

    thickness_mm: float = 0.0
    mode: SlabMode = "mip"

    @property
    def active(self) -> bool:
        """Whether views show a slab rather than a single slice."""
        return self.thickness_mm > 0.0

    def label(self) -> str:
        """The corner text: ``MIP 10 mm`` (empty when off)."""
        return f"{MODE_NAMES[self.mode]} {self.thickness_mm:g} mm" if self.active else ""

    def set(self, thickness_mm: float | None = None, mode: str | None = None) -> None:
        """Change the thickness (clipped to 0..``MAX_THICKNESS_MM``) and/or the mode."""
        if mode is not None:
            if mode not in SLAB_MODES:
                raise ValueError(f"slab mode must be one of {SLAB_MODES}, got {mode!r}")
            self.mode = mode
        if thickness_mm is not None:
            value = float(thickness_mm)
            if not np.isfinite(value):
                raise ValueError(f"slab thickness must be a number of mm, got {thickness_mm!r}")
            self.thickness_mm = min(max(value, 0.0), MAX_THICKNESS_MM)

    def thicker(self) -> None:
        """The next thickness step up (off -> 5 mm -> 10 mm ...)."""
        self.thickness_mm = next((t for t in THICKNESS_STEPS_MM if t > self.thickness_mm + 1e-6),
                                 THICKNESS_STEPS_MM[-1])

    def thinner(self) -> None:
        """The next thickness step down (... 10 mm -> 5 mm -> off)."""
        self.thickness_mm = next((t for t in reversed(THICKNESS_STEPS_MM) if t < self.thickness_mm - 1e-6), 0.0)

    def next_mode(self) -> None:
        """MIP -> MinIP -> Avg -> MIP; a slab that is off comes on at 10 mm in MIP."""
        if not self.active:
            self.thickness_mm, self.mode = DEFAULT_THICKNESS_MM, "mip"
            return
        self.mode = SLAB_MODES[(SLAB_MODES.index(self.mode) + 1) % len(SLAB_MODES)]


def slab_bounds(centre: int, n_slices: int, spacing_mm: float, thickness_mm: float) -> tuple[int, int]:
    """``(start, stop)`` slice indices of a slab ``thickness_mm`` thick centred on slice ``centre``.

    ``round(thickness / spacing)`` slices (at least one); an even count has one
    more slice after the centre than before. Clipped to ``0..n_slices``.
    """
    count = max(1, round(thickness_mm / spacing_mm)) if spacing_mm > 0 else 1
    start = int(centre) - (count - 1) // 2
    return max(0, start), min(int(n_slices), start + count)


def _reduce(block: npt.NDArray[Any], axis: int, op: Any, out: npt.NDArray[Any]) -> None:
    """``out = op(block[..k..])`` over ``axis``, one slice at a time (no temporary of the block's size)."""
    index: list[int | slice] = [slice(None)] * block.ndim
    index[axis] = 0
    out[...] = block[tuple(index)]
    for k in range(1, block.shape[axis]):
        index[axis] = k
        op(out, block[tuple(index)], out=out)


def project(block: npt.NDArray[Any], axis: int, mode: SlabMode) -> npt.NDArray[Any]:
    """The 2-D projection of a 3-D slab along ``axis`` (the remaining axes in their order).

    MIP and MinIP keep the array's dtype; Avg is rounded back to an integer dtype
    (so the windowing lookup table still applies) and float32 for float data.
    """
    if block.ndim != 3 or block.shape[axis] == 0:
        raise ValueError(f"a slab needs a 3-D block with slices along axis {axis}, got shape {block.shape}")
    shape = tuple(n for a, n in enumerate(block.shape) if a != axis)
    if mode == "avg":
        acc_dtype: np.dtype[Any] = (np.dtype(np.float32) if block.dtype.kind == "f" else
                                    np.dtype(np.int64) if block.dtype.itemsize >= 4 else np.dtype(np.int32))
    else:
        acc_dtype = block.dtype
    acc = np.empty(shape, dtype=acc_dtype)
    op = _OPS[mode]
    step = _CHUNK_ROWS if axis == block.ndim - 1 else block.shape[0]
    if axis == 0:
        _reduce(block, 0, op, acc)
    else:
        for r0 in range(0, block.shape[0], step):
            _reduce(block[r0:r0 + step], axis, op, acc[r0:r0 + step])
    if mode != "avg":
        return acc
    n = block.shape[axis]
    if acc.dtype.kind == "f":
        acc /= np.float32(n)
        return acc
    acc += n // 2  # round half up, then floor: the nearest integer mean
    acc //= n
    return acc.astype(block.dtype)
