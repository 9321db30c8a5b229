"""Numbers with units in report text: found, converted to one unit per kind, with the rounding they show.

The grounding check compares what a sentence says with what was measured, so
each quantity keeps the precision it was written with: "12 mm" stands for
anything from 11.5 to 12.5 mm, "1.2 cm" for 11.5-12.5 mm, "2.2 L" for
2150-2250 mL. An integer ending in zeros is read as rounded to its last
non-zero digit ("2170 mL" = 2165-2175) but never looser than 5 % of its value.

Forms understood: "12 mm", "1.2 cm", "-950 HU", "13.5%", "94.3 cm²", "5558 mm³",
dimension groups ("22 x 18 mm", "22 mm x 18 mm", "22 x 18 x 15 mm"), ranges
("6-8 mm", "6 to 8 mm", "between 6 and 8 mm"), comparisons ("< 6 mm",
"more than 8 mm", "at least 5%") and positions ("z = -45.0 mm"). Numbers
without a unit (counts, slice numbers, years) are not quantities.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# unit (as ``unit_key`` normalises it) -> (kind, factor to the kind's canonical unit)
UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 1.0), "millimetre": ("length", 1.0), "millimeter": ("length", 1.0),
    "cm": ("length", 10.0), "centimetre": ("length", 10.0), "centimeter": ("length", 10.0),
    "cm2": ("area", 1.0), "mm2": ("area", 0.01), "sqcm": ("area", 1.0),
    "ml": ("volume", 1.0), "cc": ("volume", 1.0), "cm3": ("volume", 1.0), "mm3": ("volume", 0.001),
    "l": ("volume", 1000.0), "litre": ("volume", 1000.0), "liter": ("volume", 1000.0),
    "hu": ("density", 1.0), "hounsfieldunits": ("density", 1.0),
    "%": ("percent", 1.0), "percent": ("percent", 1.0),
}
CANONICAL_UNIT = {"length": "mm", "area": "cm2", "volume": "mL", "density": "HU", "percent": "%", "position": "mm"}

_UNIT = (r"(?:(?:cm|mm)(?:\s*\^?\s*[23²³])|sq\.?\s*cm|millimet(?:re|er)s?|centimet(?:re|er)s?|mm|cm|"
         r"m[lL]|cc|litres?|liters?|L|HU|Hounsfield\s+units|%|per\s*cent|percent)(?![A-Za-z0-9²³])")
_NUM = r"[-−–]?\d+(?:,\d{3})*(?:[.,]\d+)?"
_COMP = (r"(?:<=|>=|≤|≥|<|>|~|\b(?:less|smaller|lower|greater|larger|more|higher)\s+than|"
         r"\b(?:under|below|over|above|up\s+to|at\s+most|at\s+least|exceeding|exceeds|approximately|approx\.?|"
         r"about|around|circa|between)\b)")
_PATTERN = re.compile(
    rf"(?:(?P<comp>{_COMP})\s*)?(?P<z>\bz\s*[=:]\s*)?(?<![A-Za-z0-9.,\-−–])(?P<a>{_NUM})\s*(?P<ua>{_UNIT})?"
    rf"(?:\s*(?P<sep>x|×|\*|by|-|–|to|and)\s*(?P<b>{_NUM})\s*(?P<ub>{_UNIT})?"
    rf"(?:\s*(?:x|×|\*|by)\s*(?P<c>{_NUM})\s*(?P<uc>{_UNIT})?)?)?")
_COMP_RELATION = {
    "<": "<", "<=": "<", "≤": "<", "less than": "<", "smaller than": "<", "lower than": "<", "under": "<",
    "below": "<", "up to": "<", "at most": "<", ">": ">", ">=": ">", "≥": ">", "greater than": ">",
    "larger than": ">", "more than": ">", "higher than": ">", "over": ">", "above": ">", "at least": ">",
    "exceeding": ">", "exceeds": ">",
}


@dataclass(frozen=True)
class Quantity:
    """One quantity as written: its span, kind, value(s) in the canonical unit and their tolerance.

    ``relation`` is "=" (each value measured), "<" / ">" (an upper / lower
    bound), or "range" (``values`` = (low, high)). ``kind`` is "length",
    "area", "volume", "density", "percent" or "position" (an LPS z).
    """

    text: str
    start: int
    end: int
    kind: str
    unit: str
    values: tuple[float, ...]
    tolerances: tuple[float, ...]
    relation: str = "="

    def matches(self, value: float, index: int = 0) -> bool:
        """Whether a measured ``value`` (canonical unit) agrees with value ``index`` of this quantity."""
        v, tol = self.values[index], self.tolerances[index]
        eps = 1e-9 * max(1.0, abs(v))
        if self.relation == "<":
            return value <= v + tol + eps
        if self.relation == ">":
            return value >= v - tol - eps
        if self.relation == "range":
            return self.values[0] - self.tolerances[0] - eps <= value <= self.values[-1] + self.tolerances[-1] + eps
        return abs(value - v) <= tol + eps

    def shows(self, value: float) -> bool:
        """Whether the same number (whatever the relation) is written here: for quoting a text source."""
        return any(abs(value - v) <= t + 1e-9 * max(1.0, abs(v)) for v, t in zip(self.values, self.tolerances,
                                                                                 strict=True))


def find_quantities(text: str) -> list[Quantity]:
    """Every quantity with a unit in ``text``, in order of appearance."""
    out: list[Quantity] = []
    pos = 0
    while (m := _PATTERN.search(text, pos)) is not None:
        q = _quantity(m)
        if q is not None:
            out.append(q)
        pos = max(q.end if q is not None else m.end(), m.start() + 1)
    return out


def unit_key(unit: str) -> str:
    """The ``UNITS`` key of a unit as written: "cm²" -> "cm2", "mL" -> "ml", "litres" -> "litre"."""
    u = re.sub(r"[\s.^]", "", unit).lower().replace("²", "2").replace("³", "3")
    if u.endswith("s") and u[:-1] in UNITS:
        u = u[:-1]
    return u


def _quantity(m: re.Match[str]) -> Quantity | None:
    """The quantity a pattern match stands for, or None (no unit); may use only a first part of the match."""
    names = [("a", "ua"), ("b", "ub"), ("c", "uc")]
    parts = [(n, u) for n, u in names if m.group(n) is not None]
    sep = (m.group("sep") or "").lower()
    comp = " ".join((m.group("comp") or "").lower().split())
    if sep == "and" and comp != "between":  # "13.5% and 0.0%" are two quantities, not a range
        parts = parts[:1]
    effective: list[str | None] = []  # each number's unit: its own, else the next one written after it
    following: str | None = None
    for _, u in reversed(parts):
        following = m.group(u) or following
        effective.insert(0, following)
    if not effective or effective[0] is None:
        return None
    kind = UNITS[unit_key(effective[0])][0]
    values: list[float] = []
    tols: list[float] = []
    used = 0
    for (n, _), unit in zip(parts, effective, strict=True):
        if unit is None or UNITS[unit_key(unit)][0] != kind:  # "5 mm x 3 HU": keep the first quantity only
            break
        factor = UNITS[unit_key(unit)][1]
        value, tol = parse_number(m.group(n))
        values.append(value * factor)
        tols.append(tol * factor)
        used += 1
    last_n, last_u = parts[used - 1]
    end = m.end(last_u) if m.group(last_u) else m.end(last_n)
    if used < len(parts) and not m.group(last_u):  # the unit written later belongs to the cut-off part
        return None
    relation = _COMP_RELATION.get(comp, "=")
    if used >= 2 and (sep in ("-", "–", "to") or (sep == "and" and comp == "between")):
        relation = "range"
    if m.group("z"):
        kind = "position"
    start = m.start("comp") if m.group("comp") and (relation != "=" or comp) else m.start("a")
    unit_shown = " ".join(str(effective[used - 1]).split())
    return Quantity(text=m.string[start:end].strip(), start=start, end=end, kind=kind, unit=unit_shown,
                    values=tuple(values), tolerances=tuple(tols), relation=relation)


def parse_number(text: str) -> tuple[float, float]:
    """(value, half the last shown digit) of a written number: "12" -> (12, 0.5), "1.25" -> (1.25, 0.005).

    A comma followed by exactly three digits separates thousands; any other
    comma is a decimal comma. Integers ending in zeros: see the module docstring.
    """
    t = text.replace("−", "-").replace("–", "-")
    t = re.sub(r",(?=\d{3}(?!\d))", "", t).replace(",", ".")
    value = float(t)
    if "." in t:
        decimals = len(t.split(".", 1)[1])
        return value, 0.5 * 10.0 ** -decimals
    digits = t.lstrip("-")
    zeros = len(digits) - len(digits.rstrip("0")) if digits.strip("0") else 0
    tol = 0.5 * 10.0 ** zeros if zeros else 0.5
    return value, max(0.5, min(tol, 0.05 * abs(value))) if zeros else 0.5


def format_value(value: float, decimals: int) -> str:
    """``value`` rounded half away from zero to ``decimals`` (so "12.5" shows as "13", never "12"), no "-0"."""
    scale = 10.0 ** decimals
    rounded = math.floor(abs(value) * scale + 0.5) / scale
    text = f"{rounded:.{decimals}f}"
    return text if value >= 0 or rounded == 0 else f"-{text}"


# decimals a report shows per unit: lengths to the mm, volumes to the mL, indices and areas to 0.1
DECIMALS: dict[str, int] = {"mm": 0, "cm": 1, "mL": 0, "mm³": 0, "%": 1, "cm²": 1, "cm2": 1, "HU": 0}


def format_quantity(value: float, unit: str, decimals: int | None = None) -> str:
    """``value`` with its unit at a report's usual precision (``DECIMALS``): 13.47 % -> "13.5%".

    Values under 10 mm or 10 mL keep one decimal, so small ones do not round to a misleading integer.
    """
    if decimals is None:
        decimals = DECIMALS.get(unit, 1)
        if unit in ("mm", "mL") and abs(value) < 10.0:
            decimals = 1
    text = format_value(value, decimals)
    return f"{text}%" if unit == "%" else f"{text} {unit}"
