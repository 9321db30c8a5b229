"""PACS: query/retrieve and send over DIMSE and DICOMweb, and a storage listener. No Qt.

Importing this package imports nothing heavy; the submodules load pynetdicom
when they are used (``dimse``, ``listener``, ``retrieve``).
"""

from workstation.pacs.errors import (
    AssociationRejectedError,
    NodeConfigError,
    PacsConnectionError,
    PacsError,
    PacsRequestError,
    PacsTimeoutError,
    PacsTlsError,
    TransferInterruptedError,
    UnknownAETitleError,
)
from workstation.pacs.nodes import LocalAE, PacsConfig, PacsNode
from workstation.pacs.query import InstanceResult, SeriesResult, StudyQuery, StudyResult

__all__ = [
    "AssociationRejectedError",
    "InstanceResult",
    "LocalAE",
    "NodeConfigError",
    "PacsConfig",
    "PacsConnectionError",
    "PacsError",
    "PacsNode",
    "PacsRequestError",
    "PacsTimeoutError",
    "PacsTlsError",
    "SeriesResult",
    "StudyQuery",
    "StudyResult",
    "TransferInterruptedError",
    "UnknownAETitleError",
]
