"""The demo study: a synthetic chest CT generated from code, with known ground truth.

``ensure_demo_study(cache_dir)`` gives the application something to open on a
fresh machine; ``generate_demo_study`` and ``build_phantom`` give tests a study
whose answers (lung volumes, nodules, %LAA-950) are known exactly; ``generate_demo_prior``
writes the same chest a year earlier in another pose (``prior/`` inside the demo folder), with the
pair's known change (``load_followup_truth``).
"""

from workstation.demo.anatomy import Grid, Phantom, Tissue, build_phantom
from workstation.demo.phantom import (
    DEMO_FOLDER_NAME,
    GENERATOR_VERSION,
    ensure_demo_study,
    generate_demo_study,
)
from workstation.demo.prior import FollowupTruth, NoduleChangeTruth, generate_demo_prior, load_followup_truth
from workstation.demo.truth import DemoTruth, EmphysemaTruth, LungTruth, NoduleTruth, load_truth

__all__ = [
    "DEMO_FOLDER_NAME",
    "GENERATOR_VERSION",
    "DemoTruth",
    "EmphysemaTruth",
    "FollowupTruth",
    "Grid",
    "LungTruth",
    "NoduleChangeTruth",
    "NoduleTruth",
    "Phantom",
    "Tissue",
    "build_phantom",
    "ensure_demo_study",
    "generate_demo_prior",
    "generate_demo_study",
    "load_followup_truth",
    "load_truth",
]
