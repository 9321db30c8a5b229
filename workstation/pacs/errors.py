"""Errors of PACS communication, each with a message a user (or IT) can act on.

They extend the application's ``WorkstationError`` (``inference.errors``), so the
command line and the window catch them in the one place they catch everything
else and show ``str(error)``. Messages name the node (AE title, host and port,
or the DICOMweb address) and what to check; they never hold patient data.
"""

from __future__ import annotations

from inference.errors import WorkstationError


class PacsError(WorkstationError):
    """Base of every PACS failure."""


class PacsConnectionError(PacsError):
    """No connection could be made: nothing listens there, unknown host, or no route."""


class PacsTimeoutError(PacsError):
    """The peer did not answer in time (connection, association or a DIMSE/HTTP response)."""


class AssociationRejectedError(PacsError):
    """The peer refused the association (wrong called AE title, our AE title unknown, busy...).

    ``result``, ``source`` and ``reason`` are the A-ASSOCIATE-RJ codes (PS3.8 9.3.4).
    """

    def __init__(self, message: str, result: int = 0, source: int = 0, reason: int = 0) -> None:
        super().__init__(message)
        self.result = result
        self.source = source
        self.reason = reason


class UnknownAETitleError(AssociationRejectedError):
    """The peer does not know an AE title: the one we called, ours, or a C-MOVE destination."""


class TransferInterruptedError(PacsError):
    """The peer dropped or aborted the association in the middle of an operation.

    ``done`` instances were received or sent (and kept) before the drop; a
    retry continues from there.
    """

    def __init__(self, message: str, done: int = 0) -> None:
        super().__init__(message)
        self.done = done


class PacsRequestError(PacsError):
    """The peer answered an operation with a failure status (DIMSE status or HTTP code).

    ``status`` is the DIMSE status (e.g. ``0xA801``) or the HTTP status code.
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NodeConfigError(PacsError):
    """A PACS node is missing, unknown or not configured for the protocol asked for."""


class StudyNotFoundError(PacsError):
    """The PACS answered, but does not hold the study (or the series) asked for."""


class PacsTlsError(PacsConnectionError):
    """A TLS connection (DICOM TLS or HTTPS) to or from a peer could not be made secure.

    The message names the node and the reason (unknown CA, host name mismatch,
    expired certificate, client certificate refused, a plain-text peer...). A
    node configured for TLS never falls back to plain text, so this is final.
    """
