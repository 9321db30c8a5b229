"""Coded concepts the exports use: segment categories and types, measurement names, UCUM units.

Label tables carry a SNOMED CT code per label where the model knows one; a
label without a code is exported as category and type "Tissue" (SCT 85756007),
with its name as the segment label, so the object stays valid and the name is
never lost. Local concepts (no standard code exists, e.g. %LAA-950) use the
private coding scheme ``99RWS`` (PS3.16 8.2: ``99`` prefix for local schemes).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from inference.labels import Label

logger = logging.getLogger(__name__)

LOCAL_SCHEME = "99RWS"

TISSUE = ("85756007", "SCT", "Tissue")
ANATOMICAL_STRUCTURE = ("91723000", "SCT", "Anatomical Structure")
ALTERED_STRUCTURE = ("49755003", "SCT", "Morphologically Altered Structure")
# Types that are tissues rather than organs: their category is "Tissue".
_TISSUE_TYPES = {"55603005", "256674009", "14016003", "91727004", "71616004", "3138006", "85756007"}

VOLUME = ("118565006", "SCT", "Volume")
AREA = ("42798000", "SCT", "Area")
LONG_AXIS = ("103339001", "SCT", "Long axis")
SHORT_AXIS = ("103340004", "SCT", "Short axis")
ATTENUATION = ("112031", "DCM", "Attenuation Coefficient")
MEAN = ("373098007", "SCT", "Mean")
DIAMETER_3D = ("81827009", "SCT", "Diameter")

UCUM = {
    "mL": ("mL", "UCUM", "milliliter"),
    "ml": ("mL", "UCUM", "milliliter"),
    "mm": ("mm", "UCUM", "millimeter"),
    "cm": ("cm", "UCUM", "centimeter"),
    "cm2": ("cm2", "UCUM", "square centimeter"),
    "mm2": ("mm2", "UCUM", "square millimeter"),
    "HU": ("[hnsf'U]", "UCUM", "Hounsfield unit"),
    "%": ("%", "UCUM", "percent"),
    "d": ("d", "UCUM", "day"),
    "": ("1", "UCUM", "no units"),
}

PROCEDURES = {
    "CT": ("77477000", "SCT", "Computed tomography"),
    "MR": ("113091000", "SCT", "Magnetic resonance imaging"),
    "PT": ("82918005", "SCT", "Positron emission tomography"),
}
IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging procedure")


def concept(code: tuple[str, str, str]) -> Any:
    """A highdicom ``CodedConcept`` from ``(value, scheme, meaning)``."""
    import highdicom as hd

    return hd.sr.CodedConcept(value=code[0], scheme_designator=code[1], meaning=code[2][:64])


def local(meaning: str) -> tuple[str, str, str]:
    """A code in the local scheme for a concept without a standard code (value derived from the meaning)."""
    value = re.sub(r"[^A-Za-z0-9]+", "-", meaning).strip("-").upper()[:16] or "UNNAMED"
    return (value, LOCAL_SCHEME, meaning)


def unit(symbol: str) -> tuple[str, str, str]:
    """The UCUM code of a unit as the findings write it; unknown units pass through as UCUM annotations."""
    if symbol in UCUM:
        return UCUM[symbol]
    logger.warning("no UCUM code known for unit %r; writing it as an annotation", symbol)
    return ("{" + symbol + "}", "UCUM", symbol)


def segment_codes(label: Label) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """(category, type) of a label's segment: lesions are altered structures, tissues tissues, else anatomy."""
    if label.code is None:
        return (ALTERED_STRUCTURE if label.lesion else TISSUE), TISSUE
    kind = (label.code.value, label.code.scheme, label.code.meaning)
    if label.lesion:
        return ALTERED_STRUCTURE, kind
    if label.code.scheme in ("SCT", "SRT") and label.code.value in _TISSUE_TYPES:
        return TISSUE, kind
    return ANATOMICAL_STRUCTURE, kind


def procedure(modality: str) -> tuple[str, str, str]:
    """The procedure reported in a measurement report, from the modality."""
    return PROCEDURES.get(modality.upper(), IMAGING_PROCEDURE)


def declare_local_scheme(ds: Any) -> None:
    """Name the local coding scheme in the object's Coding Scheme Identification Sequence (PS3.3 C.12.1.1.5)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "radiology-workstation local concepts"
    item.CodingSchemeResponsibleOrganization = "radiology-workstation"
    existing = [x for x in ds.get("CodingSchemeIdentificationSequence", []) if x.CodingSchemeDesignator != LOCAL_SCHEME]
    ds.CodingSchemeIdentificationSequence = [*existing, item]
