"""Align a prior study to the current one: rigid (then affine if needed) SimpleITK registration in LPS.

Both volumes are block-averaged to about ``RegistrationOptions.spacing_mm``
(4 mm by default: a 300-slice pair registers in seconds, and mutual
information still reaches sub-voxel accuracy), clipped to the HU range where
lung, soft tissue and bone differ, and handed to SimpleITK as images whose
physical space is the volumes' LPS (SimpleITK's own convention, so no axis
flips). The metric (Mattes mutual information) is sampled only inside the
current study's body (voxels above ``body_hu``, which keeps lung parenchyma and
bone but drops the air around the patient).

The result maps current -> prior points (SimpleITK's fixed -> moving
direction; the current study is the fixed image). Its quality is checked
independently of the optimiser: the normalised cross-correlation of the two
images over the body (the part inside the prior's field) after alignment. Below ``min_correlation`` after the
rigid stage an affine stage is tried; if that does not pass either, the result
says ``passed=False`` with the reason, and callers must not use it silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.cancel import CancelToken
from inference.contract import ProgressCallback, no_progress
from inference.errors import GeometryError
from inference.followup.model import RegistrationResult
from inference.volume import Volume

logger = logging.getLogger(__name__)

QUALITY_NAME = "normalised cross-correlation over the body after alignment"
METRIC_NAME = "Mattes mutual information"
MIN_OVERLAP = 0.5
"""Share of the smaller study's body that must lie in the other's field after alignment for the check to score.

Follow-ups rarely cover the same length (a chest-only prior to a chest-abdomen
current): what must overlap is most of whichever study covers less, not most of
the current one; an alignment that pushes the anatomy apart overlaps in neither.
"""
MIN_VOXELS_PER_AXIS = 4
"""Fewer voxels than this along an axis at the registration spacing: too little anatomy to align (and ITK's
multi-resolution smoothing cannot run)."""


@dataclass(frozen=True)
class RegistrationOptions:
    """Knobs of ``register``; the defaults suit CT of the chest and abdomen.

    ``min_correlation`` is the quality threshold a transform must reach to be
    used. ``allow_affine`` lets a failing rigid stage be followed by an affine
    one (scaling and shear absorb breath-hold and reconstruction differences).
    ``seed`` fixes the metric's random sampling, so runs are reproducible.
    """

    spacing_mm: float = 4.0
    hu_range: tuple[float, float] = (-1000.0, 1500.0)
    body_hu: float = -900.0
    histogram_bins: int = 32
    sampling_fraction: float = 0.25
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 200
    min_correlation: float = 0.8
    allow_affine: bool = True
    seed: int = 20240315


def downsample(volume: Volume, spacing_mm: float) -> Volume:
    """Block-average ``volume`` by whole factors to voxels of about ``spacing_mm`` (never finer than it was).

    The affine's origin moves to the centre of the first block, so the
    result covers the same LPS space as the input (trailing partial blocks are dropped).
    """
    factors = [max(1, round(spacing_mm / s)) for s in volume.spacing]
    if factors == [1, 1, 1]:
        return volume
    arr = np.asarray(volume.array, dtype=np.float32)
    shape = [n // f for n, f in zip(arr.shape, factors, strict=True)]
    if min(shape) < 1:
        raise GeometryError(f"volume {arr.shape} is too small to downsample by {factors}")
    cut = arr[: shape[0] * factors[0], : shape[1] * factors[1], : shape[2] * factors[2]]
    blocks = cut.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    small = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] * np.asarray(factors, dtype=np.float64)[None, :]
    affine[:3, 3] = volume.index_to_lps([(f - 1) / 2.0 for f in factors])
    return Volume(small, affine, modality=volume.modality, units=volume.units)


def to_sitk(volume: Volume, hu_range: tuple[float, float] | None = None) -> Any:
    """A SimpleITK float image whose physical space is the volume's LPS.

    SimpleITK indexes ``(column, row, slice)`` (x fastest), so its spacing and
    direction columns are the volume's in reverse axis order.
    """
    import SimpleITK as sitk  # noqa: N813 (its documented alias)

    arr = np.asarray(volume.array, dtype=np.float32)
    if hu_range is not None:
        arr = np.clip(arr, hu_range[0], hu_range[1]) - np.float32(hu_range[0])  # >= 0: moments are meaningful
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    sp = volume.spacing
    image.SetSpacing((sp[2], sp[1], sp[0]))
    image.SetOrigin(tuple(float(v) for v in volume.affine[:3, 3]))
    d = volume.direction[:, ::-1]
    image.SetDirection(tuple(float(v) for v in d.flatten()))
    return image


def transform_matrix(transform: Any) -> npt.NDArray[np.float64]:
    """The 4x4 homogeneous matrix of a SimpleITK matrix-offset transform (Euler3D, Affine...)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    m[:3, 3] = np.asarray(transform.GetTranslation(), dtype=np.float64)
    center = np.asarray(transform.GetCenter(), dtype=np.float64)
    m[:3, 3] += center - m[:3, :3] @ center
    return m


