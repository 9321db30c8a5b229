"""The viewer model: what the MPR views show (volume, cursor, window/level, slab, overlay, measurements,
cine) and every change to it, as plain events. No Qt: ``workstation.qt.viewer`` draws it and forwards input.

It reads ``inference.volume.Volume`` and ``inference.labels.LabelTable`` and
never imports torch, MONAI or transformers.
"""

from workstation.viewing.events import (
    CineChanged,
    CursorMoved,
    DisplayChanged,
    MeasurementsChanged,
    OverlayChanged,
    SlabChanged,
    SlicesArrived,
    ViewerEvent,
    VolumeShown,
    WindowLevelChanged,
)
from workstation.viewing.measure import RoiMeasurement, RulerMeasurement, ViewMeasurement
from workstation.viewing.model import PAGE_STEP, ViewerModel
from workstation.viewing.orientation import PLANES, PlaneGeometry, ViewPlane, plane_geometries
from workstation.viewing.slab import SLAB_MODES, SlabMode, SlabSettings
from workstation.viewing.state import TOOLS, OverlayState, Tool, ViewerInfo, ViewerState

__all__ = [
    "PAGE_STEP",
    "PLANES",
    "SLAB_MODES",
    "TOOLS",
    "CineChanged",
    "CursorMoved",
    "DisplayChanged",
    "MeasurementsChanged",
    "OverlayChanged",
    "OverlayState",
    "PlaneGeometry",
    "RoiMeasurement",
    "RulerMeasurement",
    "SlabChanged",
    "SlabMode",
    "SlabSettings",
    "SlicesArrived",
    "Tool",
    "ViewMeasurement",
    "ViewPlane",
    "ViewerEvent",
    "ViewerInfo",
    "ViewerModel",
    "ViewerState",
    "VolumeShown",
    "WindowLevelChanged",
    "plane_geometries",
]
