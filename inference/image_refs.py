"""The image a radiologist goes to: SeriesNumber and InstanceNumber of the acquired image nearest a point.

Code indexes a volume's grid from 0 in the order the slices lie along the
normal; a radiologist goes to "series 2, image 78": the source series'
SeriesNumber and the DICOM InstanceNumber of the acquired image. The two differ
in origin (0 or 1), in direction (InstanceNumbers often run from the top down)
and in gaps, so a grid index never reaches a user: every slice a user sees
(report, PDF, montage, SR, findings panel, viewer) is named through
``image_ref`` here, from the ``SourceImages`` a DICOM loader records in
``Volume.source``.

Nearest is by position along the slice normal (``SourceImage.position_mm``), so
it holds when the volume was resampled (gantry tilt, gaps, uneven spacing: the
grid then has slices no scanner made, and each maps to the nearest acquired
image) and whatever order or gaps the InstanceNumbers have.

A point exactly half-way between two images (a centroid between two slices,
as a symmetric nodule has) goes to the image through grid slice ``round(c)``,
``c`` its continuous slice coordinate from ``Volume.lps_to_index`` (rounding half
to even, as ``numpy.rint`` does), which is the slice the viewer shows when it
goes to the point (``MprViewer.go_to_lps``) and the key image the montage and
PDF show (``lesion_slice``): all name the same image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from inference.findings import Lesion
from inference.volume import SourceImage, Volume

logger = logging.getLogger(__name__)

ON_PLANE_MM = 0.01  # a grid slice this close to an acquired plane is that plane (DICOM decimal strings)
TIE_MM = 0.01  # two images this close to equally near are a tie, broken as the module docstring says
Style = Literal["short", "long"]


@dataclass(frozen=True)
class ImageRef:
    """The acquired image nearest a query, and how far from it (along the normal) the query lies."""

    series_number: int | None
    image: SourceImage
    distance_mm: float

    @property
    def instance_number(self) -> int | None:
        """The image's InstanceNumber (None when the source does not say)."""
        return self.image.instance_number

    @property
    def on_plane(self) -> bool:
        """Whether the query lies on the acquired plane itself (not on a resampled slice between planes)."""
        return self.distance_mm <= ON_PLANE_MM

    def text(self, style: Style = "short") -> str:
        """``Se 2 Im 78`` (short) or ``series 2, image 78`` (long); see ``image_text``."""
        return image_text(self.series_number, self.image.instance_number, self.image.frame, style)


def image_text(series_number: int | None, instance_number: int | None, frame: int | None = None,
               style: Style = "short") -> str:
    """How a user reads an image reference.

    Short (viewer corners, tables): ``Se 2 Im 78``; long (captions, sentences):
    ``series 2, image 78``. A frame of an enhanced multi-frame object adds
    ``Fr 37`` / ``frame 37``. A part the source does not give is left out
    (``Im 78`` without a SeriesNumber); "" when the image cannot be named at all.
    """
    if instance_number is None and frame is None:
        return ""
    names = ("Se", "Im", "Fr") if style == "short" else ("series", "image", "frame")
    parts = [(names[0], series_number), (names[1], instance_number), (names[2], frame)]
    sep = " " if style == "short" else ", "
    return sep.join(f"{name} {value}" for name, value in parts if value is not None)


def image_ref(volume: Volume, *, point: npt.ArrayLike | None = None,
              slice_index: float | None = None) -> ImageRef | None:
    """The acquired image nearest an LPS ``point`` or a (continuous) grid ``slice_index`` along array axis 0.

    Give exactly one of them. None when the volume does not know its source
    images (not loaded from DICOM).
    """
    if (point is None) == (slice_index is None):
        raise ValueError("give either point or slice_index")
    source = volume.source
    if source is None or not source.images:
        return None
    normal = np.asarray(source.normal, dtype=np.float64)
    if point is not None:
        p = np.asarray(point, dtype=np.float64).reshape(3)
        c = float(volume.lps_to_index(p)[0])
    else:
        c = float(slice_index)  # type: ignore[arg-type]
        p = volume.index_to_lps([c, 0.0, 0.0])
    target = float(p @ normal)
    positions = source.positions
    dist = np.abs(positions - target)
    best = np.flatnonzero(dist <= dist.min() + TIE_MM)
    if len(best) > 1:
        k = round(c)
        at_k = float(volume.index_to_lps([float(k), 0.0, 0.0]) @ normal)
        best = best[np.argsort(np.abs(positions[best] - at_k), kind="stable")]
    i = int(best[0])
    return ImageRef(source.series_number, source.images[i], float(dist[i]))


def slice_ref(volume: Volume, slice_index: int) -> ImageRef | None:
    """The acquired image nearest grid slice ``slice_index`` (array axis 0)."""
    return image_ref(volume, slice_index=float(slice_index))


def slice_text(volume: Volume, slice_index: int, style: Style = "short") -> str:
    """What a user is told grid slice ``slice_index`` is: ``Se 2 Im 78`` / ``series 2, image 78``.

    A resampled slice that lies between acquired planes says so:
    ``Se 2 Im 78 (nearest)``. "" when the volume does not know its source images.
    """
    ref = slice_ref(volume, slice_index)
    if ref is None:
        return ""
    text = ref.text(style)
    return text if not text or ref.on_plane else f"{text} (nearest)"


def lesion_ref(volume: Volume, lesion: Lesion) -> ImageRef | None:
    """The acquired image nearest a lesion's centre (what ``Lesion.instance_number`` records)."""
    return image_ref(volume, point=lesion.centroid_lps)


def lesion_text(lesion: Lesion, style: Style = "short", volume: Volume | None = None) -> str:
    """A lesion's image as its findings record it (``Se 2 Im 78``); "" when not recorded.

    With the analysed ``volume``, a frame of an enhanced multi-frame object is named too
    (``Se 3 Im 1 Fr 37``): every frame of such an object shares one InstanceNumber.
    """
    frame = None
    if volume is not None:
        ref = lesion_ref(volume, lesion)
        if ref is not None and ref.instance_number == lesion.instance_number:
            frame = ref.image.frame
    return image_text(lesion.series_number, lesion.instance_number, frame, style)


def grid_slice(volume: Volume, image: SourceImage) -> int:
    """The grid slice (array axis 0) nearest an acquired image: the image itself unless resampled."""
    source = volume.source
    normal = np.asarray(source.normal if source is not None else volume.direction[:, 0], dtype=np.float64)
    start = float(volume.index_to_lps([0.0, 0.0, 0.0]) @ normal)
    step = float(volume.affine[:3, 0] @ normal)
    if abs(step) < 1e-9:
        return 0
    return min(max(round((image.position_mm - start) / step), 0), volume.shape[0] - 1)


def lesion_slice(volume: Volume, lesion: Lesion) -> int:
    """The grid slice that shows a lesion's image: through its centre, or nearest its acquired image."""
    ref = lesion_ref(volume, lesion)
    if ref is None:
        return min(max(round(float(volume.lps_to_index(lesion.centroid_lps)[0])), 0), volume.shape[0] - 1)
    return grid_slice(volume, ref.image)
