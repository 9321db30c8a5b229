"""What the four corners of a view say: identity, image and position, W/L and slab, tool and value. Qt-free.

The radiologist's corner text, worked out from the viewer model so that every
view (and a headless test) words it the same way; the Qt view only colours each
line by its ``role`` and draws it.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from workstation.viewing.image_number import plane_image_text
from workstation.viewing.model import ViewerModel
from workstation.viewing.orientation import ViewPlane, position_text
from workstation.viewing.slab import SlabSettings
from workstation.viewing.state import TOOL_NAMES

logger = logging.getLogger(__name__)

TextRole = Literal["identity", "plane", "text", "slab"]
"""``identity``: patient, date, series; ``plane``: the plane's name; ``slab``: the slab line; ``text``: the rest."""
CornerLines = dict[str, list[tuple[str, TextRole]]]
"""Lines per corner (``tl``, ``tr``, ``bl``, ``br``), top to bottom."""


def corner_lines(
    model: ViewerModel,
    plane: ViewPlane,
    slab: SlabSettings,
    magnification: float,
    hover: tuple[int, int, int] | None = None,
) -> CornerLines:
    """The corner text of the view of ``plane`` showing ``slab`` at ``magnification`` (1 = 100 %), with the
    value of voxel ``hover`` under the pointer; empty with no volume."""
    st = model.state
    vol, g = st.volume, st.geoms.get(plane)
    if vol is None or g is None:
        return {}
    info = st.info
    s = model.slice_index(plane)
    cursor = np.array(st.cursor, dtype=np.float64)
    cursor[g.normal] = s
    series = " ".join(x for x in (info.series_description, f"({info.modality})" if info.modality else "") if x)
    identity = [t for t in (info.patient_text(), info.date_text(), series) if t]
    wl = f"W {st.window:.0f}  L {st.level:.0f}" + (f"  {st.wl_name}" if st.wl_name else "")
    bottom_right = [f"Tool: {TOOL_NAMES[st.tool]}"]
    if model.cine.plane() == plane:
        bottom_right.insert(0, f"Cine {model.cine.fps():g} fps")
    if hover is not None:
        value = st.value_at(hover)
        if value is not None:
            unit = f" {vol.units}" if vol.units else ""
            bottom_right.insert(0, f"{value:.0f}{unit}" if value.is_integer() else f"{value:.4g}{unit}")
    slab_line: list[tuple[str, TextRole]] = [(slab.label(), "slab")] if slab.active else []  # "MIP 10 mm"
    return {
        "tl": [(t, "identity") for t in identity],
        "tr": [
            (plane.upper(), "plane"),
            (plane_image_text(vol, g, s), "text"),
            (position_text(vol.index_to_lps(cursor), g.normal_patient_axis), "text"),
        ],
        "bl": [(wl, "text"), *slab_line, (f"Zoom {magnification * 100:.0f}%", "text")],
        "br": [(t, "text") for t in bottom_right],
    }
