"""The built-in CT analysis pipeline: stages, progress, cancel, and the model output.

Stages run on the coarse canonical grid (``grid``), each in its own module
(body, lungs, nodules, bone, then the spine's levels and the muscle and fat
compartments, which use the spine's centre line); ``assemble`` labels the
full-resolution voxels and ``measurements`` reads the numbers.
``RunContext.stage`` is called between stages (and between slabs of the
full-resolution pass), so a cancel takes effect within about a second.

CPU only: the stages are scipy/numpy mask operations (labelling, hole filling,
running min/max filters) that are memory-bound and already vectorised; moving
them to a GPU would cost more in transfers than it saves at these sizes.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from inference.builtin_ct.assemble import Overlays, assemble, compose_regions
from inference.builtin_ct.body import segment_body
from inference.builtin_ct.bone import segment_bone
from inference.builtin_ct.grid import Canonical, block_mean_max, coarse_factors
from inference.builtin_ct.lungs import segment_lungs
from inference.builtin_ct.measurements import Level, ScanInfo, measure
from inference.builtin_ct.nodules import find_nodules
from inference.builtin_ct.soft_tissue import CAVITY, MUSCLE_ZONE, SUBQ, segment_compartments
from inference.builtin_ct.spine import find_spine
from inference.builtin_ct.table import LABEL_TABLE
from inference.contract import ModelOutput, RunContext
from inference.errors import ModelError
from inference.volume import Volume

logger = logging.getLogger(__name__)

MIN_SHAPE = 8
TRUNK_CODES = (SUBQ, MUSCLE_ZONE, CAVITY)
WALL_CODES = (MUSCLE_ZONE, CAVITY)


def analyse(volume: Volume, ctx: RunContext) -> ModelOutput:
    """Run the whole pipeline on ``volume`` (HU) and return the label map on its grid."""
    if min(volume.shape) < MIN_SHAPE:
        raise ModelError(f"the built-in CT model needs at least {MIN_SHAPE} voxels along each axis, "
                         f"got {volume.shape}")
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(fraction: float, text: str, key: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[key] = now - clock
        clock = now
        ctx.stage(fraction, text)

    canon = Canonical.from_affine(volume.affine, volume.shape)
    full = canon.view(volume.array)
    factors = coarse_factors(canon.spacing, canon.shape)
    spacing = (canon.spacing[0] * factors[0], canon.spacing[1] * factors[1], canon.spacing[2] * factors[2])
    hu, hmax = block_mean_max(full, factors)
    stage(0.1, "segmenting the body", "prepare")
    body = segment_body(hu, spacing)
    stage(0.2, "segmenting lungs and airways", "body")
    lungs = segment_lungs(hu, body.body, spacing)
    stage(0.35, "finding lung nodule candidates", "lungs")
    nodules = find_nodules(hu, lungs.right, lungs.left, spacing)
    stage(0.45, "segmenting bone", "nodules")
    bone = segment_bone(hu, hmax, body.body, spacing, min(canon.spacing[1], canon.spacing[2]))
    stage(0.6, "segmenting muscle and fat", "bone")
    all_bone = bone.zone | bone.marrow
    spine = find_spine(hu, bone.vertebral_marrow, bone.solid, spacing)
    comp = segment_compartments(hu, body.body, body.trunk, lungs.right | lungs.left | lungs.airway, all_bone,
                                bone.lumen, spine.centre_y, spine.centre_x, spacing)
    del hu, hmax
    stage(0.7, "labelling at full resolution", "compartments")
    overlays = Overlays(lungs.right, lungs.left, lungs.airway, nodules.right, nodules.left,
                        bone.zone, bone.marrow, bone.vertebral_marrow)
    region = compose_regions(comp.code, overlays, edges=factors != (1, 1, 1))
    done = assemble(full, region, factors, on_slab=lambda f: ctx.stage(0.7 + 0.2 * f, "labelling at full resolution"))
    stage(0.9, "measuring", "assemble")
    index = canon.index_matrix()
    zs = np.arange(canon.shape[0], dtype=np.float64)
    homog = np.stack([zs, np.zeros_like(zs), np.zeros_like(zs), np.ones_like(zs)])
    slice_z = (volume.affine @ (index @ homog))[2]
    info = ScanInfo(volume.voxel_volume_ml, volume.voxel_volume_ml * 1000.0 / canon.spacing[0],
                    dict(volume.metadata), slice_z, canon.spacing[0])
    chosen, why = spine.level()
    if chosen is not None:
        full_slice = min(max(round(chosen.mid * factors[0] + (factors[0] - 1) / 2.0), 0), canon.shape[0] - 1)
        body_cut, wall_cut = _field_of_view_cut(comp.code[full_slice // factors[0]])
        info.level = Level(chosen.name, full_slice, spine.counted_from, why, body_cut, wall_cut)
    else:
        info.level_problem = why
    if spine.vertebrae:
        info.notes.append(f"vertebrae found (inferior to superior): {spine.summary()}")
    measurements, cautions = measure(done.hist, done.vertebral_marrow_hu_sum, info)
    labelmap = canon.restore(done.labels)
    stage(0.94, "label map ready", "measure")
    for note in [*lungs.notes, *comp.notes, *info.notes]:
        ctx.note(note)
    logger.info("built-in CT: coarse grid %s (blocks %s), %d nodule candidates, timings %s",
                hu_shape(canon.shape, factors), factors, nodules.count,
                {k: round(v, 2) for k, v in timings.items()})
    return ModelOutput(labelmap, LABEL_TABLE, measurements, [], cautions)


def _field_of_view_cut(code: np.ndarray) -> tuple[bool, bool]:
    """Whether the trunk, and its muscle wall, reach the edge of the image on this (coarse) slice."""
    edge = np.concatenate([code[0], code[-1], code[:, 0], code[:, -1]])
    return bool(np.isin(edge, TRUNK_CODES).any()), bool(np.isin(edge, WALL_CODES).any())


def hu_shape(shape: tuple[int, int, int], factors: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape of the coarse grid for ``shape`` and block ``factors``."""
    return (-(-shape[0] // factors[0]), -(-shape[1] // factors[1]), -(-shape[2] // factors[2]))
