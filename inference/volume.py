"""The volume contract: a voxel array plus a 4x4 affine from voxel index to LPS millimetres.

One spatial convention holds everywhere in the application: DICOM patient
coordinates (LPS: +x towards the patient's left, +y posterior, +z superior).
The array is indexed ``[slice, row, column]`` like highdicom's ``Volume``; the
affine maps the homogeneous index ``(slice, row, column, 1)`` to LPS mm. RAS or
channel-first tensors appear only inside model adapters and the NIfTI writer.

A volume loaded from DICOM also knows the images it was made from
(``Volume.source``): each acquired plane's position along the slice axis with
its InstanceNumber, SOP Instance UID and frame, and the series' SeriesNumber, so
that every place a user sees a slice can name the image a radiologist goes to
("series 2, image 78") rather than a grid index (``inference.image_refs``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError

logger = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

PATIENT_LETTERS: dict[tuple[int, int], str] = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A",
                                               (2, 1): "S", (2, -1): "I"}
"""(LPS axis, sign) -> the letter radiologists put on the image edge that direction points to."""


def direction_letter(direction: npt.ArrayLike) -> str:
    """The patient direction an LPS vector points to most: ``(1, 0.1, 0)`` -> "L", ``(0, 0, -1)`` -> "I"."""
    vec = np.asarray(direction, dtype=np.float64)
    axis = int(np.argmax(np.abs(vec)))
    return PATIENT_LETTERS[(axis, 1 if vec[axis] >= 0 else -1)]


@dataclass(frozen=True)
class SourceImage:
    """One acquired image plane a volume was made from.

    ``position_mm`` is the plane's ImagePositionPatient projected on the unit
    slice normal of its ``SourceImages`` (LPS mm, so it does not depend on the
    grid's origin). ``instance_number`` is the object's InstanceNumber (None when
    absent); ``frame`` the 1-based frame number inside an enhanced multi-frame
    object (None for single-frame objects and for the tiles of a mosaic, which
    are all the same instance).
    """

    position_mm: float
    instance_number: int | None
    sop_instance_uid: str = ""
    frame: int | None = None


@dataclass(frozen=True)
class SourceImages:
    """The acquired images of one volume, ordered along its slice normal, and their series' number.

    ``normal`` is the unit LPS direction the positions are measured along: the
    direction of the volume's slice axis (array axis 0). A resampled volume
    (tilt, gaps, uneven spacing) keeps the positions of the planes that were
    acquired, so its grid slices map to the nearest real image.
    """

    series_number: int | None
    normal: tuple[float, float, float]
    images: tuple[SourceImage, ...]

    def __post_init__(self) -> None:
        n = np.asarray(self.normal, dtype=np.float64)
        length = float(np.linalg.norm(n))
        if n.shape != (3,) or length < 1e-9:
            raise GeometryError(f"source images need a 3-vector normal, got {self.normal}")
        unit = n / length
        object.__setattr__(self, "normal", (float(unit[0]), float(unit[1]), float(unit[2])))
        object.__setattr__(self, "images", tuple(sorted(self.images, key=lambda im: im.position_mm)))

    @cached_property
    def positions(self) -> npt.NDArray[np.float64]:
        """``position_mm`` of every image, ascending (computed once; do not modify)."""
        return np.array([im.position_mm for im in self.images], dtype=np.float64)


@dataclass(frozen=True)
class Volume:
    """An image volume in real units with its LPS geometry.

    ``array`` holds real-world values (HU for CT) in the smallest dtype that holds
    them. ``notes`` records what the loader did to the data (resampling and why),
    so a reader can always tell a reconstructed grid from the scanner's own.
    ``source`` names the DICOM images the volume was made from (None when it
    was not made from DICOM images, e.g. a NIfTI file).
    """

    array: npt.NDArray[Any]
    affine: npt.NDArray[np.float64]
    modality: str = ""
    units: str = ""
    frame_of_reference_uid: str = ""
    notes: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    source: SourceImages | None = None

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
