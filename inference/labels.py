"""Label tables: what each value of a label map means, with colour and standard code."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_SIDES = ("left", "right")


def readable_name(name: str, *, capitalize: bool = False) -> str:
    """A label name as a reader says it: ``lung_right`` -> ``right lung`` (``Right lung`` capitalised).

    Underscores become spaces and a ``left``/``right`` word moves to the front.
    The one rule for label names in the findings, the report, the exports and
    every panel (panels capitalise it).
    """
    words = [w for w in re.split(r"[_\s]+", name.strip().lower()) if w]
    side = next((w for w in words if w in _SIDES), None)
    if side is not None:
        words.remove(side)
        words.insert(0, side)
    text = " ".join(words)
    return text[:1].upper() + text[1:] if capitalize else text


@dataclass(frozen=True)
class Code:
    """A coded concept (e.g. SNOMED CT ``39607008`` "Lung"), used later by DICOM SEG/SR export."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class Label:
    """One label value of a label map.

    ``lesion`` marks labels whose connected components are reported one by one
    (nodule candidates), rather than as one structure.
    """

    value: int
    name: str
    color: tuple[int, int, int]
    code: Code | None = None
    lesion: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out: dict[str, Any] = {"value": self.value, "name": self.name, "color": list(self.color),
                               "lesion": self.lesion}
        if self.code is not None:
            out["code"] = {"value": self.code.value, "scheme": self.code.scheme, "meaning": self.code.meaning}
        return out


@dataclass(frozen=True)
class LabelTable:
    """The labels of one model's output (value 0 is always background and not listed)."""

    labels: tuple[Label, ...]

    def __post_init__(self) -> None:
        values = [lab.value for lab in self.labels]
        if len(set(values)) != len(values) or any(v <= 0 for v in values):
            raise ValueError(f"label values must be unique and positive: {values}")

    def __iter__(self) -> Iterator[Label]:
        return iter(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def by_value(self, value: int) -> Label | None:
        """The label with this value, if any."""
        return next((lab for lab in self.labels if lab.value == value), None)

    def by_name(self, name: str) -> Label | None:
        """The label with this name (case-insensitive), if any."""
        low = name.lower()
        return next((lab for lab in self.labels if lab.name.lower() == low), None)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready list."""
        return [lab.to_dict() for lab in self.labels]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelTable:
        """A table numbering ``names`` from 1 with distinct default colours."""
        return cls(tuple(Label(i, n, default_color(i)) for i, n in enumerate(names, start=1)))


_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
]


def default_color(value: int) -> tuple[int, int, int]:
    """A distinct colour for a label value."""
    return _PALETTE[(value - 1) % len(_PALETTE)]
