"""Logging set-up for the application's entry points.

Modules log with ``logging.getLogger(__name__)``; this module only decides
where records go. Patient names and IDs are never logged anywhere.
"""

from __future__ import annotations

import logging


def configure_logging(verbosity: int = 0) -> None:
    """Send log records to stderr: warnings by default, more with ``-v``/``-vv``."""
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
