"""transformers: lazy modules (``_LazyModule``) that static analysis cannot follow.

``from transformers import AutoModelForCausalLM`` resolves names through
``importlib`` at run time, and the model class of a local folder is found
from its ``config.json`` ``model_type`` (``transformers.models.<type>``).
We collect the library's core modules and the model packages of the causal
LM architectures the report drafter supports (``LLM_ARCHITECTURES``);
``WORKSTATION_BUNDLE_LLM_ARCHS`` overrides the list at build time (comma
separated model types, or ``all`` for every architecture: about +150 MB).

Replaces the pyinstaller-hooks-contrib hook, so what that hook does is kept:
sources are collected next to the byte code (``pyz+py``: transformers reads
source with ``inspect``), and the metadata of its dependencies is copied
(``transformers.utils.import_utils`` checks versions through
``importlib.metadata``).
"""

import os

from PyInstaller.utils.hooks import collect_submodules, copy_metadata, get_module_attribute, is_module_satisfies

LLM_ARCHITECTURES = (
    "llama", "mistral", "ministral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "phi", "phi3", "gemma", "gemma2",
    "gemma3", "granite", "olmo2", "smollm3", "gpt2", "stablelm", "cohere", "cohere2", "glm4", "exaone4",
)
ALWAYS = ("auto",)
# never needed by a desktop app that only loads local causal LMs for inference
SKIPPED = ("transformers.cli", "transformers.commands", "transformers.testing_utils", "transformers.trainer",
           "transformers.training_args", "transformers.hyperparameter_search", "transformers.optimization",
           "transformers.benchmark", "transformers.onnx", "transformers.exporters", "transformers.pipelines",
           "transformers.data", "transformers.distributed", "transformers.sagemaker", "transformers.kernels",
           "transformers.models.deprecated")

_env = os.environ.get("WORKSTATION_BUNDLE_LLM_ARCHS", "").strip()
_all = _env.lower() == "all"
_archs = set(ALWAYS) | (set(LLM_ARCHITECTURES) if not _env or _all else {a.strip() for a in _env.split(",")})


def _keep(name: str) -> bool:
    if name.startswith(SKIPPED):
        return False
    parts = name.split(".")
    if len(parts) >= 3 and parts[1] == "models":
        return _all or parts[2] in _archs
    return True


module_collection_mode = "pyz+py"
hiddenimports = collect_submodules("transformers", filter=_keep)

datas = []
try:
    _deps = get_module_attribute("transformers.dependency_versions_table", "deps")
except Exception:  # an unexpected layout: fall back to the packages transformers checks at import
    _deps = {n: n for n in ("huggingface-hub", "tokenizers", "safetensors", "numpy", "packaging", "pyyaml",
                            "regex", "tqdm", "filelock", "torch")}
for _name, _req in _deps.items():
    try:
        if is_module_satisfies(_req):
            datas += copy_metadata(_name)
    except Exception:  # not installed, or no metadata: nothing to copy
        pass
