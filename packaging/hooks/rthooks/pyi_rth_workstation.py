"""Runtime hook of the frozen workstation: runs before any application code.

The bundle must never download anything: Hugging Face and transformers are
forced offline (models load from local folders only, ``local_files_only=True``
in the engine as well), telemetry is off, and MONAI/torch hubs are never used.
These are set unconditionally so that an environment variable left over on a
workstation cannot switch downloads back on.
"""

import os

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
              "HF_HUB_DISABLE_UPDATE_CHECK", "DO_NOT_TRACK"):
    os.environ[_name] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the tokenizer thread pool
del _name
