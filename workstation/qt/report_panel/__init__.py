"""The report editor (Qt): drafting on a worker thread, editing with provenance, sign-off, recovery, export.

- ``ReportPanel``: the panel beside the viewer (draft streams in, then editable; sign-off; export).
- ``ReportContext`` (from ``workstation.services.report_context``): the study a report is written for.
- ``DraftWorker``: drafting (template or local language model) on the device runner (shared with analyses).
- ``SignOffDialog``: name, unresolved flags, confirmation.
- ``offer_recovery``/``RecoveryDialog``: autosaved drafts offered back on start (after a crash).
"""

from workstation.qt.report_panel.context import ReportContext, link_target
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
    "link_target",
    "offer_recovery",
]
