"""The report document (Qt-free): sentences with provenance, grounding flags, sign-off, addenda, autosave.

The drafter (``inference.drafting``) writes the first text; the editor (Qt layer)
changes it through ``ReportDocument``; exports (``workstation.export``) read it.
"""

from workstation.document.autosave import AutosaveStore, DraftInfo
from workstation.document.editing import (
    ReportDocument,
    ReportError,
    ReportLockedError,
    SignOffError,
    utc_now,
)
from workstation.document.model import (
    STANDARD_SECTIONS,
    AcknowledgedFlag,
    Addendum,
    DraftSource,
    Section,
    Sentence,
    SentenceOrigin,
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
    "ReportDocument",
    "ReportError",
    "ReportLockedError",
    "Section",
    "Sentence",
    "SentenceOrigin",
    "SignOff",
    "SignOffError",
    "split_sentences",
    "utc_now",
]
