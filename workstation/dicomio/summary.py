"""What a series is, decided from its headers alone (no pixels read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from inference.errors import WorkstationError
from workstation.dicomio.headers import InstanceHeader
from workstation.dicomio.series import document_type, instance_kind
from workstation.dicomio.volume_builder import plan_series

logger = logging.getLogger(__name__)


@dataclass
class SeriesSummary:
    """Kind, size and QA of a series, as shown by ``import --json`` and ``qa``."""

    kind: str
    instances: int
    volumes: int = 0
    shape: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    reason: str = ""
    qa: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "kind": self.kind,
            "instances": self.instances,
            "volumes": self.volumes,
            "shape": list(self.shape) if self.shape else None,
            "spacing_mm": [round(s, 4) for s in self.spacing] if self.spacing else None,
            "reason": self.reason,
            "qa": self.qa,
        }


def summarize_series(headers: list[InstanceHeader], label: str = "series") -> SeriesSummary:
    """Classify a series: volume, multi_volume, single_image, localizer, document..."""
    kinds = {instance_kind(h) for h in headers}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    if kind == "document":
        types = sorted({document_type(h) for h in headers})
        return SeriesSummary("document", len(headers), reason="/".join(types))
    if kind != "image":
        return SeriesSummary(kind, len(headers))
    try:
        plan = plan_series(headers, label)
    except WorkstationError as exc:
        return SeriesSummary("not_volume", len(headers), reason=str(exc))
    g = plan.volumes[0]
    first = g.planes[0]
    shape = (g.target_count, first.rows, first.columns)
    spacing = (g.spacing, first.pixel_spacing[0], first.pixel_spacing[1])
    return SeriesSummary(plan.kind, len(headers), len(plan.volumes), shape, spacing, qa=plan.qa.to_list())
