"""The MPR viewer: linked axial/coronal/sagittal views, W/L, thick slabs, measurements, label overlay.

Qt layer only; it reads ``inference.volume.Volume`` and ``inference.labels.LabelTable``
and never imports torch, MONAI or transformers.
"""

from workstation.imaging import Preset, PresetBook, auto_window, load_presets
from workstation.qt.refcount_guard import guard_none_refcount
from workstation.qt.viewer.measure import RoiMeasurement, RulerMeasurement, ViewMeasurement
from workstation.qt.viewer.mpr import LAYOUTS, MprViewer
from workstation.qt.viewer.orientation import PLANES, PlaneGeometry, ViewPlane, plane_geometries
from workstation.qt.viewer.overlay_panel import OverlayPanel
from workstation.qt.viewer.slab import SLAB_MODES, SlabMode, SlabSettings
from workstation.qt.viewer.slab_control import SlabToolbar
from workstation.qt.viewer.slice_view import SliceView
from workstation.qt.viewer.state import TOOLS, OverlayState, Tool, ViewerInfo, ViewerState

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
    "ViewerState",
    "auto_window",
    "guard_none_refcount",
    "load_presets",
    "plane_geometries",
]
