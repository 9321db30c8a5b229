"""The headless engine and the data contract shared with the application.

Importing this package never imports torch, MONAI or transformers: they load
lazily inside the model adapters, so the GUI starts fast.
"""

from inference.errors import (
    GeometryError,
    ModelError,
    NotAVolumeError,
    UnreadableFileError,
    WorkstationError,
)
from inference.volume import LPS_TO_RAS, Volume, affine_from_geometry

__all__ = [
    "LPS_TO_RAS",
    "GeometryError",
    "ModelError",
    "NotAVolumeError",
    "UnreadableFileError",
    "Volume",
    "WorkstationError",
    "affine_from_geometry",
]
