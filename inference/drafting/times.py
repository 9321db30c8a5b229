"""Dates and times written in report text: "2025-11-06", "6 November 2025", "366 days", "6-12 months".

The comparison's grounding check (``inference.drafting.grounding_comparison``)
verifies them against the comparison record. Times are converted to days
with the rounding they show ("12 months" = 11.5-12.5 months); a number joined
to its unit by a hyphen ("68-year-old") and ages ("68 years old") are not
times; ``inference.drafting.quantities`` leaves all of these alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date

from inference.drafting.quantities import parse_number

logger = logging.getLogger(__name__)

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_RE = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
DATE = re.compile(rf"\b(\d{{4}})-(\d{{1,2}})-(\d{{1,2}})\b|\b(\d{{1,2}})\s+{_MONTH_RE}\s+(\d{{4}})\b|"
                  rf"\b{_MONTH_RE}\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.IGNORECASE)
_TIME = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s+(days?|weeks?|months?|years?)"
                   r"\b(?!\s*(?:old|of\s+age))", re.IGNORECASE)
_DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12.0, "year": 365.25}


@dataclass(frozen=True)
class TimeSpan:
    """A written time ("12 months", "6-12 months") in days, with the rounding it shows."""

    text: str
    start: int
    end: int
    values: tuple[float, ...]
    tolerances: tuple[float, ...]

    def matches(self, days: float) -> bool:
        """Whether ``days`` agrees with the (one) value, or lies in the written range."""
        if len(self.values) == 2:
            return self.values[0] - self.tolerances[0] <= days <= self.values[1] + self.tolerances[1]
        return abs(days - self.values[0]) <= self.tolerances[0] + 1e-9

    def same_as(self, other: TimeSpan) -> bool:
        """Whether ``other`` writes the same number(s) (for quoting a text)."""
        return len(self.values) == len(other.values) and all(
            abs(a - b) <= max(t, u) + 1e-9
            for a, b, t, u in zip(self.values, other.values, self.tolerances, other.tolerances, strict=True))


def find_times(text: str) -> list[TimeSpan]:
    """Every time quantity of ``text`` (days, weeks, months, years), in days."""
    out = []
    for m in _TIME.finditer(text):
        unit = m.group(3).lower().rstrip("s")
        factor = _DAYS[unit]
        nums = [parse_number(g) for g in (m.group(1), m.group(2)) if g is not None]
        out.append(TimeSpan(m.group(0), m.start(), m.end(), tuple(v * factor for v, _ in nums),
                            tuple(t * factor for _, t in nums)))
    return out


def date_of(m: re.Match[str]) -> date | None:
    """The date a ``DATE`` match writes, None when it is no calendar date ("2025-13-40")."""
    g = m.groups()
    try:
        if g[0]:
            return date(int(g[0]), int(g[1]), int(g[2]))
        if g[3]:
            return date(int(g[5]), _month(g[4]), int(g[3]))
        return date(int(g[8]), _month(g[6]), int(g[7]))
    except ValueError:
        return None


def _month(word: str) -> int:
    return next(i for i, name in enumerate(_MONTHS, start=1) if name.startswith(word.lower()[:3]))
