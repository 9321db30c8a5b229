"""Remote inference: models on MONAI Label servers that the user configured, run like local ones.

``RemoteModels`` (given the parsed ``inference.remote`` nodes) resolves
``remote:NODE/MODEL`` for the engine and lists the nodes' models; a
``RemoteModel`` uploads the volume as NIfTI (voxels and geometry only), waits
with progress and cancel, checks the returned label map against the uploaded
grid and puts it back on the source grid as a local bundle's is. Standard
library HTTP only; nothing here imports torch. Only configured nodes are contacted.
"""

from __future__ import annotations

import logging

from inference.remote.client import MonaiLabelClient, RemoteModelInfo, ServerInfo
from inference.remote.errors import (
    RemoteConfigError,
    RemoteError,
    RemoteModelUnknownError,
    RemoteResultError,
    RemoteServerError,
    RemoteTimeoutError,
    RemoteUnavailableError,
)
from inference.remote.model import RemoteListing, RemoteModel, RemoteModels
from inference.remote.nodes import REMOTE_PREFIX, RemoteNode, is_remote, model_id, parse_nodes, split_model_id

logger = logging.getLogger(__name__)

__all__ = [
    "REMOTE_PREFIX",
    "MonaiLabelClient",
    "RemoteConfigError",
    "RemoteError",
    "RemoteListing",
    "RemoteModel",
    "RemoteModelInfo",
    "RemoteModelUnknownError",
    "RemoteModels",
    "RemoteNode",
    "RemoteResultError",
    "RemoteServerError",
    "RemoteTimeoutError",
    "RemoteUnavailableError",
    "ServerInfo",
    "is_remote",
    "model_id",
    "parse_nodes",
    "split_model_id",
]
