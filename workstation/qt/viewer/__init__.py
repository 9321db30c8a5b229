"""The MPR viewer: linked axial/coronal/sagittal views, W/L, thick slabs, measurements, label overlay.

Qt views of the Qt-free viewer model (``workstation.viewing``): they draw its
state and forward mouse and keys to it. Never imports torch, MONAI or transformers.
"""

from workstation.imaging import Preset, PresetBook, auto_window, load_presets
from workstation.qt.refcount_guard import guard_none_refcount
from workstation.qt.viewer.mpr import LAYOUTS, MprViewer
from workstation.qt.viewer.overlay_panel import OverlayPanel
from workstation.qt.viewer.slab_toolbar import SlabToolbar
from workstation.qt.viewer.slice_view import SliceView
from workstation.viewing import (
    PLANES,
    SLAB_MODES,
    TOOLS,
    OverlayState,
    PlaneGeometry,
    RoiMeasurement,
    RulerMeasurement,
    SlabMode,
    SlabSettings,
    Tool,
    ViewerInfo,
    ViewerModel,
    ViewerState,
    ViewMeasurement,
    ViewPlane,
    plane_geometries,
)

guard_none_refcount()

__all__ = [
    "LAYOUTS",
    "PLANES",
    "SLAB_MODES",
    "TOOLS",
    "MprViewer",
    "OverlayPanel",
    "OverlayState",
    "PlaneGeometry",
    "Preset",
    "PresetBook",
    "RoiMeasurement",
    "RulerMeasurement",
    "SlabMode",
    "SlabSettings",
    "SlabToolbar",
    "SliceView",
    "Tool",
    "ViewMeasurement",
    "ViewPlane",
    "ViewerInfo",
    "ViewerModel",
    "ViewerState",
    "auto_window",
    "guard_none_refcount",
    "load_presets",
    "plane_geometries",
]
