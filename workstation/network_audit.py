"""Records every attempt to reach a non-local host while switched on (``sys.addaudithook``).

The self-test proves with it that the application reaches no network host
on its own (patient data never leaves the machine; nothing is downloaded at
run time). Audit hooks cannot be removed, so one instance is installed once per
process (``network_audit``) and switched on only while it is wanted.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

def is_local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str) or host in ("", "localhost") or host.startswith(("/", "\0")):
        return True  # AF_UNIX paths and the abstract namespace are local
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class NetworkAudit:
    """Records every connection or name lookup of a non-local host while active (``sys.addaudithook``).

    Audit hooks cannot be removed, so one instance is installed once per
    process and switched on only for the duration of a self-test.
    """

    def __init__(self) -> None:
        self.active = False
        self.attempts: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in ("socket.connect", "socket.getaddrinfo"):
            return
        if event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) and address else address
        else:
            host = args[0]
        if not is_local(host) and len(self.attempts) < 20:
            self.attempts.append(f"{event} {host!r}")


_AUDIT: NetworkAudit | None = None


def network_audit() -> NetworkAudit:
    global _AUDIT
    if _AUDIT is None:
        _AUDIT = NetworkAudit()
        sys.addaudithook(_AUDIT)
    return _AUDIT
