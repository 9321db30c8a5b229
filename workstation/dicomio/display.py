"""DICOM person names and dates as readers expect to see them, the same in every window and export."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def person_name(pn: str | None) -> str:
    """``Family^Given^Middle`` as ``FAMILY, Given Middle`` ('' when empty).

    Only the first component group counts (``Yamada^Tarou=山田^太郎`` reads
    ``YAMADA, Tarou``); prefix and suffix are left out as worklists do.
    """
    if not pn:
        return ""
    parts = [p.strip() for p in pn.split("=")[0].split("^")]
    family, rest = parts[0], " ".join(p for p in parts[1:3] if p)
    if not family:
        return rest
    return f"{family.upper()}, {rest}" if rest else family.upper()


def dicom_date(da: str | None) -> str:
    """A DICOM date ``YYYYMMDD`` as ``YYYY-MM-DD``; any other text unchanged."""
    v = (da or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v
