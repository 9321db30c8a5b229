"""NIfTI export of the label map (research use), with its label table as a JSON sidecar.

The voxels are laid out as dcm2niix lays out the source series
(``workstation.dicomio.nifti.write_nifti``), so the label map overlays a
dcm2niix conversion of the same series without resampling. NIfTI holds no
patient identity; the sidecar holds label names, values, colours and codes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.contract import AnalysisResult
from workstation.dicomio.nifti import write_nifti
from workstation.export.files import safe_target, write_atomic

logger = logging.getLogger(__name__)


def sidecar_path(path: Path) -> Path:
    """``labelmap.nii.gz`` -> ``labelmap.labels.json``."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".labels.json")


def write_labelmap_nifti(result: AnalysisResult, path: str | Path, protect: Sequence[str | Path] = ()) -> Path:
    """Write the label map (smallest unsigned integer type) and ``<name>.labels.json`` beside it."""
    target = safe_target(path, protect)
    labels = np.asarray(result.labelmap)
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32
    volume = result.request.volume.with_array(labels.astype(dtype, copy=False), note="label map")
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else ".nii"
    write_atomic(target, lambda tmp: write_nifti(volume, tmp.with_name(tmp.name + suffix)).replace(tmp))
    meta = {"labels": result.label_table.to_list(), "provenance": result.provenance.to_dict(),
            "notes": list(result.request.volume.notes)}
    side = safe_target(sidecar_path(target), protect)
    data = json.dumps(meta, indent=1).encode("utf-8")
    write_atomic(side, lambda tmp: tmp.write_bytes(data))
    logger.info("wrote label map NIfTI %s", target.name)
    return target