def register(
    current: Volume,
    prior: Volume,
    *,
    options: RegistrationOptions | None = None,
    progress: ProgressCallback = no_progress,
    cancel: CancelToken | None = None,
) -> RegistrationResult:
    """Align ``prior`` to ``current``; the result maps current LPS points to prior LPS points.

    ``progress`` receives fractions 0..1 with the stage; ``cancel`` is checked
    at every optimiser iteration (``CancelledError`` raised). A result that
    fails its quality check is returned with ``passed=False`` and the reason.
    """
    import SimpleITK as sitk  # noqa: N813 (its documented alias)

    opts = options or RegistrationOptions()
    token = cancel or CancelToken()
    start = time.perf_counter()
    progress(0.0, "preparing volumes for registration")
    fixed_vol = downsample(current, opts.spacing_mm)
    moving_vol = downsample(prior, opts.spacing_mm)
    fixed = to_sitk(fixed_vol, opts.hu_range)
    moving = to_sitk(moving_vol, opts.hu_range)
    body = np.asarray(fixed_vol.array > opts.body_hu, dtype=np.uint8)
    if int(body.sum()) < 100:
        raise GeometryError("the current study holds too little body above the air threshold to register")
    thin = _too_thin(fixed_vol, "current") or _too_thin(moving_vol, "prior")
    if thin:
        progress(1.0, "registration not possible")
        return _refused(thin, opts, time.perf_counter() - start)
    prior_body = np.asarray(moving_vol.array > opts.body_hu, dtype=np.uint8)
    mask = sitk.GetImageFromArray(body)
    mask.CopyInformation(fixed)
    token.raise_if_cancelled()

    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    identity_ncc, _ = _check(fixed, moving, sitk.Euler3DTransform(), body, prior_body)
    rigid, rigid_metric = _run_stage(fixed, moving, mask, initial, opts, progress, token, (0.05, 0.6), "rigid")
    rigid_m = transform_matrix(rigid)
    ncc, overlap = _check(fixed, moving, rigid, body, prior_body)
    kind, matrix, metric = "rigid", rigid_m, rigid_metric
    if ncc < opts.min_correlation and opts.allow_affine:
        affine0 = sitk.AffineTransform(3)
        affine0.SetMatrix(rigid.GetMatrix())
        affine0.SetTranslation(rigid.GetTranslation())
        affine0.SetCenter(rigid.GetCenter())
        affine, affine_metric = _run_stage(fixed, moving, mask, affine0, opts, progress, token, (0.6, 0.95), "affine")
        affine_ncc, affine_overlap = _check(fixed, moving, affine, body, prior_body)
        if affine_ncc > ncc:
            kind, matrix, metric, ncc, overlap = (
                "affine", transform_matrix(affine), affine_metric, affine_ncc, affine_overlap)
    passed = ncc >= opts.min_correlation
    if passed:
        reason = ""
    elif overlap < MIN_OVERLAP:
        reason = (f"alignment check failed: after alignment the studies overlap in only {overlap:.0%} of the "
                  f"smaller one's body (at least {MIN_OVERLAP:.0%} needed to check it); the studies may not "
                  "show the same anatomy")
    else:
        reason = (f"alignment check failed: {QUALITY_NAME} {ncc:.3f} below {opts.min_correlation:.2f} "
                  f"(before alignment {identity_ncc:.3f}); the studies may not show the same anatomy")
    elapsed = time.perf_counter() - start
    progress(1.0, "registration done")
    logger.info(
        "registered prior to current (%s): NCC %.3f (identity %.3f) in %.1f s", kind, ncc, identity_ncc, elapsed
    )
    return RegistrationResult.from_array(
        matrix,
        kind=kind,
        metric_name=METRIC_NAME,
        metric_value=float(metric),
        quality_name=QUALITY_NAME,
        quality_value=round(float(ncc), 4),
        quality_threshold=opts.min_correlation,
        passed=passed,
        reason=reason,
        elapsed_s=round(elapsed, 3),
    )


