"""The error hierarchy shared by the engine and the application.

Every failure a user can meet is one of these, so the application can catch
``WorkstationError`` in one place and show ``str(error)``: each message names the
file or series concerned and the reason.
"""

from __future__ import annotations

from pathlib import Path


class WorkstationError(Exception):
    """Base of every error the workstation reports to a user."""


class UnreadableFileError(WorkstationError):
    """A file could not be read as DICOM (not DICOM, truncated, undecodable pixels)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotAVolumeError(WorkstationError):
    """A series exists but cannot form an image volume (documents, single localizers...)."""


class GeometryError(WorkstationError):
    """The slices' geometry is inconsistent or was refused (e.g. non-uniform spacing)."""


class InterpolatedSeriesError(GeometryError):
    """Analysis refused: too many of a series' slices would be made up by interpolation between source slices.

    ``interpolated`` of ``total`` grid slices lie away from every acquired slice;
    the message names the series and the largest gaps. The user may override.
    """

    def __init__(self, message: str, *, interpolated: int, total: int) -> None:
        self.interpolated = interpolated
        self.total = total
        super().__init__(message)


class ModelError(WorkstationError):
    """A model could not be loaded or failed while running."""
