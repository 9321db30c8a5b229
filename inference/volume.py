"""The volume contract: a voxel array plus a 4x4 affine from voxel index to LPS millimetres.

One spatial convention holds everywhere in the application: DICOM patient
coordinates (LPS: +x towards the patient's left, +y posterior, +z superior).
The array is indexed ``[slice, row, column]`` like highdicom's ``Volume``; the
affine maps the homogeneous index ``(slice, row, column, 1)`` to LPS mm. RAS or
channel-first tensors appear only inside model adapters and the NIfTI writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError

logger = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """An image volume in real units with its LPS geometry.

    ``array`` holds real-world values (HU for CT) in the smallest dtype that holds
    them. ``notes`` records what the loader did to the data (resampling and why),
    so a reader can always tell a reconstructed grid from the scanner's own.
    """

    array: npt.NDArray[Any]
    affine: npt.NDArray[np.float64]
    modality: str = ""
    units: str = ""
    frame_of_reference_uid: str = ""
    notes: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise GeometryError(f"a volume needs a 3-D array, got shape {self.array.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise GeometryError(f"a volume needs a 4x4 affine, got shape {aff.shape}")
        if abs(np.linalg.det(aff[:3, :3])) < 1e-12:
            raise GeometryError("the volume's affine is singular")
        object.__setattr__(self, "affine", aff)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(slice, row, column)`` index axes."""
        n = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(n[0]), float(n[1]), float(n[2]))

    @property
    def direction(self) -> npt.NDArray[np.float64]:
        """Unit LPS direction of each index axis, as the columns of a 3x3 matrix."""
        m = self.affine[:3, :3]
        return np.asarray(m / np.linalg.norm(m, axis=0), dtype=np.float64)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def index_to_lps(self, index: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS mm of voxel indices ``(..., 3)`` given as ``(slice, row, column)``."""
        idx = np.asarray(index, dtype=np.float64)
        return np.asarray(idx @ self.affine[:3, :3].T + self.affine[:3, 3], dtype=np.float64)

    def lps_to_index(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous ``(slice, row, column)`` indices of LPS points ``(..., 3)``."""
        inv = np.linalg.inv(self.affine)
        pts = np.asarray(points, dtype=np.float64)
        return np.asarray(pts @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)

    def with_array(self, array: npt.NDArray[Any], note: str | None = None) -> Volume:
        """The same geometry around another array of the same shape (e.g. a label map)."""
        if array.shape != self.array.shape:
            raise GeometryError(f"array shape {array.shape} differs from volume {self.array.shape}")
        notes = self.notes + ((note,) if note else ())
        return replace(self, array=array, notes=notes)


def affine_from_geometry(
    origin: npt.ArrayLike,
    row_direction: npt.ArrayLike,
    column_direction: npt.ArrayLike,
    slice_direction: npt.ArrayLike,
    spacing: tuple[float, float, float],
) -> npt.NDArray[np.float64]:
    """Build the index->LPS affine from DICOM-style geometry.

    ``row_direction`` is the first triplet of ImageOrientationPatient (the
    direction in which the column index grows along a row); ``column_direction``
    the second (the direction in which the row index grows). ``spacing`` is
    ``(slice, row, column)`` in mm: row spacing is PixelSpacing[0].
    """
    aff = np.eye(4)
    aff[:3, 0] = np.asarray(slice_direction, dtype=np.float64) * spacing[0]
    aff[:3, 1] = np.asarray(column_direction, dtype=np.float64) * spacing[1]
    aff[:3, 2] = np.asarray(row_direction, dtype=np.float64) * spacing[2]
    aff[:3, 3] = np.asarray(origin, dtype=np.float64)
    return aff
