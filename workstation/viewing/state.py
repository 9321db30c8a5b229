"""What the MPR views share: volume, cursor, window/level, slab, overlay, measurements.

One ``ViewerState`` belongs to a ``ViewerModel`` (``workstation.viewing.model``);
the views only read it and change it through the model, so the three views can
never disagree about the cursor or the window. Qt-free.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from inference.labels import LabelTable
from inference.volume import Volume
from workstation.dicomio.display import dicom_date, person_name
from workstation.viewing.label_colours import colour_table
from workstation.viewing.measure import ViewMeasurement
from workstation.viewing.orientation import PlaneGeometry, ViewPlane
from workstation.viewing.slab import SlabSettings, slab_bounds

logger = logging.getLogger(__name__)

Tool = Literal["wl", "crosshair", "ruler", "roi", "pan", "zoom"]
TOOLS: tuple[Tool, ...] = ("wl", "crosshair", "ruler", "roi", "pan", "zoom")
TOOL_NAMES: dict[str, str] = {"wl": "W/L", "crosshair": "Crosshair", "ruler": "Ruler", "roi": "ROI",
                              "pan": "Pan", "zoom": "Zoom"}
OverlayMode = Literal["auto", "fill", "outline"]
"""``auto``: lesions filled, organs and tissues outlined (the anatomy stays readable inside them)."""
_VERSIONS = itertools.count(1)


def next_version() -> int:
    """A number never handed out before: cache keys of rendered slices use it."""
    return next(_VERSIONS)


@dataclass(frozen=True)
class ViewerInfo:
    """The identity shown in the corner of every view (display strings; DICOM dates are tidied)."""

    patient_name: str = ""
    study_date: str = ""
    series_description: str = ""
    modality: str = ""

    def patient_text(self) -> str:
        """``Family^Given`` as ``FAMILY, Given`` (as the browser and the exports show it)."""
        return person_name(self.patient_name)

    def date_text(self) -> str:
        """``YYYYMMDD`` as ``YYYY-MM-DD``; other strings as given."""
        return dicom_date(self.study_date)


@dataclass
class OverlayState:
    """A label map on the volume's grid and how it is drawn."""

    labelmap: npt.NDArray[np.integer[Any]]
    table: LabelTable
    max_value: int
    opacity: float = 0.5
    mode: OverlayMode = "auto"
    visible: bool = True
    hidden: set[int] = field(default_factory=set)
    lut: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros(1, np.uint32))
    version: int = 0
    filled: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(1, np.bool_))

    def refresh_lut(self) -> None:
        """Rebuild the colour table after a visibility change; views re-render on the new version."""
        self.lut = colour_table(self.table, self.max_value, self.hidden)
        self.filled = self.fill_table()
        self.version = next_version()

    def fill_table(self) -> npt.NDArray[np.bool_]:
        """Per label value, whether it is painted whole: every label in ``fill`` mode, none in ``outline``,
        lesion labels only in ``auto`` (a nodule is seen at a glance, a lung outline hides no parenchyma)."""
        filled = np.zeros(self.max_value + 1, dtype=np.bool_)
        if self.mode == "fill":
            filled[:] = True
        elif self.mode == "auto":
            for lab in self.table:
                if lab.lesion and 0 <= lab.value <= self.max_value:
                    filled[lab.value] = True
        return filled


@dataclass
class ViewerState:
    """Everything the views draw. ``cursor`` is the crosshair voxel ``[slice, row, column]``; ``active`` the
    plane keys act on (last clicked or scrolled)."""

    volume: Volume | None = None
    info: ViewerInfo = field(default_factory=ViewerInfo)
    geoms: dict[ViewPlane, PlaneGeometry] = field(default_factory=dict)
    loaded: npt.NDArray[np.bool_] | None = None
    loaded_version: int = 0
    cursor: list[int] = field(default_factory=lambda: [0, 0, 0])
    window: float = 400.0
    level: float = 40.0
    wl_name: str = ""
    invert: bool = False
    slab: SlabSettings = field(default_factory=SlabSettings)
    overlay: OverlayState | None = None
    highlight: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
    measurements: list[ViewMeasurement] = field(default_factory=list)
    tool: Tool = "wl"
    show_crosshair: bool = True
    show_annotations: bool = True
    volume_version: int = 0
    active: ViewPlane = "axial"

    def slab_bounds(self, geom: PlaneGeometry, slice_index: int) -> tuple[int, int] | None:
        """``(start, stop)`` of the slab a view of ``geom`` shows around ``slice_index`` (None: slab off)."""
        if not self.slab.active:
            return None
        return slab_bounds(slice_index, geom.n_slices, geom.spacing[geom.normal], self.slab.thickness_mm)

    def slice_loaded(self, slice_index: int) -> bool:
        """Whether slice ``slice_index`` along array axis 0 holds data yet."""
        return self.loaded is None or bool(self.loaded[slice_index])

    def loaded_count(self) -> tuple[int, int]:
        """``(loaded, total)`` slices along array axis 0."""
        if self.volume is None:
            return 0, 0
        total = self.volume.shape[0]
        return (total if self.loaded is None else int(self.loaded.sum())), total

    def value_at(self, index: tuple[int, int, int]) -> float | None:
        """The voxel value at an index, or ``None`` outside the volume or on an unloaded slice."""
        if self.volume is None:
            return None
        if any(not 0 <= v < n for v, n in zip(index, self.volume.shape, strict=True)):
            return None
        if not self.slice_loaded(index[0]):
            return None
        return float(self.volume.array[index])
