"""Measured findings: the numbers a report may quote, each tied to where it was measured.

Every value carries its unit; every location is in LPS mm (and voxel index), and
a laterality derived from that position, so a drafted report can be checked
against them number by number.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

UNIT_TEXT = {"cm2": "cm²", "mm2": "mm²", "cm3": "cm³", "mm3": "mm³"}
"""Measurement units as stored (UCUM-like ASCII, as DICOM SR codes them) -> as a reader sees them."""


def unit_text(unit: str) -> str:
    """A unit as printed on screen and paper: ``cm2`` -> ``cm²`` (others unchanged)."""
    return UNIT_TEXT.get(unit, unit)


def lesion_volume_text(volume_ml: float) -> str:
    """A lesion's volume as reports give it, in mm³ (nodule volumetry's unit): 5.558 mL -> ``5558 mm³``.

    Organs and tissues are given in mL; the report text, the PDF and the findings panel all
    follow this one rule, so a nodule never reads "5558 mm³" in one place and "5.56 mL" in another.
    """
    return f"{math.floor(volume_ml * 1000.0 + 0.5):d} mm³"  # half away from zero, as the report rounds


@dataclass
class StructureFinding:
    """One labelled structure: how big, how dense, where."""

    label: int
    name: str
    voxels: int
    volume_ml: float
    mean: float | None
    std: float | None
    units: str
    bbox_min_index: tuple[int, int, int]
    bbox_max_index: tuple[int, int, int]
    centroid_index: tuple[float, float, float]
    centroid_lps: tuple[float, float, float]
    side: str


@dataclass
class Lesion:
    """One connected component of a lesion label (e.g. a lung nodule candidate)."""

    label: int
    name: str
    number: int
    voxels: int
    volume_ml: float
    mean: float | None
    units: str
    centroid_index: tuple[float, float, float]
    centroid_lps: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float
    long_axis_3d_mm: float
    short_axis_3d_mm: float
    axial_slice: int
    side: str
    location: str = ""
    # The image a radiologist goes to: the source series' SeriesNumber and the
    # DICOM InstanceNumber of the source image nearest the centre along the slice
    # normal (None when the source does not say). Never a zero-based index.
    series_number: int | None = None
    instance_number: int | None = None
    # Where in the lung: lobe when a lobe model labelled it, else zone
    # ("right upper zone, peripheral"); empty outside the lungs.
    zone: str = ""


@dataclass
class Measurement:
    """A named quantity (e.g. "%LAA-950, right lung") with its unit and any caution."""

    name: str
    value: float
    unit: str
    structure: str = ""
    side: str = ""
    method: str = ""
    caution: str = ""


@dataclass
class Findings:
    """Everything measured on one analysis."""

    structures: list[StructureFinding] = field(default_factory=list)
    lesions: list[Lesion] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    cautions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "structures": [asdict(s) for s in self.structures],
            "lesions": [asdict(x) for x in self.lesions],
            "measurements": [asdict(m) for m in self.measurements],
            "cautions": list(self.cautions),
        }

    def measurement(self, name: str) -> Measurement | None:
        """The measurement with this name, if any."""
        return next((m for m in self.measurements if m.name == name), None)

    def structure(self, name: str) -> StructureFinding | None:
        """The structure with this name, if any."""
        return next((s for s in self.structures if s.name == name), None)


def side_of(x_lps: float, midline_mm: float = 0.0, tolerance_mm: float = 10.0) -> str:
    """Laterality from an LPS x coordinate: +x is the patient's left."""
    if x_lps > midline_mm + tolerance_mm:
        return "left"
    if x_lps < midline_mm - tolerance_mm:
        return "right"
    return "midline"
