"""Package attributes that import their home module on first use (PEP 562).

A package ``__init__`` that re-exports names from its modules would import
them all with the package; ``workstation convert`` needs a few of them and
starts faster without the rest (``inference``: the analysis contract and
findings; ``workstation.index``: SQLite). Such a package lists where each name
lives and sets ``__getattr__ = lazy_getattr(__name__, homes, globals())``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)


def lazy_getattr(package: str, homes: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The package's ``__getattr__``: the name's module imported, the value cached in ``namespace``."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562's own name
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
