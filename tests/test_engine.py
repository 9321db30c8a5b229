"""The engine contract: model lookup, modality check, grid check, progress, cancel, provenance, device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import (
    AnalysisRequest,
    CancelledError,
    CancelToken,
    LabelTable,
    ModelError,
    ModelOutput,
    RunContext,
    Volume,
    affine_from_geometry,
)
from inference.engine import Engine


def _volume(modality: str = "CT") -> Volume:
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 1000, size=(6, 10, 12)).astype(np.int16)
    aff = affine_from_geometry((5.0, -3.0, 10.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2.5, 0.8, 0.7))
    return Volume(arr, aff, modality=modality, units="HU")


class ThresholdModel:
    """A test model whose output is a known function of its input: label 1 where value > 0."""

    id = "test.threshold"
    version = "0.1"
    title = "Threshold"
    modalities = ("CT",)

    def __init__(self, shape_bug: bool = False) -> None:
        self.shape_bug = shape_bug

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        ctx.stage(0.2, "thresholding")
        out = (volume.array > 0).astype(np.uint8)
        ctx.stage(0.8, "done thresholding")
        if self.shape_bug:
            out = out[:, :, :-1]
        return ModelOutput(out, LabelTable.from_names(["positive"]))


class _Engine(Engine):
    def __init__(self, model: Any) -> None:
        super().__init__(None)
        self.model = model

    def _builtin(self) -> list[Any]:
        return [self.model]


def test_result_is_on_the_input_grid_with_findings_and_provenance() -> None:
    vol = _volume()
    stages: list[tuple[float, str]] = []
    result = _Engine(ThresholdModel()).run(AnalysisRequest(vol, "test.threshold", "cpu"),
                                           progress=lambda f, s: stages.append((f, s)))
    assert result.labelmap.shape == vol.shape
    np.testing.assert_array_equal(result.labelmap, vol.array > 0)
    (structure,) = result.findings.structures
    assert structure.voxels == int((vol.array > 0).sum())
    assert structure.volume_ml == pytest.approx(structure.voxels * vol.voxel_volume_ml)
    assert result.provenance.model_id == "test.threshold" and result.provenance.device == "cpu"
    assert result.provenance.timings_s["total"] >= result.provenance.timings_s["model"]
    assert stages[0][0] == 0.0 and stages[-1] == (1.0, "done")
    assert [f for f, _ in stages] == sorted(f for f, _ in stages)
    lab_vol = result.labelmap_volume()
    np.testing.assert_array_equal(lab_vol.affine, vol.affine)


def test_wrong_modality_and_unknown_model_are_clear_errors() -> None:
    engine = _Engine(ThresholdModel())
    with pytest.raises(ModelError, match="for CT images, not MR"):
        engine.run(AnalysisRequest(_volume("MR"), "test.threshold", "cpu"))
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        engine.run(AnalysisRequest(_volume(), "nope", "cpu"))


def test_a_label_map_off_the_input_grid_is_refused() -> None:
    with pytest.raises(ModelError, match="not the volume's"):
        _Engine(ThresholdModel(shape_bug=True)).run(AnalysisRequest(_volume(), "test.threshold", "cpu"))


def test_cancel_from_another_thread_stops_at_the_next_stage() -> None:
    token = CancelToken()

    def progress(fraction: float, stage: str) -> None:
        if stage == "thresholding":
            token.cancel()

    with pytest.raises(CancelledError):
        _Engine(ThresholdModel()).run(AnalysisRequest(_volume(), "test.threshold", "cpu"), progress, token)


def test_device_choice_is_explicit() -> None:
    import torch

    from inference.device import choose_device

    assert choose_device("cpu").device == "cpu"
    auto = choose_device("auto")
    assert auto.device.startswith("cuda") == torch.cuda.is_available()
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no usable CUDA device"):
            choose_device("cuda")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")


def test_builtin_model_is_listed_for_ct_only(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "models")
    ct = [m.id for m in engine.models("CT")]
    assert "builtin.ct" in ct
    assert "builtin.ct" not in [m.id for m in engine.models("MR")]
