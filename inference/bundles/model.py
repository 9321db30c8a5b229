"""A MONAI Model Zoo bundle as an engine model: load, convert, infer, convert back.

Loading (``BundleModel.load``, cached for the last bundle/device used):

- the bundle folder and its files must still resolve inside the models folder
  (a bundle config can evaluate Python: nothing outside that folder is parsed);
- the config's code is audited (``config_audit``): a config that would run code
  outside the allow-list is refused (``UntrustedCodeError``) unless the user
  trusted that exact config (``trust``), and a trusted run says so in the
  provenance notes;
- ``configs/inference.json`` (or YAML), reduced to what the workstation evaluates
  (``config_audit.evaluated_config``), is read with ``monai.bundle.ConfigParser``;
  ``bundle_root`` is set to the bundle folder and ``device`` to the run's device;
- the network: ``models/model.pt`` is a state dict loaded with
  ``torch.load(weights_only=True)`` (unwrapped from a ``"model"`` or
  ``"state_dict"`` key) into the config's ``network_def``; ``models/model.ts`` is
  TorchScript, loaded with ``torch.jit.load``;
- the ``preprocessing`` Compose without its loader transforms (``LoadImaged``,
  ``EnsureChannelFirstd``...: the adapter supplies the image), and the ``inferer``
  (``SlidingWindowInferer`` settings, else the whole image in one call).

Every problem becomes a ``ModelError`` naming the bundle and the reason.

Running: ``spatial.to_model_space`` -> ``sliding.run_network`` (windows stitched
straight into labels: argmax, or a sigmoid threshold at 0.5 for a single-channel
output; the full ``classes x volume`` scores are never held) ->
``spatial.to_input_grid`` (nearest neighbour on the label map).
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundles.config_audit import (
    ConfigAudit,
    UntrustedCodeError,
    audit_config,
    evaluated_config,
    refusal_message,
)
from inference.bundles.layout import BundleInfo, input_spec, is_inside, label_table_from_metadata, read_config_text
from inference.bundles.sliding import WindowSettings, run_network
from inference.bundles.spatial import to_input_grid, to_model_space
from inference.bundles.trust import TrustRecord, trust_for
from inference.contract import ModelOutput, RunContext
from inference.errors import ModelError
from inference.labels import LabelTable
from inference.volume import Volume

logger = logging.getLogger(__name__)

_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


@dataclass
class LoadedBundle:
    """A bundle ready to run on ``device``."""

    network: Any
    preprocessing: Callable[[Any], Any] | None
    settings: WindowSettings
    device: str
    multilabel_sigmoid: bool = False


_cache_lock = threading.Lock()
_cache: dict[tuple[Any, ...], LoadedBundle] = {}


def clear_network_cache() -> None:
    """Drop the cached network (frees its GPU memory), e.g. when the application quits or the device changes."""
    with _cache_lock:
        _cache.clear()


@contextmanager
def _quiet_monai() -> Iterator[None]:
    """MONAI's deprecation chatter about a bundle's transforms means nothing to a radiologist."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _short(exc: BaseException, limit: int = 400) -> str:
    """The first line of an exception's message, capped: enough to act on, short enough to show."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unwrap_state(state: Any) -> Any:
    """A Model Zoo checkpoint is a state dict, sometimes nested under ``model``/``state_dict``."""
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if isinstance(state, dict) and state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}  # saved from DataParallel
    return state


def _multilabel_sigmoid(config: dict[str, Any]) -> bool:
    """True if the config's postprocessing applies a sigmoid (independent, possibly overlapping channels)."""
    post = config.get("postprocessing")
    items = post.get("transforms", []) if isinstance(post, dict) else []
    return any(isinstance(t, dict) and str(t.get("_target_", "")).endswith(("Activationsd", "Activations"))
               and t.get("sigmoid") is True for t in items)


