"""What the viewer model tells its views: plain, immutable event objects. No Qt.

``workstation.viewing.model.ViewerModel`` calls its listeners with these on the
thread that changed it (the GUI thread in the window). The Qt viewer redraws
and re-emits them as its signals (``workstation.qt.viewer.mpr``); a headless
test reads them as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from workstation.viewing.orientation import ViewPlane

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumeShown:
    """A new volume replaced the old one: cursor centred, window defaulted, overlay and measurements gone."""

    volume: Any


@dataclass(frozen=True)
class SlicesArrived:
    """Slices ``start:stop`` (array axis 0) of a streaming volume now hold data; ``complete``: all have."""

    start: int
    stop: int
    complete: bool


@dataclass(frozen=True)
class CursorMoved:
    """The linked cursor moved: voxel ``index`` at ``lps`` (mm); ``slices`` lists the planes whose slice changed."""

    index: tuple[int, int, int]
    lps: tuple[float, float, float]
    slices: tuple[tuple[ViewPlane, int], ...]


@dataclass(frozen=True)
class WindowLevelChanged:
    """The display window of every view: width, centre and the preset's name (``""``: set by hand)."""

    window: float
    level: float
    name: str


@dataclass(frozen=True)
class SlabChanged:
    """The slab every view shows: thickness in mm (0: single slices) and the reduction (``mip``...)."""

    thickness_mm: float
    mode: str


@dataclass(frozen=True)
class OverlayChanged:
    """The label overlay was set, cleared, or drawn differently (opacity, mode, visibility)."""


@dataclass(frozen=True)
class MeasurementsChanged:
    """A ruler or ROI was added or removed; ``count`` measurements remain."""

    count: int


@dataclass(frozen=True)
class DisplayChanged:
    """Something every view draws changed: ``what`` is ``tool``, ``crosshair``, ``annotations``,
    ``highlight`` or ``active``."""

    what: str


@dataclass(frozen=True)
class CineChanged:
    """Cine started (``plane`` loops at ``fps`` images per second), changed speed, or stopped (``plane`` None)."""

    plane: ViewPlane | None
    fps: float


ViewerEvent = (
    VolumeShown
    | SlicesArrived
    | CursorMoved
    | WindowLevelChanged
    | SlabChanged
    | OverlayChanged
    | MeasurementsChanged
    | DisplayChanged
    | CineChanged
)
