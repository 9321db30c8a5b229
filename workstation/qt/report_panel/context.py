"""Where a finding link of the report points in the viewer; the report's context comes from the services.

``ReportContext`` (the study a report is written for) and the helpers around
it live in ``workstation.services.report_context``, built there from the study
index; they are re-exported here for the panel's modules. ``link_target`` turns
a grounding ``FindingLink`` into the ``FindingTarget`` the viewer navigates to.
Nothing here imports torch.
"""

from __future__ import annotations

import logging
from typing import Literal

from inference.contract import AnalysisResult
from inference.drafting import FindingLink
from workstation.qt.panels.targets import FindingTarget, lesion_target, structure_target
from workstation.services.report_context import ReportContext, check_section, preferred_link

logger = logging.getLogger(__name__)

__all__ = ["ReportContext", "check_section", "link_target", "preferred_link"]


def link_target(link: FindingLink, result: AnalysisResult | None) -> FindingTarget | None:
    """The viewer target of a link: the finding's own box when the result has it, else a point at its centroid."""
    if link.centroid_lps is None:
        return None
    if result is not None:
        parts = link.key.split(":")
        found = result.findings
        if parts[0] == "lesion" and len(parts) == 3:
            for les in found.lesions:
                if les.name == parts[1] and str(les.number) == parts[2]:
                    return lesion_target(les, result.labelmap, result.request.volume.spacing)
        name = parts[1] if parts[0] == "structure" and len(parts) == 2 else (
            parts[2] if parts[0] == "measurement" and len(parts) == 3 else "")
        for st in found.structures:
            if name and st.name == name:
                return structure_target(st, result.labelmap.shape)
    index = link.centroid_index or (0.0, 0.0, 0.0)
    voxel = (round(index[0]), round(index[1]), round(index[2]))
    kind: Literal["structure", "lesion"] = "lesion" if link.kind == "lesion" else "structure"
    return FindingTarget(kind, link.name, link.label or 0, voxel, index, link.centroid_lps, voxel, voxel)
