"""Sliding-window stitching straight into a label map, so memory does not grow with classes x volume.

MONAI's ``sliding_window_inference`` adds every window's weighted output into one
float tensor of ``classes x volume`` (for a 105-class whole-body model on a CT,
gigabytes) and divides by the summed weights at the end; the label map is taken
from that afterwards. Here the same windows, with the same weights, are added
into small float blocks instead:

- along every axis the window starts and ends cut the (padded) image into
  intervals; their products are *cells*, each covered by one fixed set of windows
  (inside one window, or in the overlap band of two, four or eight);
- a cell's float block ``[classes, cell]`` is allocated when its first window
  arrives and *finalised* as soon as its last window has been added: divided by
  the summed weights, turned into labels (``label_block``: argmax, or ``> 0`` for
  a single sigmoid channel) written into the ``uint8``/``uint16`` label map, and
  released.

Windows run in MONAI's order (first spatial axis slowest), except that the last
two windows along an axis, which MONAI pulls back to fit the image so that they
overlap more than the others, run side by side (``processing_order``). The float
blocks alive at once are then the overlap band between two rows of windows along
the first axis, a band within the current row, and the windows being added:
memory depends on the ROI, the overlap and the cross-section, not on classes x
volume. Every voxel receives MONAI's operations (each weighted window added, in
MONAI's window order, then ``/=`` the summed weights, summed in MONAI's order),
so its scores are bitwise those of ``sliding_window_inference`` except where the
last two windows of an axis overlap, where the additions can come in another
order and a score may differ in its last bit: the labels are MONAI's, ties to
rounding aside.

A network whose output grid differs from its input window (a down-sampled
output) raises ``OutputGridMismatchError``; the caller then uses MONAI's own stitching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Cell = tuple[int, ...]
_CHUNK_SCORES = 1 << 21  # floats per argmax chunk on a CPU (8 MB: stays in cache)


class OutputGridMismatchError(Exception):
    """The network's output window is not the size of its input window (MONAI's stitching handles that)."""


def label_block(scores: torch.Tensor) -> torch.Tensor:
    """Labels of ``[C, ...]`` scores: argmax over channels (``> 0`` for one sigmoid channel), on their device.

    The argmax is a running comparison channel by channel (ties keep the lower
    channel, as ``torch.argmax`` does) over chunks of ~2 M scores that stay in
    cache: on a CPU, ``torch.argmax(dim=0)`` over the outer channel axis is 2-10x
    slower. ``uint8`` up to 256 channels, else ``int32``.
    """
    import torch

    channels = int(scores.shape[0])
    if channels == 1:
        return (scores[0] > 0).to(torch.uint8)
    dtype = torch.uint8 if channels <= 256 else torch.int32
    out = torch.empty(scores.shape[1:], dtype=dtype, device=scores.device)
    rows = int(scores.shape[1])
    per_row = max(1, scores[0, 0].numel()) * channels
    step = rows if scores.device.type != "cpu" else max(1, _CHUNK_SCORES // per_row)
    for i in range(0, rows, step):  # chunks along the first spatial axis: views, even of a strided block
        part = scores[:, i : i + step]
        best = part[0].clone()
        index = out[i : i + step]
        index.zero_()
        mask = torch.empty(best.shape, dtype=torch.bool, device=scores.device)
        for c in range(1, channels):
            torch.gt(part[c], best, out=mask)
            index.masked_fill_(mask, c)
            torch.maximum(best, part[c], out=best)
    return out


def labels_from_logits(logits: torch.Tensor) -> tuple[npt.NDArray[np.integer[Any]], int]:
    """``label_block`` of a whole ``[1, C, X, Y, Z]`` output: uint8/uint16 ``[X, Y, Z]`` and the channel count."""
    import torch

    with torch.inference_mode():
        out = label_block(logits[0]).cpu().numpy()
    channels = int(logits.shape[1])
    return (out if channels <= 256 else out.astype(np.uint16)), channels


@dataclass
class WindowLayout:
    """Where MONAI puts its windows on an image: padding, padded size, window slices (in MONAI's order)."""

    image_size: tuple[int, ...]
    roi: tuple[int, ...]
    pad: list[int]  # torch.nn.functional.pad order: last axis first, (before, after) each
    slices: list[tuple[slice, ...]]
    interval: tuple[int, ...] = ()

    def crop(self, original: Sequence[int]) -> tuple[slice, ...]:
        """The slices of the padded grid that hold the original image (MONAI's final crop)."""
        n = len(self.image_size)
        return tuple(slice(self.pad[2 * (n - 1 - d)], self.pad[2 * (n - 1 - d)] + int(original[d])) for d in range(n))


def window_layout(
    spatial: Sequence[int], roi_size: Sequence[int | None], overlap: float | Sequence[float]
) -> WindowLayout:
    """MONAI's padding, scan interval and ``dense_patch_slices`` for one image (``sliding_window_inference``)."""
    from monai.data.utils import dense_patch_slices
    from monai.utils import fall_back_tuple

    n = len(spatial)
    roi = tuple(int(r) for r in fall_back_tuple(list(roi_size), list(spatial)))  # None/<=0: the image size
    ovl = [float(overlap)] * n if isinstance(overlap, (int, float)) else [float(o) for o in overlap]
    if any(o < 0 or o >= 1 for o in ovl):
        raise ValueError(f"overlap must be >= 0 and < 1, got {overlap}")
    image_size = tuple(max(int(s), r) for s, r in zip(spatial, roi, strict=True))
    pad: list[int] = []
    for k in range(n - 1, -1, -1):
        diff = max(roi[k] - int(spatial[k]), 0)
        pad.extend([diff // 2, diff - diff // 2])
    interval = [r if r == s else max(1, int(r * (1 - o))) for s, r, o in zip(image_size, roi, ovl, strict=True)]
    return WindowLayout(image_size, roi, pad, list(dense_patch_slices(image_size, roi, interval)), tuple(interval))


def processing_order(layout: WindowLayout) -> list[int]:
    """MONAI's window order, except that the last two windows along an axis run side by side when they overlap
    more than the others do (MONAI moves the last window back to fit the image: on a 266-voxel axis with ROI 96
    and overlap 0.25 the last two share 70 voxels, not 24). Run one after the other, that thick overlap band
    would be held across the whole cross-section; interleaved, it is held for one window column at a time.
    """
    n = len(layout.image_size)
    starts = [sorted({s[a].start for s in layout.slices}) for a in range(n)]
    grouped = [len(st) >= 2 and st[-1] - st[-2] < layout.interval[a] for a, st in enumerate(starts)]

    def key(w: int) -> tuple[int, ...]:
        index = [starts[a].index(layout.slices[w][a].start) for a in range(n)]
        group = [min(i, len(starts[a]) - 2) if grouped[a] else i for a, i in enumerate(index)]
        return (*group, *index)

    return sorted(range(len(layout.slices)), key=key)


@dataclass
class StitchStats:
    """What the stitching held: the most float scores alive at once, in voxels x channels."""

    peak_scores: int = 0
    cells: int = 0
    live: int = 0

    def add(self, n: int) -> None:
        self.live += n
        self.peak_scores = max(self.peak_scores, self.live)


class _Blocks:
    """The float blocks of the cells being stitched, by cell, counted in ``stats``."""

    def __init__(self, stats: StitchStats) -> None:
        self.live: dict[Cell, torch.Tensor] = {}
        self.stats = stats

    def new(self, cell: Cell, first: torch.Tensor, dtype: torch.dtype, device: str) -> None:
        """A block for ``cell`` holding its first window's part (0 + x == x: copied, not added to zeros)."""
        import torch

        self.live[cell] = torch.empty(first.shape, dtype=dtype, device=device).copy_(first)
        self.stats.add(first.numel())

    def release(self, cell: Cell) -> None:
        self.stats.live -= self.live.pop(cell).numel()


@dataclass
class _Cells:
    """The cell grid of a layout: cut points per axis, which windows cover each cell, and when it is complete."""

    cuts: list[list[int]]
    spans: list[tuple[range, ...]]  # per window: the cell indices it covers along each axis
    covering: dict[Cell, list[int]] = field(default_factory=dict)  # windows, in MONAI's order
    finished_by: dict[int, list[Cell]] = field(default_factory=dict)  # window -> cells it completes

    def region(self, cell: Cell) -> tuple[slice, ...]:
        return tuple(slice(self.cuts[a][i], self.cuts[a][i + 1]) for a, i in enumerate(cell))


def _cells(layout: WindowLayout, order: list[int]) -> _Cells:
    n = len(layout.image_size)
    cuts = [
        sorted({0, layout.image_size[a]} | {s[a].start for s in layout.slices} | {s[a].stop for s in layout.slices})
        for a in range(n)
    ]
    spans = [tuple(range(cuts[a].index(s[a].start), cuts[a].index(s[a].stop)) for a in range(n)) for s in layout.slices]
    grid = _Cells(cuts, spans)
    for w, span in enumerate(spans):
        for cell in product(*span):
            grid.covering.setdefault(cell, []).append(w)
    position = {w: i for i, w in enumerate(order)}
    for cell, windows in grid.covering.items():
        grid.finished_by.setdefault(max(windows, key=position.__getitem__), []).append(cell)
    return grid


def stitch_labels(
    inputs: torch.Tensor,
    layout: WindowLayout,
    sw_batch_size: int,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    importance: torch.Tensor,
    sw_device: str,
    device: str,
    stats: StitchStats | None = None,
) -> tuple[npt.NDArray[np.integer[Any]], int]:
    """Labels ``[X, Y, Z]`` of ``inputs`` ``[1, C_in, X, Y, Z]`` (already padded to ``layout.image_size``).

    ``predictor`` maps a batch of windows on ``sw_device`` to ``[n, C, *roi]``;
    ``importance`` is MONAI's window weight map ``[1, 1, *roi]`` on ``sw_device``
    in the inputs' dtype. Float blocks live on ``device``. Returns the label map of
    the padded grid and the channel count.
    """
    import torch

    stats = stats or StitchStats()
    order = processing_order(layout)
    grid = _cells(layout, order)
    stats.cells = len(grid.covering)
    dtype = inputs.dtype
    weight = importance.to(dtype=dtype, device=sw_device)
    weights = importance.to(dtype=dtype, device=device)[0, 0]
    roi = tuple(layout.roi)
    blocks = _Blocks(stats)
    labels: npt.NDArray[Any] | None = None
    channels = 0
    try:
        for b0 in range(0, len(order), sw_batch_size):
            batch = order[b0 : b0 + sw_batch_size]
            window = torch.cat([inputs[(slice(0, 1), slice(None), *layout.slices[w])] for w in batch])
            out = predictor(window.to(sw_device))
            if tuple(out.shape[2:]) != roi or int(out.shape[0]) != len(batch):
                raise OutputGridMismatchError(f"network output {tuple(out.shape)} for windows {tuple(window.shape)}")
            out *= weight  # MONAI's own operations, in its order: weight on the window device, then move
            out = out.to(device)
            if labels is None:
                channels = int(out.shape[1])
                labels = np.zeros(layout.image_size, dtype=np.uint8 if channels <= 256 else np.uint16)
            for k, w in enumerate(batch):
                for cell in product(*grid.spans[w]):
                    part = out[k][(slice(None), *_within(grid.region(cell), layout.slices[w]))]
                    if len(grid.covering[cell]) == 1:  # inside this window only: finalised from it, no copy
                        _finalise(cell, part.to(dtype), grid, layout, weights, labels)
                    elif cell in blocks.live:
                        blocks.live[cell] += part
                    else:
                        blocks.new(cell, part, dtype, device)
            del out, window
            for w in batch:
                for cell in grid.finished_by.get(w, []):
                    if cell in blocks.live:
                        _finalise(cell, blocks.live[cell], grid, layout, weights, labels)
                        blocks.release(cell)
    finally:
        blocks.live.clear()  # an out-of-memory retry must not find these still referenced by the traceback
    if labels is None:
        raise ValueError("no windows to run")
    return labels, channels


def _within(region: tuple[slice, ...], window: tuple[slice, ...]) -> tuple[slice, ...]:
    """``region`` (image coordinates) in the coordinates of ``window``, which contains it."""
    return tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, window, strict=True))


def _finalise(
    cell: Cell,
    block: torch.Tensor,
    grid: _Cells,
    layout: WindowLayout,
    weights: torch.Tensor,
    labels: npt.NDArray[Any],
) -> None:
    """Divide a complete cell by its summed window weights (in MONAI's order) and write its labels."""
    import torch

    region = grid.region(cell)
    count = torch.zeros(block.shape[1:], dtype=block.dtype, device=block.device)
    for w in grid.covering[cell]:
        count += weights[_within(region, layout.slices[w])]
    block /= count
    labels[region] = label_block(block).cpu().numpy()
