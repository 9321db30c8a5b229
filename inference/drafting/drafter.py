"""Choosing a drafter: the local language model when one is configured, the template otherwise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from inference.cancel import CancelToken
from inference.drafting.draft import ReportDraft
from inference.drafting.inputs import ReportInputs

logger = logging.getLogger(__name__)


class Drafter(Protocol):
    """Anything that drafts a report from ``ReportInputs`` (template or language model)."""

    name: str

    def draft(self, inputs: ReportInputs, on_token: Callable[[str], None] | None = None,
              cancel: CancelToken | None = None) -> ReportDraft:
        """The draft; text is streamed to ``on_token``; a cancel returns the partial draft marked cancelled."""
        ...


def make_drafter(llm_dir: Path | str | None = None, device: str = "auto", max_new_tokens: int | None = None) -> Drafter:
    """A ``TransformersDrafter`` for ``llm_dir`` (checked now, loaded on first use), else a ``TemplateDrafter``.

    A configured folder that is not a usable model is an error (``ModelError``),
    not a silent fall-back: the user asked for that model.
    """
    if llm_dir is None or str(llm_dir) == "":
        from inference.drafting.template import TemplateDrafter

        return TemplateDrafter()
    from inference.drafting.llm import DEFAULT_MAX_NEW_TOKENS, TransformersDrafter

    return TransformersDrafter(Path(llm_dir), device=device, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
