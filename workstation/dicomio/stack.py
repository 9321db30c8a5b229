"""Geometry of a stack of planes: order, spacing, tilt, repeats, and the QA report.

Slices are ordered by the projection of their position onto the slice normal,
never by InstanceNumber or file name. Tilt and non-uniform spacing are detected
from ImagePositionPatient/ImageOrientationPatient alone (vendors disagree on the
sign of GantryDetectorTilt, and PatientPosition never rotates anything).
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from inference.errors import NotAVolumeError
from workstation.dicomio.qa import SeriesQA, Status
from workstation.dicomio.slices import ImagePlane

logger = logging.getLogger(__name__)

POSITION_TOL_MM = 0.01
SPACING_REL_TOL = 0.02
SHIFT_TOL_PX = 0.05


@dataclass
class StackGeometry:
    """One volume's planes in order along the normal, and how to make a regular grid of them."""

    planes: list[ImagePlane]
    positions: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]
    spacing: float
    uniform: bool
    offsets: npt.NDArray[np.float64]
    reference_offset: npt.NDArray[np.float64]
    needs_shift: bool
    tilt_degrees: float

    @property
    def target_count(self) -> int:
        """Slices in the regular output grid."""
        if len(self.planes) == 1 or self.uniform:
            return len(self.planes)
        return round(float(self.positions[-1] - self.positions[0]) / self.spacing) + 1

    def affine(self) -> npt.NDArray[np.float64]:
        """Index (slice, row, column) -> LPS of the regular output grid."""
        first = self.planes[0]
        dr, dc = first.pixel_spacing
        origin = (
            first.ipp
            - self.offsets[0, 0] * first.column_direction
            - self.offsets[0, 1] * first.row_direction
            + self.reference_offset[0] * first.column_direction
            + self.reference_offset[1] * first.row_direction
        )
        aff = np.eye(4)
        aff[:3, 0] = self.normal * self.spacing
        aff[:3, 1] = first.column_direction * dr
        aff[:3, 2] = first.row_direction * dc
        aff[:3, 3] = origin
        return aff


@dataclass
class StackPlan:
    """The volumes a series makes, with its QA report."""

    volumes: list[StackGeometry]
    qa: SeriesQA
    excluded: list[ImagePlane] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``volume``, ``multi_volume`` or ``single_image``."""
        if len(self.volumes) > 1:
            return "multi_volume"
        return "single_image" if len(self.volumes[0].planes) == 1 else "volume"


def _grid_key(p: ImagePlane) -> tuple[object, ...]:
    return (
        p.rows,
        p.columns,
        round(p.pixel_spacing[0], 3),
        round(p.pixel_spacing[1], 3),
        tuple(np.round(p.iop, 3)),
    )


def orientation_label(normal: npt.NDArray[np.float64]) -> str:
    """Axial, coronal, sagittal or oblique, from the slice normal."""
    axis = int(np.argmax(np.abs(normal)))
    name = ("sagittal", "coronal", "axial")[axis]
    return name if abs(normal[axis]) > 0.9 else f"oblique (closest to {name})"


def plan_stack(planes: list[ImagePlane], series_label: str = "series") -> StackPlan:
    """Work out the volume(s) a set of planes makes; raise ``NotAVolumeError`` if none."""
    if not planes:
        raise NotAVolumeError(f"{series_label}: no image planes with position and orientation")
    qa = SeriesQA()
    groups: dict[tuple[object, ...], list[ImagePlane]] = defaultdict(list)
    for p in planes:
        groups[_grid_key(p)].append(p)
    main_key = max(groups, key=lambda k: len(groups[k]))
    main = groups[main_key]
    excluded = [p for k, g in groups.items() if k != main_key for p in g]
    if excluded:
        qa.add("mixed sizes", Status.WARNING,
               f"{len(groups)} different sizes/orientations among {len(planes)} planes",
               f"kept the {len(main)} planes of {main[0].rows}x{main[0].columns}, left out {len(excluded)}")
    else:
        qa.add("mixed sizes", Status.OK, f"all {len(planes)} planes {main[0].rows}x{main[0].columns}")
    main, dupes = _drop_duplicates(main)
    if dupes:
        qa.add("duplicates", Status.WARNING, f"{dupes} duplicate copies of the same instance",
               "ignored the copies")
    normal = main[0].normal
    qa.add("orientation", Status.OK, f"{orientation_label(normal)}; patient position "
           f"{main[0].header.patient_position or 'not given'} (reported only, never used for geometry)")
    volumes = _split_repeats(main, normal, qa)
    geoms = [_geometry(v, normal) for v in volumes]
    _qa_geometry(geoms, qa)
    return StackPlan(geoms, qa, excluded)


def _drop_duplicates(planes: list[ImagePlane]) -> tuple[list[ImagePlane], int]:
    seen: set[tuple[object, ...]] = set()
    out: list[ImagePlane] = []
    for p in planes:
        uid = p.header.sop_instance_uid
        key = (uid, p.frame, p.tile, tuple(np.round(p.ipp, 3))) if uid else (p.header.ref, p.frame, p.tile)
        if key in seen:
            continue
        seen.add(key)
        out.append(p)
    return out, len(planes) - len(out)


def _cluster(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Label positions equal within tolerance with the same cluster index (in sorted order)."""
    order = np.argsort(values, kind="stable")
    labels = np.empty(len(values), dtype=np.int64)
    current, last = -1, -math.inf
    for idx in order:
        if values[idx] - last > POSITION_TOL_MM:
            current += 1
        labels[idx] = current
        last = values[idx]
    return labels


