"""The engine's request/result contract (no torch here).

A request is immutable: a volume snapshot, a model id and options. A run reports
progress (fraction + stage text) and ends in one ``AnalysisResult`` or one error.
The label map always lies on the exact grid of the request's volume.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from inference.cancel import CancelToken
from inference.findings import Findings, Lesion, Measurement
from inference.labels import LabelTable
from inference.volume import Volume

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]


def no_progress(fraction: float, stage: str) -> None:
    """A progress callback that ignores reports."""


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse and how. ``device`` is ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``) or ``mps``."""

    volume: Volume
    model_id: str = "builtin.ct"
    device: str = "auto"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class DeviceChoice:
    """Where a model runs: torch device string, a human name, and whether AMP is used."""

    device: str
    name: str
    amp: bool = False


@dataclass
class RunContext:
    """What a model sees while running: device, progress reporting, cancellation, notes for the user."""

    device: DeviceChoice
    progress: ProgressCallback
    cancel: CancelToken
    options: Mapping[str, Any]
    notes: list[str] = field(default_factory=list)

    def stage(self, fraction: float, text: str) -> None:
        """Report progress, then honour a pending cancel."""
        self.progress(max(0.0, min(1.0, fraction)), text)
        self.cancel.raise_if_cancelled()

    def note(self, text: str) -> None:
        """Something the user should know about this run (e.g. an out-of-memory fallback)."""
        logger.info("run note: %s", text)
        self.notes.append(text)


@dataclass
class ModelOutput:
    """A model's raw answer: a label map on the input grid, and any model-specific measurements."""

    labelmap: npt.NDArray[np.integer[Any]]
    label_table: LabelTable
    measurements: list[Measurement] = field(default_factory=list)
    lesions: list[Lesion] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)


class Model(Protocol):
    """Anything the engine can run."""

    id: str
    version: str
    title: str
    modalities: tuple[str, ...]

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        """Segment ``volume``; the label map must have ``volume.shape``."""
        ...


@dataclass
class AnalysisProvenance:
    """Which model made a result, where, how long each stage took, and what happened on the way."""

    model_id: str
    model_version: str
    device: str
    device_name: str
    amp: bool
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"model_id": self.model_id, "model_version": self.model_version, "device": self.device,
                "device_name": self.device_name, "amp": self.amp,
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}, "notes": list(self.notes)}


@dataclass
class AnalysisResult:
    """A label map on the input grid, its label table, the measured findings and the provenance."""

    request: AnalysisRequest
    labelmap: npt.NDArray[np.integer[Any]]
    label_table: LabelTable
    findings: Findings
    provenance: AnalysisProvenance

    def labelmap_volume(self) -> Volume:
        """The label map as a volume on the request's grid."""
        return self.request.volume.with_array(self.labelmap, note="label map")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the voxels)."""
        return {"labels": self.label_table.to_list(), "findings": self.findings.to_dict(),
                "provenance": self.provenance.to_dict(), "shape": list(self.labelmap.shape)}
