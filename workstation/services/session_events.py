"""What the reading session tells its views: plain, immutable event objects. No Qt.

``workstation.services.session.ReadingSession`` emits these to its listeners on
the owner's thread; the window draws them (``workstation.qt.reading``) and a
headless test or script reads them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OpenSeries:
    """The series being read: ids, what it is, and whose study (for the viewer's corner text)."""

    series_id: int
    study_id: int
    modality: str
    description: str
    patient_name: str
    study_date: str


@dataclass(frozen=True)
class Message:
    """A line for the status bar."""

    text: str


@dataclass(frozen=True)
class Problem:
    """Something the user must see: a title and a text."""

    title: str
    text: str


@dataclass(frozen=True)
class SeriesOpening:
    """A series was chosen; its load has started (the views clear and wait)."""

    series: OpenSeries


@dataclass(frozen=True)
class VolumeReady:
    """The series' grid is final and its middle slice is in; ``loaded`` (bool per slice) fills as it streams."""

    series_id: int
    volume: Any
    loaded: Any


@dataclass(frozen=True)
class SlicesLoaded:
    """Slices ``start:stop`` of the open series hold their values."""

    series_id: int
    start: int
    stop: int


@dataclass(frozen=True)
class SeriesOpened:
    """The open series is fully loaded: ``volume`` is what the AI gets."""

    series_id: int
    volume: Any


@dataclass(frozen=True)
class AiStatusChanged:
    """The AI status of a series: ``none``, ``running``, ``done`` or ``failed``."""

    series_id: int
    status: str


@dataclass(frozen=True)
class ResultShown:
    """An AI result of the open series is to be drawn (fresh, remembered, or from the store)."""

    series_id: int
    result: Any


@dataclass(frozen=True)
class AnalysisLookedUp:
    """The stored-analysis look-up of a loaded series ended; ``found``: a result is now shown."""

    series_id: int
    found: bool


@dataclass(frozen=True)
class AnalysisRefused:
    """A run was refused by the interpolation rule (the user may analyse anyway)."""

    model_id: str
    text: str


@dataclass(frozen=True)
class CodeConfirmationNeeded:
    """The model's configuration runs code the user has not trusted: ask, then ``trust_and_run``."""

    model_id: str
    question: str


@dataclass(frozen=True)
class AnalysisStarted:
    """A run was submitted to the device runner."""

    series_id: int
    generation: int
    model_id: str