def _split_repeats(planes: list[ImagePlane], normal: npt.NDArray[np.float64], qa: SeriesQA) -> list[list[ImagePlane]]:
    d = np.array([p.ipp @ normal for p in planes])
    labels = _cluster(d)
    counts = Counter(labels.tolist())
    repeats = max(counts.values())
    if repeats == 1:
        qa.add("repeated positions", Status.OK, "each position occurs once")
        return [planes]

    def order_key(p: ImagePlane) -> tuple[object, ...]:
        temporal = tuple(math.inf if math.isnan(t) else t for t in p.temporal)
        return (*temporal, p.header.acquisition_time, p.header.instance_number or 0, p.frame, p.tile)

    by_pos: dict[int, list[ImagePlane]] = defaultdict(list)
    for label, p in zip(labels.tolist(), planes, strict=True):
        by_pos[label].append(p)
    volumes: list[list[ImagePlane]] = [[] for _ in range(repeats)]
    for group in by_pos.values():
        for t, p in enumerate(sorted(group, key=order_key)):
            volumes[t].append(p)
    uneven = len(set(counts.values())) > 1
    qa.add("repeated positions", Status.WARNING if uneven else Status.OK,
           f"{len(counts)} positions occur up to {repeats} times (time points or echoes)",
           f"split into {repeats} volumes by temporal position/echo" + (
               "; some positions lack a repeat" if uneven else ""))
    return volumes


def _median_rows(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``np.median(a, axis=0)``, bit for bit, without the ``numpy.ma`` import its first call costs (~8 ms)."""
    if np.isnan(a).any():
        return np.asarray(np.median(a, axis=0), dtype=np.float64)
    ordered = np.sort(a, axis=0)
    half = len(ordered) // 2
    # as np.median's mean: a sum that starts from 0.0 (so -0.0 becomes 0.0), then the division
    middle = 0.0 + ordered[half] if len(ordered) % 2 else (0.0 + ordered[half - 1] + ordered[half]) / 2
    return np.asarray(middle, dtype=np.float64)


def _geometry(planes: list[ImagePlane], normal: npt.NDArray[np.float64]) -> StackGeometry:
    planes = sorted(planes, key=lambda p: float(p.ipp @ normal))
    d = np.array([p.ipp @ normal for p in planes])
    first = planes[0]
    rel = np.array([p.ipp - first.ipp for p in planes])
    offsets = np.stack([rel @ first.column_direction, rel @ first.row_direction], axis=1)
    dr, dc = first.pixel_spacing
    ref = _median_rows(offsets)
    moved = np.abs((offsets - ref) / np.array([dr, dc]))
    needs_shift = bool(moved.max() > SHIFT_TOL_PX) if len(planes) > 1 else False
    along = float(d[-1] - d[0])
    inplane = float(np.linalg.norm(offsets[-1] - offsets[0]))
    tilt = math.degrees(math.atan2(inplane, along)) if along > 0 else 0.0
    if len(planes) == 1:
        h = first.header
        spacing = h.spacing_between_slices or h.slice_thickness or 1.0
        return StackGeometry(planes, d, normal, float(spacing), True, offsets, ref, False, 0.0)
    gaps = np.diff(d)
    base = float(gaps.min())
    uniform = bool(np.all(np.abs(gaps - gaps.mean()) <= max(SPACING_REL_TOL * gaps.mean(), 0.005)))
    if uniform:
        spacing = along / (len(planes) - 1)
    else:
        # The finest gap, shrunk just enough that the grid ends on the last acquired
        # slice: rounding the slice count instead would extrapolate past it (or drop it).
        intervals = max(1, math.ceil(along / base - SPACING_REL_TOL))
        spacing = along / intervals
    return StackGeometry(planes, d, normal, spacing, uniform, offsets, ref, needs_shift, tilt)


def _qa_geometry(geoms: list[StackGeometry], qa: SeriesQA) -> None:
    g = geoms[0]
    tilt_tag = g.planes[0].header.gantry_tilt
    tag_text = f" (GantryDetectorTilt says {tilt_tag:g}°)" if tilt_tag else ""
    if g.needs_shift:
        qa.add("tilt", Status.WARNING,
               f"slices shifted in-plane along the stack: tilt {g.tilt_degrees:.2f}° from geometry{tag_text}",
               "resampled onto an orthogonal grid in patient space")
    else:
        qa.add("tilt", Status.OK, f"none detected from geometry{tag_text}")
    if len(g.planes) == 1:
        qa.add("spacing", Status.OK, "single plane")
        qa.add("missing slices", Status.OK, "single plane")
        return
    gaps = np.diff(g.positions)
    if g.uniform:
        qa.add("spacing", Status.OK, f"uniform {g.spacing:.3f} mm")
        qa.add("missing slices", Status.OK, "none")
        return
    steps = gaps / gaps.min()
    integral = bool(np.all(np.abs(steps - np.round(steps)) < SPACING_REL_TOL * 2))
    missing = int(np.sum(np.round(steps) - 1)) if integral else 0
    action = f"resampled to a uniform {g.spacing:.3f} mm grid ({g.target_count} slices) by linear interpolation"
    if integral and missing:
        where = [f"{g.positions[i]:.1f}..{g.positions[i + 1]:.1f} mm" for i in np.nonzero(np.round(steps) > 1)[0]]
        qa.add("spacing", Status.WARNING, f"gaps of {sorted({round(float(x), 3) for x in gaps})} mm", action)
        qa.add("missing slices", Status.WARNING, f"{missing} slice(s) missing at {', '.join(where[:5])}",
               "filled by interpolation")
    else:
        qa.add("spacing", Status.WARNING,
               f"non-uniform: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm", action)
        qa.add("missing slices", Status.OK, "none (spacing irregular rather than missing slices)")
