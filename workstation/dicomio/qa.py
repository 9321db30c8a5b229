"""Series-level quality report: what was found about a stack and what was done."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)


class Status(StrEnum):
    """Outcome of one check."""

    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class QAItem:
    """One check: its name, outcome, what was found, and what the loader did about it."""

    check: str
    status: Status
    detail: str
    action: str = "none needed"


@dataclass
class SeriesQA:
    """All checks of one series, in a stable order."""

    items: list[QAItem] = field(default_factory=list)

    def add(self, check: str, status: Status, detail: str, action: str = "none needed") -> None:
        """Record one check."""
        self.items.append(QAItem(check, status, detail, action))

    @property
    def worst(self) -> Status:
        """The worst status of all checks."""
        order = [Status.OK, Status.WARNING, Status.ERROR]
        return max((i.status for i in self.items), key=order.index, default=Status.OK)

    def get(self, check: str) -> QAItem | None:
        """The item for ``check``, if recorded."""
        return next((i for i in self.items if i.check == check), None)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready list of checks."""
        return [asdict(i) for i in self.items]

    def format(self) -> str:
        """Human-readable table for the terminal."""
        width = max((len(i.check) for i in self.items), default=5)
        lines = [f"{i.check:<{width}}  {i.status.value:<7}  {i.detail}" + (
            f"  -> {i.action}" if i.action != "none needed" else "") for i in self.items]
        return "\n".join(lines)
