"""The transformers drafter: a causal language model from a local folder, offline, streamed, cancellable.

Loading is local and safe by construction: ``local_files_only=True`` with
``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set for the call (no network, even
for a folder name that looks like a hub id), ``trust_remote_code=False`` (no
code from the folder runs) and ``use_safetensors=True`` (no pickle). A folder
that lacks what is needed is refused before transformers is touched, with a
``ModelError`` naming the folder and the missing files.

Generation is greedy by default (deterministic), runs ``model.generate`` on
its own thread and streams text through ``TextIteratorStreamer`` to an
``on_token`` callback on the calling thread. A ``StoppingCriteria`` reads the
``CancelToken`` before every new token, so a cancel returns within one
decoding step; the partial draft comes back marked ``cancelled``.

torch and transformers are imported inside the functions that need them, so
importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.cancel import CancelToken
from inference.drafting.draft import ReportDraft
from inference.drafting.inputs import ReportInputs
from inference.drafting.prompt import build_messages, render_prompt
from inference.drafting.streaming import DEFAULT_STREAM_INTERVAL_S, cancel_criteria, make_streamer
from inference.environ import restored_environ
from inference.errors import ModelError

logger = logging.getLogger(__name__)

TokenCallback = Callable[[str], None]
DEFAULT_MAX_NEW_TOKENS = 768
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def check_model_folder(folder: Path) -> None:
    """Raise ``ModelError`` unless ``folder`` holds a config, safetensors weights and a tokenizer."""
    if not folder.is_dir():
        raise ModelError(f"language model folder {folder} does not exist or is not a folder")
    names = {p.name for p in folder.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not any(n.endswith(".safetensors") for n in names):
        pickled = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
        extra = f" (found only {', '.join(pickled)}: pickle weights are not loaded)" if pickled else ""
        missing.append(f"model weights in safetensors format (*.safetensors){extra}")
    elif "model.safetensors.index.json" in names:
        index = json.loads((folder / "model.safetensors.index.json").read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()) - names)
        if shards:
            missing.append(f"weight shards {', '.join(shards)}")
    if not any(n in names for n in _TOKENIZER_FILES):
        missing.append(f"a tokenizer ({' or '.join(_TOKENIZER_FILES)})")
    if missing:
        raise ModelError(f"language model folder {folder} is missing {'; '.join(missing)}")


@contextlib.contextmanager
def offline_environment() -> Iterator[None]:
    """Set HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE for the duration of a call, then restore them."""
    with restored_environ(_OFFLINE_ENV):
        os.environ.update(_OFFLINE_ENV)
        yield


def model_identity(folder: Path) -> dict[str, str]:
    """Name, version, commit and architecture of a model folder, as far as its files tell."""
    info = {"model": folder.name, "model_version": "", "commit": "", "architecture": "", "model_type": ""}
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        info["architecture"] = ",".join(config.get("architectures") or [])
        info["model_type"] = str(config.get("model_type", ""))
        info["model_version"] = str(config.get("model_version") or config.get("version") or "")
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        info["commit"] = folder.name  # a Hugging Face cache snapshot: models--org--name/snapshots/<commit>
        info["model"] = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
    for name in ("VERSION", "version.txt"):
        path = folder / name
        if not info["model_version"] and path.is_file():
            info["model_version"] = path.read_text(encoding="utf-8").strip()[:64]
    return info


@dataclass
class Generation:
    """One generation: the text, how many tokens, how long, and whether it was cancelled."""

    text: str
    prompt_tokens: int
    new_tokens: int
    time_to_first_token_s: float | None
    total_s: float
    cancelled: bool


class TransformersDrafter:
    """Drafts reports with a causal LM from ``model_dir``; the model loads on first use (or ``load()``).

    ``device`` is "auto", "cpu", "cuda", "cuda:N" or "mps" (``inference.device``);
    the dtype is bfloat16 on CUDA where supported (else float16), float32
    elsewhere, unless ``dtype`` names one ("float32", "float16", "bfloat16").
    ``stream_interval_s`` is the least time between two ``on_token`` calls
    (text arriving sooner is joined to the next chunk; 0 streams every token).
    """

    name = "transformers"

    def __init__(self, model_dir: Path | str, device: str = "auto", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 dtype: str | None = None, stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S) -> None:
        self.model_dir = Path(model_dir).expanduser().resolve()
        self.device_preference = device
        self.max_new_tokens = max_new_tokens
        self.dtype_name = dtype
        self.stream_interval_s = stream_interval_s
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: Any = None
        self._meta: dict[str, Any] = {}
        check_model_folder(self.model_dir)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer (loads the model first if needed)."""
        self.load()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The loaded model (loads it first if needed)."""
        self.load()
        return self._model

    def load(self) -> None:
        """Load tokenizer and model onto the chosen device (once; thread-safe)."""
        with self._lock:
            if self._model is None:
                self._load()

    def unload(self) -> None:
        """Drop the model and tokenizer and give cached GPU memory back (the next draft loads them again)."""
        from inference.device import release_device_memory

        with self._lock:
            device = self._device.device if self._device is not None else "cpu"
            self._model = self._tokenizer = self._device = None
        release_device_memory(device)

    def _load(self) -> None:
        from inference.device import choose_device

        check_model_folder(self.model_dir)
        t0 = time.perf_counter()
        common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
        # imported inside the offline context: huggingface_hub reads HF_HUB_OFFLINE when first imported
        with offline_environment():
            import torch
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer
        device = choose_device(self.device_preference, False)
        dtype = _dtype(torch, device.device, self.dtype_name)
        try:
            with offline_environment():
                tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), **common)
                model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), use_safetensors=True, dtype=dtype,
                                                             **common)
        except Exception as exc:
            raise ModelError(f"could not load the language model in {self.model_dir}: {exc}") from exc
        model.to(device.device)
        model.eval()
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer, self._model, self._device = tokenizer, model, device
        n_params = sum(p.numel() for p in model.parameters())
        self._meta = {**model_identity(self.model_dir), "model_path": str(self.model_dir),
                      "transformers_version": transformers.__version__, "device": device.device,
                      "device_name": device.name, "dtype": str(dtype).removeprefix("torch."), "parameters": n_params,
                      "load_s": round(time.perf_counter() - t0, 4)}
        logger.info("loaded language model %s (%d parameters) on %s as %s", self.model_dir.name, n_params,
                    device.name, self._meta["dtype"])

    def prompt(self, inputs: ReportInputs) -> tuple[str, bool]:
        """(prompt text, chat template used) for ``inputs``: what the model will see."""
        return render_prompt(self.tokenizer, build_messages(inputs))

    def draft(self, inputs: ReportInputs, on_token: TokenCallback | None = None,
              cancel: CancelToken | None = None, max_new_tokens: int | None = None) -> ReportDraft:
        """Draft a report: stream text to ``on_token``; a cancel returns the partial draft marked ``cancelled``."""
        t0 = time.perf_counter()
        prompt, chat = self.prompt(inputs)
        gen = self.generate(prompt, on_token=on_token, cancel=cancel, max_new_tokens=max_new_tokens,
                            add_special_tokens=not chat)
        meta = {**self._meta, "drafter": self.name, "ai_generated": True, "automated": True, "reviewed": False,
                "analysis": inputs.analysis, "chat_template": chat, "prompt_tokens": gen.prompt_tokens,
                "new_tokens": gen.new_tokens, "max_new_tokens": max_new_tokens or self.max_new_tokens,
                "greedy": True, "time_to_first_token_s": _round(gen.time_to_first_token_s),
                "generate_s": round(gen.total_s, 4), "total_s": round(time.perf_counter() - t0, 4),
                "cancelled": gen.cancelled, "raw_text": gen.text}
        return ReportDraft.from_text(gen.text, meta)

    def generate(self, prompt: str, on_token: TokenCallback | None = None, cancel: CancelToken | None = None,
                 max_new_tokens: int | None = None, add_special_tokens: bool = True) -> Generation:
        """Greedy generation from ``prompt`` on a worker thread, streamed to ``on_token``."""
        import torch
        from transformers import StoppingCriteriaList

        self.load()
        tokenizer, model = self._tokenizer, self._model
        limit = max_new_tokens or self.max_new_tokens
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
        enc = {k: v.to(self._device.device) for k, v in enc.items()}
        n_prompt = int(enc["input_ids"].shape[1])
        context = _context_length(model.config)
        if context is not None and n_prompt + limit > context:
            raise ModelError(f"the prompt ({n_prompt} tokens) plus {limit} new tokens exceed the context of "
                             f"{context} tokens of the language model in {self.model_dir}")
        stop = threading.Event()
        token = cancel or CancelToken()
        streamer = make_streamer(tokenizer, self.stream_interval_s)
        config = greedy_config(model.generation_config, limit, tokenizer)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    outcome["sequences"] = model.generate(
                        **enc, generation_config=config, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([cancel_criteria(token, stop)]))
            except BaseException as exc:  # reported on the calling thread
                outcome["error"] = exc
                streamer.end()

        t0 = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        callback_error: BaseException | None = None
        worker = threading.Thread(target=run, name="llm-generate", daemon=True)
        worker.start()
        for chunk in streamer:
            if not chunk:
                continue
            if first is None:
                first = time.perf_counter() - t0
            pieces.append(chunk)
            if on_token is not None and callback_error is None:
                try:
                    on_token(chunk)
                except BaseException as exc:  # stop generating, then re-raise once the thread is done
                    callback_error = exc
                    stop.set()
        worker.join()
        total = time.perf_counter() - t0
        if callback_error is not None:
            raise callback_error
        if "error" in outcome:
            raise ModelError(f"the language model in {self.model_dir} failed while generating: "
                             f"{outcome['error']}") from outcome["error"]
        new_tokens = int(outcome["sequences"].shape[1]) - n_prompt
        cancelled = token.cancelled
        logger.info("generated %d tokens in %.2f s (first after %s s)%s", new_tokens, total,
                    "-" if first is None else f"{first:.3f}", " - cancelled" if cancelled else "")
        return Generation("".join(pieces), n_prompt, new_tokens, first, total, cancelled)


def greedy_config(base: Any, max_new_tokens: int, tokenizer: Any) -> Any:
    """A copy of a model's generation config set to greedy decoding (sampling options cleared)."""
    config = copy.deepcopy(base)
    config.do_sample = False
    config.num_beams = 1
    for name in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
        if hasattr(config, name):
            setattr(config, name, None)
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return config


def _dtype(torch: Any, device: str, name: str | None) -> Any:
    if name:
        try:
            return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
        except KeyError:
            raise ModelError(f"unknown dtype '{name}': use float32, float16 or bfloat16") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _context_length(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
