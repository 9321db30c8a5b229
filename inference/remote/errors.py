"""Why a remote model could not give a result: each a ``ModelError``, so the application treats it like a local one.

The window shows ``str(error)`` and keeps the study open; the local models stay usable.
"""

from __future__ import annotations

import logging

from inference.errors import ModelError

logger = logging.getLogger(__name__)


class RemoteError(ModelError):
    """A remote model failed; the message names the node (never its token) and the reason."""


class RemoteConfigError(RemoteError):
    """The node is not configured, or its configuration cannot be used (bad URL, token variable not set)."""


class RemoteUnavailableError(RemoteError):
    """The server could not be reached (refused, reset, name unknown) even after the retries."""


class RemoteTimeoutError(RemoteError):
    """The server did not answer within the node's time limit."""


class RemoteModelUnknownError(RemoteError):
    """The server does not serve the model asked for."""


class RemoteServerError(RemoteError):
    """The server answered with an error (HTTP status >= 400) or something that is not its API."""


class RemoteResultError(RemoteError):
    """The returned label map cannot be used: not NIfTI, another grid, or values that are not labels."""
