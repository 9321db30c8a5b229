"""The built-in CT analysis model: HU rules and shape, no weights, the application's default model.

It labels body, right and left lungs, airways, bone (cortex and marrow),
the trunk's muscle, subcutaneous and visceral fat (arms are body, not trunk
tissue) and lung nodule candidates, and measures lung volumes, %LAA-950, body
composition at a vertebral level named from the spine (withheld, with the
reason as a caution, when no level can be named) and trabecular bone density
(see ``inference.builtin_ct.measurements`` for the conventions and cautions,
``soft_tissue`` for the compartments and ``spine`` for the levels).

Importing this package is cheap (no torch, MONAI or scipy): the engine lists
models by importing it; the pipeline modules load on the first ``run``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.contract import ModelOutput, RunContext
    from inference.volume import Volume

logger = logging.getLogger(__name__)

__all__ = ["BuiltinCTModel"]


class BuiltinCTModel:
    """HU-based CT segmentation and measurements that need no model weights."""

    id: str = "builtin.ct"
    version: str = "1.0.0"
    title: str = "Built-in CT analysis"
    modalities: tuple[str, ...] = ("CT",)

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        """Segment ``volume`` (HU, any orientation) and measure it; the label map has ``volume.shape``."""
        from inference.builtin_ct.model import analyse

        return analyse(volume, ctx)
