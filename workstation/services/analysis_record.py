"""Reusing an earlier analysis of the same series: a record written beside its outputs, checked before reuse.

``workstation report`` runs the analysis, or reuses one already in its output
folder. An analysis is reused only when the folder holds ``labels.nii.gz`` and
``findings.json`` (as ``write_outputs`` writes them) together with
``analysis_source.json``, the record written here, and every check passes:

- the same series: its series key (study UID, series UID and number, geometry)
  and a digest of its SOP Instance UIDs, so a series that gained or lost
  images is analysed again;
- the same model: id and version (a new model version re-runs);
- the same files: SHA-256 of ``labels.nii.gz`` and ``findings.json`` as
  recorded, so outputs overwritten since (by ``analyze`` with another model,
  by hand) are not mixed with a stale record;
- the same grid: the label map's NIfTI shape and affine equal the series'
  volume as loaded now.

The same record guards the analysis store (``workstation.services.analysis_store``),
where every analysis (command line and window) is kept per series and model;
outputs without a record are analysed again rather than trusted on their file
names alone. Nothing here logs patient data: keys and digests only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from inference.contract import AnalysisProvenance, AnalysisRequest, AnalysisResult
from inference.findings import Findings, Lesion, Measurement, StructureFinding
from inference.labels import Code, Label, LabelTable
from inference.volume import Volume
from workstation.dicomio.series import series_key
from workstation.services.studies import SeriesSource

logger = logging.getLogger(__name__)

RECORD_FILE = "analysis_source.json"
LABELS_FILE = "labels.nii.gz"
FINDINGS_FILE = "findings.json"
RECORD_VERSION = 2  # 2: lesions name their source image (series_number, instance_number)
AFFINE_TOL_MM = 1e-3


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def series_identity(source: SeriesSource) -> dict[str, str]:
    """The series key of ``source`` and a digest of its instances (SOP Instance UIDs, else file refs)."""
    uids = sorted(h.sop_instance_uid or h.ref for h in source.headers)
    return {"series_key": series_key(source.headers[0]),
            "instances_sha256": hashlib.sha256("\n".join(uids).encode("utf-8")).hexdigest()}


def record_analysis(out_dir: Path, source: SeriesSource, result: AnalysisResult) -> Path:
    """Write ``analysis_source.json`` for the outputs ``write_outputs`` just wrote into ``out_dir``."""
    prov = result.provenance
    record = {"record_version": RECORD_VERSION, **series_identity(source), "model_id": prov.model_id,
              "model_version": prov.model_version, "shape": list(result.labelmap.shape),
              "labels_sha256": _sha256_file(out_dir / LABELS_FILE),
              "findings_sha256": _sha256_file(out_dir / FINDINGS_FILE)}
    path = out_dir / RECORD_FILE
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


def load_recorded_analysis(out_dir: Path, source: SeriesSource, model_id: str, model_version: str,
                           volume: Volume, *, where: str = "the output folder") -> AnalysisResult | None:
    """The analysis recorded in ``out_dir`` if it is of this series, model and grid (see the module docstring).

    ``where`` names the folder in the note the reused result carries ("the output folder", "the analysis store").
    """
    why = _mismatch(out_dir, source, model_id, model_version)
    if why:
        logger.info("analysis in %s not reused: %s", out_dir, why)
        return None
    try:
        labelmap = _read_labelmap(out_dir / LABELS_FILE, volume)
        data = json.loads((out_dir / FINDINGS_FILE).read_text(encoding="utf-8"))
        table = label_table_from_list(data["labels"])
        findings = findings_from_dict(data["findings"])
        prov = provenance_from_dict(data["provenance"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.info("analysis in %s not reused: %s", out_dir, exc)
        return None
    if labelmap is None:
        logger.info("analysis in %s not reused: label map grid differs from the series", out_dir)
        return None
    prov.notes.append(f"analysis reused from {FINDINGS_FILE} in {where} (same series, model and grid)")
    request = AnalysisRequest(volume, model_id, prov.device)
    return AnalysisResult(request, labelmap, table, findings, prov)


def _mismatch(out_dir: Path, source: SeriesSource, model_id: str, model_version: str) -> str:
    """Why the recorded analysis cannot be reused ("" when it can, as far as the record tells)."""
    path = out_dir / RECORD_FILE
    if not path.is_file():
        return "no analysis record"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable record ({exc})"
    if not isinstance(record, dict) or record.get("record_version") != RECORD_VERSION:
        return "record of another version"
    identity = series_identity(source)
    if record.get("series_key") != identity["series_key"]:
        return "another series"
    if record.get("instances_sha256") != identity["instances_sha256"]:
        return "the series' images changed"
    if (record.get("model_id"), record.get("model_version")) != (model_id, model_version):
        return f"made by {record.get('model_id')} {record.get('model_version')}, not {model_id} {model_version}"
    for name, key in ((LABELS_FILE, "labels_sha256"), (FINDINGS_FILE, "findings_sha256")):
        file = out_dir / name
        if not file.is_file() or _sha256_file(file) != record.get(key):
            return f"{name} missing or changed since the analysis"
    return ""


def _read_labelmap(path: Path, volume: Volume) -> np.ndarray[Any, Any] | None:
    """The label map in the volume's (slice, row, column) order, or None if its grid is not the volume's."""
    import nibabel as nib

    from workstation.dicomio.nifti import volume_from_nifti_layout

    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim != 3:
        return None
    array, affine = volume_from_nifti_layout(data, np.asarray(img.affine, dtype=np.float64))
    if array.shape != volume.shape or not np.allclose(affine, volume.affine, atol=AFFINE_TOL_MM):
        return None
    return array


def _triple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def findings_from_dict(data: dict[str, Any]) -> Findings:
    """The inverse of ``Findings.to_dict`` (as stored in ``findings.json``)."""
    def fix(item: dict[str, Any]) -> dict[str, Any]:
        return {k: _triple(v) for k, v in item.items()}

    return Findings(structures=[StructureFinding(**fix(s)) for s in data.get("structures", [])],
                    lesions=[Lesion(**fix(x)) for x in data.get("lesions", [])],
                    measurements=[Measurement(**m) for m in data.get("measurements", [])],
                    cautions=[str(c) for c in data.get("cautions", [])])


def label_table_from_list(items: list[dict[str, Any]]) -> LabelTable:
    """The inverse of ``LabelTable.to_list``."""
    labels = []
    for item in items:
        code = item.get("code")
        labels.append(Label(int(item["value"]), str(item["name"]), tuple(item["color"]),
                            Code(str(code["value"]), str(code["scheme"]), str(code["meaning"])) if code else None,
                            bool(item.get("lesion", False))))
    return LabelTable(tuple(labels))


def provenance_from_dict(data: dict[str, Any]) -> AnalysisProvenance:
    """The inverse of ``AnalysisProvenance.to_dict``."""
    return AnalysisProvenance(str(data["model_id"]), str(data["model_version"]), str(data["device"]),
                      str(data["device_name"]), bool(data.get("amp", False)),
                      {str(k): float(v) for k, v in data.get("timings_s", {}).items()},
                      [str(n) for n in data.get("notes", [])])
