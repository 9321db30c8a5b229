"""Measured findings: what a label map says, in numbers a report may quote.

- ``model``: the records (``Findings``, ``StructureFinding``, ``Lesion``,
  ``Measurement``) with their JSON form, ``side_of`` and the unit wording.
- ``zones``: lobe or zone and central/peripheral of each lung lesion, and the
  phrases a report uses for them (``Zone``, ``parse_zone``, ``lung_part``).
- ``measure``: ``compute_findings``, the entry from a label map to ``Findings``.
- ``lesions`` and ``geometry``: one lesion at a time (components, diameters).

Importing this package stays light (numpy only): ``measure``, ``lesions`` and
``geometry`` need SciPy, so ``compute_findings`` is imported from
``inference.findings.measure`` where an analysis runs.
"""

from inference.findings.model import (
    UNIT_TEXT,
    Findings,
    Lesion,
    Measurement,
    StructureFinding,
    lesion_volume_text,
    side_of,
    unit_text,
)
from inference.findings.zones import LungPart, Zone, coverage_caution, cut_lungs, lung_part, parse_zone

__all__ = [
    "UNIT_TEXT",
    "Findings",
    "Lesion",
    "LungPart",
    "Measurement",
    "StructureFinding",
    "Zone",
    "coverage_caution",
    "cut_lungs",
    "lesion_volume_text",
    "lung_part",
    "parse_zone",
    "side_of",
    "unit_text",
]
