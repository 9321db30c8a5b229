"""The demo study: a synthetic chest CT generated from code, with known ground truth.

``ensure_demo_study(cache_dir)`` gives the application something to open on a
fresh machine; ``generate_demo_study`` and ``build_phantom`` give tests a study
whose answers (lung volumes, nodules, %LAA-950) are known exactly.
"""

from workstation.demo.anatomy import Grid, Phantom, Tissue, build_phantom
from workstation.demo.phantom import (
    DEMO_FOLDER_NAME,
    GENERATOR_VERSION,
    ensure_demo_study,
    generate_demo_study,
)
from workstation.demo.truth import DemoTruth, EmphysemaTruth, LungTruth, NoduleTruth, load_truth

__all__ = [
    "DEMO_FOLDER_NAME",
    "GENERATOR_VERSION",
    "DemoTruth",
    "EmphysemaTruth",
    "Grid",
    "LungTruth",
    "NoduleTruth",
    "Phantom",
    "Tissue",
    "build_phantom",
    "ensure_demo_study",
    "generate_demo_study",
    "load_truth",
]
