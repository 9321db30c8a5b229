"""MONAI Model Zoo bundles from the configured models folder, as engine models.

``discover_bundles(models_dir)`` lists every bundle folder there (reading JSON/YAML
only: no torch import). A broken bundle does not break the listing: it is logged
and returned as a ``BundleModel`` whose ``problem`` says what is wrong and whose
``run`` raises ``ModelError`` with that reason, so ``Engine.get`` of it explains.

Security: a bundle's config can evaluate Python (``$`` expressions) and its
TorchScript is code, so only bundles inside the configured models folder are
loaded. Paths are resolved (symlinks followed) and anything that leads outside
the folder (a symlinked bundle, a symlinked config or weights file) is refused,
both when listing and again just before loading. Weights are read with
``torch.load(weights_only=True)``. Before loading, the config's code is audited
(``config_audit``): code outside an allow-list of MONAI/torch/numpy names runs
only if the user trusted that exact config (``trust``), however the bundle got
into the folder. Install bundles you trust only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inference.bundles.config_audit import ConfigAudit, UntrustedCodeError, audit_config
from inference.bundles.layout import ID_PREFIX, BundleInfo, discover
from inference.bundles.model import BundleModel, clear_network_cache

logger = logging.getLogger(__name__)


def discover_bundles(models_dir: Path) -> list[BundleModel]:
    """The bundles in ``models_dir`` (sorted by folder name), usable or with their ``problem``."""
    root = models_dir.resolve()
    return [BundleModel(info, root) for info in discover(models_dir)]


__all__ = ["ID_PREFIX", "BundleInfo", "BundleModel", "ConfigAudit", "UntrustedCodeError", "audit_config",
           "clear_network_cache", "discover_bundles"]
