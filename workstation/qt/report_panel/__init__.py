"""The report editor (Qt): drafting on a worker thread, editing with provenance, sign-off, recovery, export.

- ``ReportPanel``: the panel beside the viewer (draft streams in, then editable; sign-off; export).
- ``ReportContext``/``context_for_series``: the study a report is written for.
- ``DraftWorker``: drafting (template or local language model) on the device runner (shared with analyses).
- ``SignOffDialog``: name, unresolved flags, confirmation.
- ``offer_recovery``/``RecoveryDialog``: autosaved drafts offered back on start (after a crash).
"""

from workstation.qt.report_panel.context import (
    ReportContext,
    context_for_series,
    link_target,
    study_id_of_key,
    study_key_of_series,
    study_title_of_key,
)
from workstation.qt.report_panel.draft_worker import DraftWorker
from workstation.qt.report_panel.panel import ReportPanel
from workstation.qt.report_panel.recovery import RecoveryDialog, offer_recovery
from workstation.qt.report_panel.signoff import SignOffDialog

__all__ = [
    "DraftWorker",
    "RecoveryDialog",
    "ReportContext",
    "ReportPanel",
    "SignOffDialog",
    "context_for_series",
    "link_target",
    "offer_recovery",
    "study_id_of_key",
    "study_key_of_series",
    "study_title_of_key",
]
