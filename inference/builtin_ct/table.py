"""Label values, names, colours and codes of the built-in CT model, and its HU ranges.

Codes are SNOMED CT (scheme "SCT") for DICOM SEG/SR export. Those for fat,
bone, muscle come from DICOM CID 7166 (Common Tissue Segmentation Type); the
lung, airway, marrow, body and nodule codes are the usual SNOMED CT concepts
for those structures.
"""

from __future__ import annotations

import logging

from inference.labels import Code, Label, LabelTable

logger = logging.getLogger(__name__)

BODY = 1
LUNG_RIGHT = 2
LUNG_LEFT = 3
AIRWAY = 4
BONE_CORTEX = 5
BONE_MARROW = 6
MUSCLE = 7
SUBCUTANEOUS_FAT = 8
VISCERAL_FAT = 9
LUNG_NODULE = 10
N_LABELS = 11  # label values are 0..10

LABEL_TABLE = LabelTable((
    Label(BODY, "body", (205, 170, 150), Code("38266002", "SCT", "Entire body")),
    Label(LUNG_RIGHT, "lung_right", (120, 190, 255), Code("3341006", "SCT", "Right lung")),
    Label(LUNG_LEFT, "lung_left", (80, 140, 235), Code("44029006", "SCT", "Left lung")),
    Label(AIRWAY, "airway", (40, 220, 220), Code("89187006", "SCT", "Airway structure")),
    Label(BONE_CORTEX, "bone_cortex", (245, 245, 225), Code("3138006", "SCT", "Bone")),
    Label(BONE_MARROW, "bone_marrow", (225, 190, 110), Code("14016003", "SCT", "Bone marrow")),
    Label(MUSCLE, "muscle", (200, 60, 60), Code("91727004", "SCT", "Muscle")),
    Label(SUBCUTANEOUS_FAT, "subcutaneous_fat", (250, 220, 90), Code("55603005", "SCT", "Fat")),
    Label(VISCERAL_FAT, "visceral_fat", (245, 160, 40), Code("55603005", "SCT", "Fat")),
    Label(LUNG_NODULE, "lung_nodule", (255, 40, 200), Code("27925004", "SCT", "Nodule"), lesion=True),
))

# HU ranges (inclusive integer bounds, as in the body-composition literature: Alberta protocol).
AIR_MAX_HU = -400  # lung/airway air is < -400; the solid lung/nodule boundary
LAA_HU = -950  # %LAA-950 counts voxels strictly below this
FAT_HU = (-190, -30)
MUSCLE_HU = (-29, 150)
BONE_MIN_HU = 200  # bone (marrow and cortex) candidates
CORTEX_HU = 400  # compact bone; contrast blood and most plaque-free vessels stay below
PARTIAL_BONE_HU = 120  # voxels this dense next to cortex are bone edge (partial volume)
