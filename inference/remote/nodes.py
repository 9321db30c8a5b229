"""Remote inference nodes (MONAI Label servers) as configured by the user, and remote model ids.

The application keeps the configuration as plain data (settings ``inference.remote``:
node name -> URL, or -> ``{"url", "token_env", "timeout_s", "connect_timeout_s",
"retries", "ca_file"}``); ``parse_nodes`` validates it here, so a bad node is dropped
with a reason and the others stay usable. The bearer token itself never sits in the
settings file: ``token_env`` names the environment variable that holds it.

A remote model's id is ``remote:NODE/MODEL`` (``model_id``/``split_model_id``).
Only configured nodes are ever contacted: nothing here discovers servers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.remote.errors import RemoteConfigError

logger = logging.getLogger(__name__)

REMOTE_PREFIX = "remote:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RemoteNode:
    """One MONAI Label server.

    ``timeout_s`` bounds a whole inference request (upload, server work,
    download); ``connect_timeout_s`` the connection and each answer to a short
    request (``/info/``); ``retries`` how often a failed connection is tried
    again, with doubling back-off from ``backoff_s``.
    """

    name: str
    url: str
    token_env: str = ""
    timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5
    ca_file: Path | None = None

    def token(self) -> str | None:
        """The bearer token from ``token_env`` (None when no variable is named); ``RemoteConfigError`` if unset."""
        if not self.token_env:
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise RemoteConfigError(
                f"remote node '{self.name}': its token variable {self.token_env} is not set in the environment"
            )
        return value

    def describe(self) -> str:
        """``name (url)`` for messages: no token."""
        return f"{self.name} ({self.url})"


def _number(value: Any, key: str, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"'{key}' must be a number >= {minimum}, not {value!r}")
    return float(value)


def parse_node(name: str, value: Any) -> RemoteNode:
    """One node from its settings value (a URL string or a dict); ``ValueError`` saying what is wrong."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"node name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    spec: Mapping[str, Any] = {"url": value} if isinstance(value, str) else value
    if not isinstance(spec, Mapping):
        raise ValueError("must be a URL or an object with 'url'")
    url = str(spec.get("url") or "").strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url {url!r} must be http://HOST[:PORT][/path] or https://...")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("url must not hold credentials, a query or a fragment (use token_env for a token)")
    token_env = str(spec.get("token_env") or "")
    if token_env and not _ENV_RE.match(token_env):
        raise ValueError(f"token_env {token_env!r} is not an environment variable name")
    retries = spec.get("retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ValueError(f"'retries' must be a whole number 0-10, not {retries!r}")
    ca_file = spec.get("ca_file")
    unknown = sorted(
        set(spec) - {"url", "token_env", "timeout_s", "connect_timeout_s", "retries", "backoff_s", "ca_file"}
    )
    if unknown:
        logger.warning("remote node '%s': ignoring unknown keys %s", name, ", ".join(unknown))
    return RemoteNode(
        name,
        url,
        token_env,
        timeout_s=_number(spec.get("timeout_s", 600.0), "timeout_s", minimum=1.0),
        connect_timeout_s=_number(spec.get("connect_timeout_s", 5.0), "connect_timeout_s", minimum=0.1),
        retries=retries,
        backoff_s=_number(spec.get("backoff_s", 0.5), "backoff_s", minimum=0.0),
        ca_file=Path(str(ca_file)).expanduser() if ca_file else None,
    )


def parse_nodes(value: Any) -> tuple[RemoteNode, ...]:
    """The usable nodes of a settings ``inference.remote`` value; each bad one is dropped with a warning."""
    if value in (None, {}):
        return ()
    if not isinstance(value, Mapping):
        logger.warning(
            "settings inference.remote: ignored, it must map node names to URLs (got a %s)", type(value).__name__
        )
        return ()
    nodes = []
    for name, spec in value.items():
        try:
            nodes.append(parse_node(name, spec))
        except ValueError as exc:
            logger.warning("settings inference.remote: ignoring node %r: %s", name, exc)
    return tuple(nodes)


def model_id(node: str, model: str) -> str:
    """``remote:NODE/MODEL``."""
    return f"{REMOTE_PREFIX}{node}/{model}"


def is_remote(model_id_: str) -> bool:
    """True for a ``remote:`` model id."""
    return model_id_.startswith(REMOTE_PREFIX)


def split_model_id(model_id_: str) -> tuple[str, str]:
    """(node, model) of ``remote:NODE/MODEL``; ``RemoteConfigError`` when it is not of that form."""
    rest = model_id_[len(REMOTE_PREFIX) :] if is_remote(model_id_) else ""
    node, sep, model = rest.partition("/")
    if not sep or not node or not model:
        raise RemoteConfigError(f"'{model_id_}' is not a remote model id: use remote:NODE/MODEL")
    return node, model
