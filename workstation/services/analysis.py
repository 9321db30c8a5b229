"""Run an analysis on a series and write its outputs (label map, findings, key-slice montage).

Shared by ``workstation analyze``, ``workstation report`` and the analysis store
(``workstation.services.analysis_store``, which the window's results go to). The
label map is written on the source grid (NIfTI, dcm2niix layout) so it overlays
the series and any converter's output without resampling.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.cancel import CancelToken
from inference.contract import AnalysisRequest, AnalysisResult, ProgressCallback, no_progress
from inference.engine import Engine
from workstation.dicomio.interpolation import INTERPOLATION_KEY
from workstation.dicomio.nifti import write_nifti
from workstation.dicomio.volume_builder import SeriesVolumes
from workstation.index.db import StudyIndex
from workstation.key_images import write_montage
from workstation.services.analysis_record import record_analysis
from workstation.services.interpolation import InterpolationPolicy, run_checked
from workstation.services.remote_models import remote_models
from workstation.services.studies import SeriesSource, load_series_volumes, resolve_for_analysis
from workstation.settings import Settings

logger = logging.getLogger(__name__)


def make_engine(settings: Settings) -> Engine:
    """The engine, loading bundles from the configured models folder only, and the configured remote nodes."""
    return Engine(settings.models_path, remote=remote_models(settings))


@dataclass
class AnalysisOutputs:
    """Where ``write_outputs`` put each file."""

    labelmap: Path
    findings: Path
    montage: Path


def analyze_source(source: SeriesSource, engine: Engine, *, model_id: str, device: str = "auto",
                   options: dict[str, Any] | None = None, progress: ProgressCallback = no_progress,
                   cancel: CancelToken | None = None, policy: InterpolationPolicy | None = None,
                   loaded: SeriesVolumes | None = None) -> AnalysisResult:
    """Load the series (first volume of a multi-volume series) and run the model on it.

    The one analysis entry of the command line (``analyze``, ``report``) and
    the self-test. ``loaded`` is the series already read (``report`` reads it
    first, to look for an analysis to reuse). ``policy`` is the interpolation
    rule (default: refuse over 10 % interpolated slices):
    ``InterpolatedSeriesError`` when refused, the override recorded in the
    result when allowed.
    """
    if loaded is None:
        progress(0.0, "loading series")
        loaded = load_series_volumes(source)
    volume = loaded.volumes[0]
    request = AnalysisRequest(volume, model_id, device, options or {})
    result = run_checked(engine, request, label=source.label, policy=policy or InterpolationPolicy(),
                         progress=progress, cancel=cancel)
    if len(loaded.volumes) > 1:
        result.provenance.notes.append(
            f"series holds {len(loaded.volumes)} volumes (time points/echoes); analysed the first")
    return result


@dataclass(frozen=True)
class TargetAnalysis:
    """One finished ``analyze_target``: what was analysed, by which model, the result and its files."""

    source: SeriesSource
    model_title: str
    result: AnalysisResult
    outputs: AnalysisOutputs
    store_error: str = ""  # why the analysis store could not keep it ("" when it did)


def analyze_target(target: str, out_dir: Path, settings: Settings, *, model_id: str = "builtin.ct",
                   device: str = "auto", progress: ProgressCallback = no_progress,
                   allow_interpolated: bool = False) -> TargetAnalysis:
    """Analyse an index target (``study:ID``, a series, a folder) and keep the outputs.

    The ``analyze`` command and the storage listener's ``--analyze-into`` both
    run this, in their own process: the files go into ``out_dir`` with the
    record a later ``report --out`` reuses, and the analysis store keeps a copy
    for the window (a store that cannot be written is reported, not raised).
    """
    from workstation.services.analysis_store import AnalysisStore  # the store builds on this module

    engine = make_engine(settings)
    model = engine.get(model_id)
    with StudyIndex(settings.db_path) as index:
        source = resolve_for_analysis(target, index, tuple(model.modalities))
    result = analyze_source(source, engine, model_id=model_id, device=device, progress=progress,
                            policy=InterpolationPolicy(settings.max_interpolated_share, allow_interpolated))
    outputs = write_outputs(result, out_dir, source.label)
    record_analysis(out_dir, source, result)  # lets a later `workstation report --out` reuse this analysis
    try:  # and the window show it (and `report` reuse it wherever it writes)
        AnalysisStore.for_settings(settings).save(source, result, copy_from=out_dir)
    except OSError as exc:
        return TargetAnalysis(source, model.title, result, outputs, str(exc))
    return TargetAnalysis(source, model.title, result, outputs)


def write_outputs(result: AnalysisResult, out_dir: Path, source_label: str = "") -> AnalysisOutputs:
    """Write ``labels.nii.gz``, ``findings.json`` and ``montage.png`` into ``out_dir``."""
    labels, findings = write_analysis_files(result, out_dir, source_label)
    montage = write_montage(result, out_dir / "montage.png")
    return AnalysisOutputs(labels, findings, montage)


def write_analysis_files(result: AnalysisResult, out_dir: Path, source_label: str = "") -> tuple[Path, Path]:
    """Write ``labels.nii.gz`` and ``findings.json`` (what an analysis record covers) into ``out_dir``.

    The analysis store keeps these two only: the montage is a picture for the
    command line's output folder, not something the window reads back.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = write_nifti(result.labelmap_volume(), out_dir / "labels.nii.gz")
    volume = result.request.volume
    data = {
        "status": "AI draft: not verified by a radiologist",
        "series": source_label,
        "volume": {"shape": list(volume.shape), "spacing_mm": [round(s, 4) for s in volume.spacing],
                   "modality": volume.modality, "units": volume.units, "notes": list(volume.notes),
                   "interpolation": volume.metadata.get(INTERPOLATION_KEY)},
        **result.to_dict(),
    }
    findings = out_dir / "findings.json"
    findings.write_text(json.dumps(data, indent=2, default=_json_default), encoding="utf-8")
    return labels, findings


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
