"""Side panels of the main window: findings, clinical notes, and the AI run bar."""

from workstation.qt.panels.analysis_bar import AnalysisBar, models_for
from workstation.qt.panels.findings import FindingsPanel
from workstation.qt.panels.notes import NoteCard, NotesPanel
from workstation.qt.panels.targets import FindingTarget, display_name

__all__ = ["AnalysisBar", "FindingTarget", "FindingsPanel", "NoteCard", "NotesPanel", "display_name", "models_for"]
