"""The report document (Qt-free): sentences with provenance, grounding flags, sign-off, addenda, autosave.

The drafter (``inference.report``) writes the first text; the editor (Qt layer)
changes it through ``ReportDocument``; exports (``workstation.export``) read it.
"""

from workstation.report.autosave import AutosaveStore, DraftInfo
from workstation.report.document import (
    ReportDocument,
    ReportError,
    ReportLockedError,
    SignOffError,
    utc_now,
)
from workstation.report.model import (
    STANDARD_SECTIONS,
    AcknowledgedFlag,
    Addendum,
    DraftSource,
    Provenance,
    Section,
    Sentence,
    SignOff,
    split_sentences,
)

__all__ = [
    "STANDARD_SECTIONS",
    "AcknowledgedFlag",
    "Addendum",
    "AutosaveStore",
    "DraftInfo",
    "DraftSource",
    "Provenance",
    "ReportDocument",
    "ReportError",
    "ReportLockedError",
    "Section",
    "Sentence",
    "SignOff",
    "SignOffError",
    "split_sentences",
    "utc_now",
]
