"""Follow-up reading: registration plus lesion matching of a 300-slice CT pair, against plain SimpleITK rigid.

The pair is the demo chest phantom at 300x256x256 (1 mm slices, 1.5 mm
pixels) and its prior (``workstation.demo.prior``: rotated a few degrees and
shifted, one nodule smaller, one absent). Ours: ``inference.followup``'s
``register`` (block-averaged to ~4 mm, body-masked Mattes MI, three levels)
then ``match_lesions`` of the nodules. Baseline: SimpleITK's plain rigid
registration as its documentation shows it (Euler3D, geometry-centred
initialiser, Mattes MI with 50 bins and 1 % random sampling, gradient descent,
shrink 4/2/1 with smoothing 2/1/0) on the full-resolution pair. Both run on
the same threads (``--threads``, default 2: the project's target machine).
Median of ``--repeats``; the ratio is baseline / ours, and the residual of each
at the nodules (against the known pose) says both are worth their time.
Target (issue 15): registration plus matching under 30 s.

usage: python benchmarks/bench_followup.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402

TARGET_S = 30.0
SHAPE = (300, 256, 256)


def _volumes() -> tuple[Any, Any, list[Any], list[Any]]:
    """The current and prior volumes and lesions standing for each study's nodules."""
    from inference.findings.model import Lesion
    from inference.volume import Volume
    from workstation.demo import build_phantom
    from workstation.demo.prior import build_prior_phantom

    def lesions(phantom: Any) -> list[Lesion]:
        return [
            Lesion(
                label=1,
                name="lung_nodule",
                number=i + 1,
                voxels=1,
                volume_ml=math.pi * n.diameter_mm**3 / 6000,
                mean=30.0,
                units="HU",
                centroid_index=(0.0, 0.0, 0.0),
                centroid_lps=n.center,
                long_axis_mm=n.diameter_mm,
                short_axis_mm=n.diameter_mm,
                long_axis_3d_mm=n.diameter_mm,
                short_axis_3d_mm=n.diameter_mm,
                axial_slice=0,
                side=n.side,
            )
            for i, n in enumerate(phantom.nodules)
        ]

    cur, pri = build_phantom(SHAPE), build_prior_phantom(SHAPE)
    return (
        Volume(cur.hu, cur.grid.affine, modality="CT", units="HU"),
        Volume(pri.hu, pri.grid.affine, modality="CT", units="HU"),
        lesions(cur),
        lesions(pri),
    )


def _plain_rigid(current: Any, prior: Any) -> np.ndarray:
    """SimpleITK's documented rigid registration on the full-resolution pair; current -> prior 4x4."""
    import SimpleITK as sitk  # noqa: N813 - the library's own convention

    from inference.followup.registration import to_sitk, transform_matrix

    fixed, moving = to_sitk(current), to_sitk(prior)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.01, 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsGradientDescent(
        learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6, convergenceWindowSize=10
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    out = reg.Execute(fixed, moving)
    if out.GetName() == "CompositeTransform":
        out = sitk.CompositeTransform(out).GetNthTransform(0)
    return transform_matrix(sitk.Euler3DTransform(out))


def main() -> int:
    """Print both timings, the ratio and the residuals; exit 1 when ours misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import SimpleITK as sitk  # noqa: N813 - the library's own convention

    from inference.followup.matching import match_lesions
    from inference.followup.registration import register
    from workstation.demo.prior import current_to_prior

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    current, prior, cur_lesions, pri_lesions = _volumes()
    truth = current_to_prior()
    centres = np.asarray([x.centroid_lps for x in cur_lesions])

    def residual(m: np.ndarray) -> float:
        want = centres @ truth[:3, :3].T + truth[:3, 3]
        return float(np.linalg.norm(centres @ m[:3, :3].T + m[:3, 3] - want, axis=1).max())

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, SimpleITK threads {args.threads}; pair {SHAPE}")
    ours, base = [], []
    ours_res = base_res = 0.0
    statuses: list[str] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = register(current, prior)
        changes = match_lesions(cur_lesions, pri_lesions, result, 366)
        ours.append(time.perf_counter() - t0)
        ours_res, statuses = residual(result.array), [c.status.value for c in changes]
        t0 = time.perf_counter()
        m = _plain_rigid(current, prior)
        base.append(time.perf_counter() - t0)
        base_res = residual(m)
    o, b = statistics.median(ours), statistics.median(base)
    print(
        f"ours (register + match): median {o:.2f} s of {args.repeats}; residual at nodules {ours_res:.2f} mm; "
        f"statuses {statuses}"
    )
    print(f"baseline (SimpleITK plain rigid, full resolution): median {b:.2f} s; residual at nodules {base_res:.2f} mm")
    print(f"ratio baseline/ours: {b / o:.1f}x; target ours < {TARGET_S:.0f} s: {'met' if o < TARGET_S else 'MISSED'}")
    return 0 if o < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