class BundleModel:
    """One bundle of the models folder; ``problem`` is set (and ``run`` refuses) when it is unusable."""

    def __init__(self, info: BundleInfo, models_root: Path) -> None:
        self.info = info
        self.models_root = models_root
        self.name = info.name
        self.id = info.id
        self.version = info.version
        self.problem = info.problem
        self.title = info.title if info.problem is None else f"{info.title} (unusable: {info.problem})"
        self.modalities = info.modalities
        self.path = info.path

    @property
    def labels(self) -> LabelTable:
        """The label table the metadata promises (channel 0 is background)."""
        return label_table_from_metadata(self.info.metadata)

    def _fail(self, what: str, exc: BaseException | None = None) -> ModelError:
        detail = f": {_short(exc)}" if exc is not None else ""
        return ModelError(f"bundle '{self.name}': {what}{detail}")

    def _read_config(self) -> dict[str, Any]:
        path = self.info.config_path
        if path is None:
            raise self._fail("config or weights missing")
        try:
            return read_config_text(path.name, path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self._fail("bad config", exc) from exc

    def code_audit(self) -> ConfigAudit:
        """What code the config holds and whether it stays inside the allow-list (reads JSON only)."""
        return audit_config(self._read_config())

    def trust(self) -> TrustRecord | None:
        """The user's trust in this exact config, if given (``models install --trust-code`` or the window)."""
        return trust_for(self.models_root, self.name, self.info.config_path)

    def check_code(self) -> tuple[dict[str, Any], ConfigAudit, TrustRecord | None]:
        """(config, audit, trust); ``UntrustedCodeError`` if the config needs trust it does not have."""
        config = self._read_config()
        audit = audit_config(config)
        trust = self.trust()
        if not audit.passed and trust is None:
            hint = ("Run it only if you trust its publisher: reinstall it with 'workstation models install ZIP "
                    "--trust-code', or confirm in the window.")
            raise UntrustedCodeError(refusal_message(self.name, audit, hint), audit)
        return config, audit, trust

    def _cache_key(self, device: str) -> tuple[Any, ...]:
        files = [p for p in (self.info.config_path, self.info.weights_path) if p is not None]
        stats = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in files)
        return (str(self.path.resolve()), device, stats)

    def load(self, device: str) -> LoadedBundle:
        """Build the network, preprocessing and inferer settings for ``device`` (see module docstring)."""
        if self.problem:
            raise ModelError(f"bundle '{self.name}' cannot be used: {self.problem}")
        config_path, weights_path = self.info.config_path, self.info.weights_path
        if config_path is None or weights_path is None:
            raise self._fail("config or weights missing")
        if not all(is_inside(p, self.models_root) for p in (self.path, config_path, weights_path)):
            raise self._fail(f"leads outside the models folder {self.models_root}; refused")
        if not _DEVICE_RE.match(device):
            raise self._fail(f"unsupported device '{device}'")
        config, _audit, trust = self.check_code()
        try:
            key = (*self._cache_key(device), trust is not None)
        except OSError as exc:
            raise self._fail("cannot read its files", exc) from exc
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        with _quiet_monai():
            loaded = self._load(config, weights_path, device, trusted=trust is not None)
        with _cache_lock:
            _cache.clear()  # one network at a time: a workstation GPU holds one model well
            _cache[key] = loaded
        return loaded

    def forget(self) -> None:
        """Drop this bundle's cached network (e.g. after a fallback moved it to another device)."""
        with _cache_lock:
            for key in [k for k in _cache if k[0] == str(self.path.resolve())]:
                del _cache[key]

    def _load(self, raw: dict[str, Any], weights_path: Path, device: str, *, trusted: bool) -> LoadedBundle:
        from monai.bundle import ConfigParser
        from monai.inferers import SlidingWindowInferer

        # only what the workstation evaluates (what the audit checked) reaches MONAI
        config = evaluated_config(raw, bundle_root=str(self.path), device=device, trusted=trusted)
        parser = ConfigParser(config)
        try:
            if "imports" in config:
                parser.get_parsed_content("imports")
            preprocessing = parser.get_parsed_content("preprocessing") if "preprocessing" in config else None
            inferer = parser.get_parsed_content("inferer") if "inferer" in config else None
        except Exception as exc:  # a config can fail in any way while evaluating
            raise self._fail("cannot build the preprocessing or inferer from its config", exc) from exc
        if preprocessing is not None and not callable(preprocessing):
            raise self._fail("'preprocessing' in the config is not a transform")
        network = self._network(parser, weights_path, device)
        settings = WindowSettings()
        if isinstance(inferer, SlidingWindowInferer):
            roi = inferer.roi_size
            roi_t = tuple(int(r) for r in (roi if isinstance(roi, (list, tuple)) else [roi] * 3))
            overlap = inferer.overlap
            settings = WindowSettings(
                roi_size=roi_t, sw_batch_size=int(inferer.sw_batch_size),
                overlap=float(overlap) if isinstance(overlap, (int, float)) else tuple(float(o) for o in overlap),
                mode=str(getattr(inferer.mode, "value", inferer.mode)),
                sigma_scale=inferer.sigma_scale if isinstance(inferer.sigma_scale, float)
                else tuple(inferer.sigma_scale),
                padding_mode=str(getattr(inferer.padding_mode, "value", inferer.padding_mode)),
                cval=float(inferer.cval))
        elif inferer is not None:
            logger.info("bundle '%s': inferer %s is not a sliding window; running the whole image at once",
                        self.name, type(inferer).__name__)
        return LoadedBundle(network, preprocessing, settings, device, _multilabel_sigmoid(raw))

    def _network(self, parser: Any, weights_path: Path, device: str) -> Any:
        import torch

        torchscript = weights_path.with_suffix(".ts")
        if (weights_path.suffix == ".pt" and "network_def" not in parser and torchscript.is_file()
                and is_inside(torchscript, self.models_root)):
            weights_path = torchscript  # a bundle shipping both, without a network definition
        rel = weights_path.relative_to(self.path).as_posix()
        if weights_path.suffix == ".ts":
            try:
                jit_load: Any = torch.jit.load  # untyped in torch's stubs
                network = jit_load(str(weights_path), map_location="cpu")
            except Exception as exc:  # TorchScript raises RuntimeError or worse on a damaged file
                raise self._fail(f"cannot load TorchScript {rel}", exc) from exc
        else:
            if "network_def" not in parser:
                raise self._fail("its config has no 'network_def' to load models/model.pt into")
            try:
                network = parser.get_parsed_content("network_def")
            except Exception as exc:
                raise self._fail("cannot build the network from 'network_def'", exc) from exc
            if not isinstance(network, torch.nn.Module):
                raise self._fail(f"'network_def' built a {type(network).__name__}, not a torch module")
            try:
                with warnings.catch_warnings():  # "Detected pickle protocol 4...": noise next to our own message
                    warnings.simplefilter("ignore", UserWarning)
                    state = _unwrap_state(torch.load(str(weights_path), map_location="cpu", weights_only=True))
            except pickle.UnpicklingError as exc:
                raise self._fail(f"cannot read weights {rel}: it holds Python objects, not just tensors "
                                 "(refused: loading it could run code)") from exc
            except Exception as exc:  # corrupt zip, truncated file...
                raise self._fail(f"cannot read weights {rel}", exc) from exc
            if not isinstance(state, dict):
                raise self._fail(f"{rel} holds a {type(state).__name__}, not a state dict")
            try:
                network.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                raise self._fail(f"weights {rel} do not match the network in 'network_def'",
                                 RuntimeError(" ".join(lines[:3]))) from exc
        network.to(device)
        network.eval()
        return network

    def run(self, volume: Volume, ctx: RunContext) -> ModelOutput:
        """Segment ``volume``: a label map on its exact grid, labels from the bundle's metadata."""
        if self.problem:
            raise ModelError(f"bundle '{self.name}' cannot be used: {self.problem}")
        key, spec = input_spec(self.info.metadata)
        channels = int(spec.get("num_channels") or 1)
        if channels != 1:
            raise self._fail(f"the network needs {channels} input channels (e.g. several MR sequences); "
                             "the workstation passes one image")
        ctx.stage(0.02, f"loading {self.title}")
        loaded = self.load(ctx.device.device)
        _config, audit, trust = self.check_code()
        if trust is not None and not audit.passed:
            ctx.note(f"bundle '{self.name}' ran code outside the allow-list ({len(audit.refused)} item(s) in its "
                     f"config), {trust.describe()}")
        if loaded.multilabel_sigmoid and len(self.labels) > 1:
            raise self._fail("multi-label (sigmoid, overlapping channels) outputs are not supported")
        if loaded.preprocessing is None:
            ctx.note(f"bundle '{self.name}' defines no preprocessing: the image was given to the network in RAS "
                     "orientation, at its own spacing and with its raw intensities")
        ctx.stage(0.08, "converting the image to the model's space")
        with _quiet_monai():
            space = to_model_space(volume, loaded.preprocessing, key, self.name)
        ctx.stage(0.15, f"running {self.title}")
        labels, n_channels, attempt = run_network(space.image, loaded.network, loaded.settings, ctx, self.name)
        if attempt.sw_device != loaded.device:
            self.forget()
        ctx.stage(0.92, "placing the labels on the input grid")
        labelmap = to_input_grid(labels, space.affine, volume)
        table = label_table_from_metadata(self.info.metadata, n_channels)
        return ModelOutput(labelmap, table)
