"""The headless engine and the data contract shared with the application.

Importing this package never imports torch, MONAI or transformers: they load
lazily inside the model adapters, so the GUI starts fast. The names below load
on first use too, so a command that needs one module (``workstation convert``:
the errors and ``Volume``) does not load the analysis contract and findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from inference.cancel import CancelledError, CancelToken
    from inference.contract import (
        AnalysisProvenance,
        AnalysisRequest,
        AnalysisResult,
        DeviceChoice,
        Model,
        ModelOutput,
        ProgressCallback,
        RunContext,
        no_progress,
    )
    from inference.errors import (
        GeometryError,
        ModelError,
        NotAVolumeError,
        UnreadableFileError,
        WorkstationError,
    )
    from inference.findings import Findings, Lesion, Measurement, StructureFinding, side_of
    from inference.labels import Code, Label, LabelTable, default_color
    from inference.volume import LPS_TO_RAS, SourceImage, SourceImages, Volume, affine_from_geometry

__all__ = [
    "LPS_TO_RAS",
    "AnalysisProvenance",
    "AnalysisRequest",
    "AnalysisResult",
    "CancelToken",
    "CancelledError",
    "Code",
    "DeviceChoice",
    "Findings",
    "GeometryError",
    "Label",
    "LabelTable",
    "Lesion",
    "Measurement",
    "Model",
    "ModelError",
    "ModelOutput",
    "NotAVolumeError",
    "ProgressCallback",
    "RunContext",
    "SourceImage",
    "SourceImages",
    "StructureFinding",
    "UnreadableFileError",
    "Volume",
    "WorkstationError",
    "affine_from_geometry",
    "default_color",
    "no_progress",
    "side_of",
]

#: Where each exported name lives.
_HOMES = {
    **dict.fromkeys(("CancelledError", "CancelToken"), "inference.cancel"),
    **dict.fromkeys(("AnalysisProvenance", "AnalysisRequest", "AnalysisResult", "DeviceChoice", "Model",
                     "ModelOutput", "ProgressCallback", "RunContext", "no_progress"), "inference.contract"),
    **dict.fromkeys(("GeometryError", "ModelError", "NotAVolumeError", "UnreadableFileError", "WorkstationError"),
                    "inference.errors"),
    **dict.fromkeys(("Findings", "Lesion", "Measurement", "StructureFinding", "side_of"), "inference.findings"),
    **dict.fromkeys(("Code", "Label", "LabelTable", "default_color"), "inference.labels"),
    **dict.fromkeys(("LPS_TO_RAS", "SourceImage", "SourceImages", "Volume", "affine_from_geometry"),
                    "inference.volume"),
}


__getattr__ = lazy_getattr(__name__, _HOMES, globals())
