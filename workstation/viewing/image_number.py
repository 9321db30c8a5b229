"""Which image a view shows, in the words a radiologist looks it up by (no Qt here).

The view of a DICOM volume's acquisition plane (array axis 0: axial for an axial
series, sagittal for a sagittal one) names the acquired image nearest the
displayed slice, ``Se 2 Im 78`` (SeriesNumber and InstanceNumber, as the report,
PDF, montage and SR quote them; ``inference.image_refs``), with ``(nearest)``
when the slice was resampled between acquired planes. A reformatted plane has
no acquired image: it says ``MPR 128 / 256`` (1-based, in reading order), so it
cannot be mistaken for an image number; a volume not made from DICOM images
says ``Slice 79 / 120`` likewise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.image_refs import slice_text
from inference.volume import Volume

if TYPE_CHECKING:
    from workstation.viewing.orientation import PlaneGeometry


def plane_image_text(volume: Volume, geometry: PlaneGeometry, slice_index: int) -> str:
    """The corner text naming slice ``slice_index`` of the view with ``geometry``."""
    if geometry.normal == 0:
        text = slice_text(volume, slice_index, "short")
        if text:
            return text
    kind = "Slice" if geometry.normal == 0 else "MPR"
    return f"{kind} {geometry.display_number(slice_index)} / {geometry.n_slices}"


def acquired_image_text(volume: Volume, slice_index: int) -> str:
    """The acquired image nearest grid slice ``slice_index`` (array axis 0); "" when the volume does not say."""
    return slice_text(volume, slice_index, "short")
