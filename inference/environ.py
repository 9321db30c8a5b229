"""Environment variables set for the length of a call, then put back as they were (set or unset)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def restored_environ(names: Iterable[str]) -> Iterator[None]:
    """Remember ``names``' values; on exit give each back its value, or remove it if it was unset.

    Only these names are touched, so other threads' variables are left alone (unlike restoring the
    whole environment). The language model's offline switches and the self-test's isolated folders
    both use it.
    """
    saved = {k: os.environ.get(k) for k in names}
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
