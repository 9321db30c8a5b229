"""The remote model nodes of the settings (``inference.remote``) and their models as ``models list`` rows.

``remote_models(settings)`` parses the nodes (a bad one is dropped with a warning,
the others stay usable) into the engine's ``RemoteModels``; with none
configured, nothing is ever contacted. ``remote_rows`` asks each configured
node's ``/info/`` once (short time-out, no retry) and gives one row per model in
the shape of ``services.models.list_models``; a node that cannot be listed gives
one unusable row saying why, so the picker and ``models list`` explain it.
"""

from __future__ import annotations

import logging
from typing import Any

from inference.remote import RemoteModels, model_id, parse_nodes
from workstation.settings import Settings

logger = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0
"""How long listing waits for one node's ``/info/`` (MONAI Label answers it only between inferences; the window
lists on a helper thread, so a busy or dead node never holds up the picker)."""


def remote_models(settings: Settings) -> RemoteModels:
    """The configured nodes (``settings.inference["remote"]``), validated."""
    value = settings.inference.get("remote") if isinstance(settings.inference, dict) else None
    return RemoteModels(parse_nodes(value))


def remote_rows(remote: RemoteModels, timeout_s: float = LIST_TIMEOUT_S) -> list[dict[str, Any]]:
    """One ``list_models`` row per model of every node (source ``remote``); a failing node gives a ``problem`` row."""
    rows: list[dict[str, Any]] = []
    if not remote:
        return rows
    for listing in remote.list(timeout_s=timeout_s):
        node = listing.node
        base = {
            "path": None,
            "sha256": None,
            "installed_at": None,
            "source": "remote",
            "node": node.name,
            "url": node.url,
            "code": None,
        }
        if listing.problem is not None:
            rows.append(
                {
                    **base,
                    "id": model_id(node.name, "*"),
                    "title": f"models on {node.name}",
                    "version": "",
                    "modalities": [],
                    "labels": [],
                    "problem": listing.problem,
                }
            )
            continue
        server_version = listing.server.version if listing.server else ""
        for info in listing.models:
            rows.append(
                {
                    **base,
                    "id": model_id(node.name, info.name),
                    "title": f"{info.name} ({node.name})",
                    "version": info.version or server_version or "remote",
                    "modalities": ["*"],
                    "labels": list(info.labels.values()),
                    "problem": None,
                    "description": info.description,
                    "type": info.type,
                }
            )
    return rows