def _run_stage(
    fixed: Any,
    moving: Any,
    mask: Any,
    initial: Any,
    opts: RegistrationOptions,
    progress: ProgressCallback,
    token: CancelToken,
    span: tuple[float, float],
    stage: str,
) -> tuple[Any, float]:
    """One multi-resolution optimisation from ``initial``; returns the optimised transform and metric."""
    import SimpleITK as sitk  # noqa: N813 (its documented alias)

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=opts.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(opts.sampling_fraction, opts.seed)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-3,
        numberOfIterations=opts.iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    smallest = min(*fixed.GetSize(), *moving.GetSize())
    levels = [
        (s, g)
        for s, g in zip(opts.shrink_factors, opts.smoothing_sigmas, strict=True)
        if smallest // s >= MIN_VOXELS_PER_AXIS
    ]
    if not levels:
        levels = [(1, 0.0)]
    reg.SetShrinkFactorsPerLevel([s for s, _ in levels])
    reg.SetSmoothingSigmasPerLevel([g for _, g in levels])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    transform = initial.__class__(initial)
    reg.SetInitialTransform(transform, inPlace=True)
    level = [0]
    width = (span[1] - span[0]) / len(levels)

    def on_iteration() -> None:
        if token.cancelled:  # an exception raised here would not cross SimpleITK: ask it to stop instead
            reg.StopRegistration()
            return
        it = reg.GetOptimizerIteration()
        frac = span[0] + width * (level[0] + min(it / opts.iterations, 1.0))
        if it % 10 == 0:
            progress(min(frac, span[1]), f"{stage} registration, level {level[0] + 1} of {len(levels)}")

    def on_level() -> None:
        if reg.GetCurrentLevel() > 0:
            level[0] = int(reg.GetCurrentLevel())

    reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
    reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:
        token.raise_if_cancelled()
        raise GeometryError(f"{stage} registration failed: {exc}") from exc
    token.raise_if_cancelled()
    return transform, float(reg.GetMetricValue())


def _too_thin(volume: Volume, which: str) -> str:
    """Why ``volume`` (at the registration spacing) is too small along an axis to align; "" when it is not."""
    for n, step, axis in zip(volume.shape, volume.spacing, ("slices", "rows", "columns"), strict=True):
        if n < MIN_VOXELS_PER_AXIS:
            return (f"registration not possible: the {which} study covers only {n * step:.0f} mm across its "
                    f"{axis}, too little anatomy to align and check (the studies hardly overlap)")
    return ""


def _refused(reason: str, opts: RegistrationOptions, elapsed_s: float) -> RegistrationResult:
    """A result that was never aligned: identity, ``passed=False``, with the reason."""
    return RegistrationResult.from_array(
        np.eye(4), kind="rigid", metric_name=METRIC_NAME, metric_value=0.0, quality_name=QUALITY_NAME,
        quality_value=0.0, quality_threshold=opts.min_correlation, passed=False, reason=reason,
        elapsed_s=round(elapsed_s, 3),
    )


def _check(fixed: Any, moving: Any, transform: Any, body: npt.NDArray[np.uint8],
           prior_body: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """(normalised cross-correlation over the shared body, overlap share) of ``moving`` aligned by ``transform``.

    The correlation counts only the current's body voxels that land inside the
    prior's field (the two studies rarely cover the same length). The overlap
    is the larger of two shares: of the current's body inside the prior's field,
    and of the prior's body inside the current's field; below ``MIN_OVERLAP``
    the alignment pushed the anatomy apart (or the studies hardly overlap) and
    the correlation scores 0.
    """
    import SimpleITK as sitk  # noqa: N813 (its documented alias)

    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1.0, sitk.sitkFloat32)
    b_all = sitk.GetArrayViewFromImage(warped)
    inside = (body > 0) & (b_all >= 0.0)  # images are shifted to >= 0; -1 marks outside the prior
    current_share = float(inside.sum()) / max(int((body > 0).sum()), 1)
    prior_share = _prior_share_inside(fixed, moving, transform, prior_body)
    overlap = max(current_share, prior_share)
    if overlap < MIN_OVERLAP or not inside.any():
        return 0.0, overlap
    a = sitk.GetArrayViewFromImage(fixed)[inside].astype(np.float64)
    b = b_all[inside].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return (float((a * b).sum() / denom) if denom > 0 else 0.0), overlap


def _prior_share_inside(fixed: Any, moving: Any, transform: Any, prior_body: npt.NDArray[np.uint8]) -> float:
    """Share of the prior's body (in volume) that ``transform`` places inside the current's field."""
    import SimpleITK as sitk  # noqa: N813 (its documented alias)

    total = int(prior_body.sum())
    if total == 0:
        return 0.0
    mask = sitk.GetImageFromArray(prior_body)
    mask.CopyInformation(moving)
    placed = sitk.Resample(mask, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    voxel_ratio = float(np.prod(fixed.GetSpacing())) / float(np.prod(moving.GetSpacing()))
    return min(1.0, int(sitk.GetArrayViewFromImage(placed).sum()) * voxel_ratio / total)
