"""Streaming and cancelling one generation: a rate-limited ``TextIteratorStreamer`` and a cancel criterion.

Both subclass transformers classes, so they are defined on first use: importing
this module must not import torch or transformers.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from inference.cancel import CancelToken

logger = logging.getLogger(__name__)

# a person cannot read faster than ~30 updates a second; joining faster tokens saves a thread wake-up each
DEFAULT_STREAM_INTERVAL_S = 0.03


def make_streamer(tokenizer: Any, interval_s: float = DEFAULT_STREAM_INTERVAL_S) -> Any:
    """A ``TextIteratorStreamer`` that decodes incrementally and queues text at most every ``interval_s``."""
    return _streamer_class()(tokenizer, interval_s)


_STREAMER: list[type] = []


def _streamer_class() -> type:
    """The streamer subclass, defined on first use (this module must not import transformers at import time).

    Stock ``TextIteratorStreamer`` re-decodes every token since the last
    newline on every step (quadratic in line length) and queues a string,
    often empty, per token, waking the reading thread each time. This one
    decodes a short window (the text of the tokens since the last emitted
    piece, with the previous piece as context so that leading spaces come out
    right, as text-generation-inference does), holds back an incomplete UTF-8
    sequence ("\ufffd" at the end), and queues only non-empty text, at most
    every ``interval_s`` (the first piece at once, the rest on ``end()``).
    """
    if not _STREAMER:
        from transformers import TextIteratorStreamer

        class ChunkStreamer(TextIteratorStreamer):  # type: ignore[misc]
            """Incremental, rate-limited text streaming for one generation (batch size 1)."""

            def __init__(self, tokenizer: Any, interval_s: float) -> None:
                super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
                self.token_cache: list[int] = []
                self.next_tokens_are_prompt: bool = True
                self.interval_s = interval_s
                self._prefix = 0  # token_cache[_prefix:_read] is context already emitted
                self._read = 0
                self._pending: list[str] = []
                self._last = 0.0

            def put(self, value: Any) -> None:
                if value.dim() > 1:
                    if value.shape[0] > 1:
                        raise ValueError("streaming supports batch size 1")
                    value = value[0]
                if self.next_tokens_are_prompt:
                    self.next_tokens_are_prompt = False
                    return
                self.token_cache.extend(value.tolist())
                new = self._decode_new()
                if new:
                    self._pending.append(new)
                    now = time.perf_counter()
                    if now - self._last >= self.interval_s:
                        self._last = now
                        self._flush()

            def _decode_new(self) -> str:
                decode = self.tokenizer.decode
                prefix = decode(self.token_cache[self._prefix:self._read], **self.decode_kwargs)
                full = decode(self.token_cache[self._prefix:], **self.decode_kwargs)
                if len(full) <= len(prefix) or full.endswith("\ufffd"):
                    return ""
                self._prefix, self._read = self._read, len(self.token_cache)
                return str(full[len(prefix):])

            def _flush(self) -> None:
                if self._pending:
                    self.text_queue.put("".join(self._pending), timeout=self.timeout)
                    self._pending = []

            def end(self) -> None:
                tail = self.tokenizer.decode(self.token_cache[self._prefix:], **self.decode_kwargs)
                prefix = self.tokenizer.decode(self.token_cache[self._prefix:self._read], **self.decode_kwargs)
                if len(tail) > len(prefix):
                    self._pending.append(str(tail[len(prefix):]))
                self._flush()
                self.token_cache, self._prefix, self._read = [], 0, 0
                self.next_tokens_are_prompt = True
                self.text_queue.put(self.stop_signal, timeout=self.timeout)

        _STREAMER.append(ChunkStreamer)
    return _STREAMER[0]


def cancel_criteria(token: CancelToken, stop: threading.Event) -> Any:
    """A ``StoppingCriteria`` that ends generation once ``token`` is cancelled or ``stop`` is set."""
    return _criteria_class()(token, stop)


_CRITERIA: list[type] = []


def _criteria_class() -> type:
    """The StoppingCriteria subclass, defined on first use so that this module does not import transformers."""
    if not _CRITERIA:
        import torch
        from transformers import StoppingCriteria

        class CancelCriteria(StoppingCriteria):  # type: ignore[misc]
            """Stops every sequence of the batch when the run is cancelled."""

            def __init__(self, token: CancelToken, stop: threading.Event) -> None:
                self.token = token
                self.stop = stop

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = self.token.cancelled or self.stop.is_set()
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        _CRITERIA.append(CancelCriteria)
    return _CRITERIA[0]
