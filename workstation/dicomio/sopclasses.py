"""What kind of object a SOP Class is: image, document, presentation state...

Only image objects can become volumes; the rest are kept apart (documents feed
the clinical notes).
"""

from __future__ import annotations

from enum import StrEnum

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
PRESENTATION_STATE_PREFIX = "1.2.840.10008.5.1.4.1.1.11."
ENCAPSULATED_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
RAW_DATA = "1.2.840.10008.5.1.4.1.1.66"

ENHANCED_IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
    }
)

# Image storage classes whose objects must carry pixel data (not exhaustive:
# an unknown class with pixel data is still treated as an image).
IMAGE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT
        "1.2.840.10008.5.1.4.1.1.4",  # MR
        "1.2.840.10008.5.1.4.1.1.128",  # PET
        "1.2.840.10008.5.1.4.1.1.20",  # NM
        "1.2.840.10008.5.1.4.1.1.1",  # CR
        "1.2.840.10008.5.1.4.1.1.1.1",  # DX
        "1.2.840.10008.5.1.4.1.1.1.2",  # MG
        "1.2.840.10008.5.1.4.1.1.6.1",  # US
        "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
        "1.2.840.10008.5.1.4.1.1.12.1",  # XA
        "1.2.840.10008.5.1.4.1.1.481.1",  # RT image
    }
    | ENHANCED_IMAGE_CLASSES
)


class ObjectKind(StrEnum):
    """The broad kind of one DICOM object."""

    IMAGE = "image"
    SECONDARY_CAPTURE = "secondary_capture"
    DOCUMENT = "document"
    PRESENTATION_STATE = "presentation_state"
    KEY_OBJECTS = "key_objects"
    SEGMENTATION = "segmentation"
    DICOMDIR = "dicomdir"
    OTHER = "other"


def is_image_storage(sop_class_uid: str) -> bool:
    """True for the storage classes that must carry pixel data."""
    return sop_class_uid in IMAGE_CLASSES or sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX)


def object_kind(sop_class_uid: str, has_pixels: bool) -> ObjectKind:
    """Classify an object by its SOP Class (falling back on whether it has pixels)."""
    uid = sop_class_uid
    if uid == DICOMDIR_CLASS:
        return ObjectKind.DICOMDIR
    if uid == KEY_OBJECT_SELECTION:
        return ObjectKind.KEY_OBJECTS
    if uid.startswith(SR_PREFIX) or uid.startswith(ENCAPSULATED_PREFIX):
        return ObjectKind.DOCUMENT
    if uid.startswith(PRESENTATION_STATE_PREFIX):
        return ObjectKind.PRESENTATION_STATE
    if uid.startswith(SECONDARY_CAPTURE_PREFIX):
        return ObjectKind.SECONDARY_CAPTURE
    if uid == SEGMENTATION:
        return ObjectKind.SEGMENTATION
    if uid in IMAGE_CLASSES or has_pixels:
        return ObjectKind.IMAGE
    return ObjectKind.OTHER
