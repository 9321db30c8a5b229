"""What a series' header says about how it was acquired: kernel sharpness and body region.

One home for these readings, below both the engine (measurement cautions) and
the application (the viewer's first window), so the two never disagree on
whether "B60f" is a lung kernel or whether "THORAX" is a chest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

_SHARP_WORDS = ("LUNG", "BONE", "SHARP", "EDGE", "DETAIL", "CHST", "HIGH RES")

REGION_WORDS: dict[str, tuple[str, ...]] = {
    "head": ("HEAD", "BRAIN", "SKULL", "CRANI", "NEURO", "ORBIT", "SINUS", "IAC", "PETROUS"),
    "neck": ("NECK", "LARYNX", "THYROID", "CSPINE", "C-SPINE"),
    "chest": ("CHEST", "THORAX", "THORACIC", "LUNG", "PULM", "THX", "HEART", "CARDIAC", "CORONARY", "CTPA",
              "MEDIASTIN"),
    "abdomen": ("ABDOMEN", "ABD", "LIVER", "PANCREAS", "KIDNEY", "RENAL", "PELVIS", "UROGRAM", "COLON", "ENTERO"),
}
"""Words (upper case, matched at the start of a word) that name a body region in DICOM descriptions."""


def is_sharp_kernel(kernel: str) -> bool:
    """Whether a reconstruction kernel name is a sharp (lung/bone/high-frequency) kernel.

    Siemens B/Br/Bl/I/Q/Hr kernels numbered >= 50 (B60f, Br59, I70f), Canon/Toshiba
    FC5x and FC8x, GE LUNG/BONE/BONEPLUS/EDGE/DETAIL/CHST, Philips D, E, L and Y* kernels.
    """
    for part in re.split(r"[\\/,;]+", kernel.upper()):
        word = part.strip()
        if not word:
            continue
        if any(w == word or word.startswith(w) for w in _SHARP_WORDS):
            return True
        m = re.match(r"^(?:[A-Z]{1,2})(\d{2})[A-Z]?\b", word)
        if m and not word.startswith("FC") and int(m.group(1)) >= 50:
            return True
        m = re.match(r"^FC(\d{1,2})$", word)
        if m and int(m.group(1)) >= 50:
            return True
        if re.fullmatch(r"D|E|L|Y[A-Z]?", word):
            return True
    return False


def body_region(metadata: Mapping[str, Any]) -> str:
    """The body region a series covers ("head", "neck", "chest", "abdomen"), or '' when the header is silent.

    BodyPartExamined decides when it names one region; otherwise the series
    description, then the study description, are searched for region words. A
    description naming two regions ("CT CHEST ABDOMEN") is not one region: ''.
    """
    for key in ("body_part", "series_description", "study_description"):
        found = _regions(str(metadata.get(key) or ""))
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return ""
    return ""


def _regions(text: str) -> set[str]:
    words = re.split(r"[^A-Z-]+", text.upper().replace("_", " "))
    return {region for region, names in REGION_WORDS.items()
            for w in words if w and any(w.startswith(n) for n in names)}
