"""The engine: find a model, run it on a volume with progress and cancel, measure the result.

The engine owns no thread; the application runs ``Engine.run`` on its one
inference worker thread. Every failure leaves as a ``WorkstationError`` subclass
with a message naming the model and the reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.cancel import CancelToken
from inference.contract import (
    AnalysisProvenance,
    AnalysisRequest,
    AnalysisResult,
    Model,
    ProgressCallback,
    RunContext,
    no_progress,
)
from inference.errors import ModelError, WorkstationError

if TYPE_CHECKING:
    from inference.remote import RemoteModels

logger = logging.getLogger(__name__)

BUILTIN_CT = "builtin.ct"


@dataclass(frozen=True)
class ModelInfo:
    """What the model picker and ``models list`` show."""

    id: str
    title: str
    version: str
    modalities: tuple[str, ...]
    source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"id": self.id, "title": self.title, "version": self.version,
                "modalities": list(self.modalities), "source": self.source}


class Engine:
    """Built-in models plus the MONAI bundles installed in ``models_dir`` (and nowhere else).

    ``remote`` resolves ``remote:NODE/MODEL`` ids to models on the configured MONAI Label nodes
    (``inference.remote``); without it such ids are unknown.
    """

    def __init__(self, models_dir: Path | None = None, remote: RemoteModels | None = None) -> None:
        self.models_dir = models_dir
        self.remote = remote

    def _builtin(self) -> list[Model]:
        from inference.builtin_ct import BuiltinCTModel

        return [BuiltinCTModel()]

    def _bundles(self) -> list[Model]:
        if self.models_dir is None or not self.models_dir.is_dir():
            return []
        from inference.bundles import discover_bundles

        return list(discover_bundles(self.models_dir))

    def models(self, modality: str | None = None) -> list[ModelInfo]:
        """Available models, optionally only those for ``modality``."""
        out = []
        for m in [*self._builtin(), *self._bundles()]:
            if modality and modality not in m.modalities and "*" not in m.modalities:
                continue
            source = "built-in" if m.id.startswith("builtin.") else str(getattr(m, "path", ""))
            out.append(ModelInfo(m.id, m.title, m.version, tuple(m.modalities), source))
        return out

    def get(self, model_id: str) -> Model:
        """The model with this id; ``ModelError`` if none."""
        if model_id.startswith("remote:") and self.remote is not None:
            return self.remote.get(model_id)
        for m in self._builtin():
            if m.id == model_id:
                return m
        for m in self._bundles():
            if m.id == model_id:
                return m
        known = ", ".join(i.id for i in self.models()) or "none"
        raise ModelError(f"unknown model '{model_id}' (installed: {known})")

    def run(self, request: AnalysisRequest, progress: ProgressCallback = no_progress,
            cancel: CancelToken | None = None) -> AnalysisResult:
        """Run one request to completion (or ``CancelledError``/``ModelError``)."""
        from inference.device import choose_device, release_device_memory
        from inference.findings.lesions import attach_image_refs
        from inference.findings.measure import compute_findings

        cancel = cancel or CancelToken()
        volume = request.volume
        model = self.get(request.model_id)
        if "*" not in model.modalities and volume.modality not in model.modalities:
            raise ModelError(f"model '{model.id}' is for {'/'.join(model.modalities)} images, "
                             f"not {volume.modality or 'unknown modality'}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        device = getattr(model, "device_choice", None) or choose_device(request.device, request.options.get("amp"))
        ctx = RunContext(device, progress, cancel, request.options)
        ctx.stage(0.0, f"starting {model.title} on {device.name}")
        try:
            output = model.run(volume, ctx)
        except WorkstationError:
            raise
        except MemoryError as exc:
            raise ModelError(f"model '{model.id}' ran out of memory on {device.name}") from exc
        except Exception as exc:
            raise ModelError(f"model '{model.id}' failed: {exc}") from exc
        finally:
            release_device_memory(device.device)
        timings["model"] = time.perf_counter() - t0
        labelmap = np.asarray(output.labelmap)
        if labelmap.shape != volume.shape:
            raise ModelError(f"model '{model.id}' returned a label map of shape {labelmap.shape}, "
                             f"not the volume's {volume.shape}")
        ctx.stage(0.95, "measuring findings")
        t1 = time.perf_counter()
        findings = compute_findings(volume, labelmap, output.label_table)
        findings.measurements.extend(output.measurements)
        findings.cautions.extend(c for c in output.cautions if c not in findings.cautions)
        if output.lesions:
            findings.lesions = output.lesions
            attach_image_refs(volume, findings.lesions)  # a model's own lesions name their image too
        timings["findings"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - t0
        ctx.progress(1.0, "done")
        prov = AnalysisProvenance(model.id, model.version, device.device, device.name, device.amp, timings, ctx.notes)
        return AnalysisResult(request, labelmap, output.label_table, findings, prov)
