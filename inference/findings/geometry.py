"""Diameters of digitised objects: Feret (caliper) lengths, RECIST axial axes, PCA extents.

All functions take voxel *centres* in LPS millimetres plus the voxel's edge
vectors (the columns of the affine's 3x3 part), so they are correct for any
grid orientation and any anisotropic spacing.

Why "+ half a voxel width": the boundary of the true object lies somewhere
between the outermost voxel centre inside it and the next centre outside.
Along a grid axis that gap is on average half a voxel step at each end (one
voxel in all), but the longest diameter is a maximum over many directions, and
the direction it picks almost always has a centre pair lying close to the true
boundary (gap near zero). Simulated digitised discs, spheres and ellipses
(random sub-voxel offsets, 0.7 x 0.9 mm and 2.5 x 0.7 x 0.9 mm grids) give:
centre distance + 1 voxel width overshoots by ~1 voxel; + 0 undershoots long
axes of axis-aligned ellipses by ~1 voxel; + half a voxel width stays within
about +/- half a voxel for discs/spheres and within one voxel for ellipse axes.
So every diameter here is::

    max(centre extent along u + w(u) / 2,  w(u))

where ``w(u) = sum_i |e_i . u|`` is the width of one voxel box projected on the
unit direction ``u`` (``e_i`` its edge vectors). The floor ``w(u)`` makes a
one-voxel lesion one voxel across, never 0 mm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial import ConvexHull, QhullError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Below this many points all pairs are compared directly; above it only the convex hull's vertices.
_DIRECT_PAIRS_MAX = 256
# Rows per block when comparing hull vertices pairwise, to bound memory (block x M distances).
_PAIR_BLOCK = 512


@dataclass(frozen=True)
class AxialAxes:
    """RECIST-style axes on the axial (LPS z = const) cross-section of largest area."""

    long_mm: float
    short_mm: float
    slab_mask: npt.NDArray[np.bool_]  # which of the input points form that cross-section


def voxel_width(edges: FloatArray, direction: FloatArray) -> float:
    """Width in mm of one voxel box (edge vectors = columns of ``edges``) projected on ``direction``."""
    return float(np.abs(edges.T @ direction).sum())


def diameter(edges: FloatArray, points: FloatArray) -> tuple[float, FloatArray]:
    """Longest Feret diameter of digitised points (N, D) in mm, and its unit direction (D,).

    ``edges`` holds the voxel edge vectors restricted to the same D coordinates
    (rows) as ``points``. The longest centre-to-centre distance is found on the
    convex hull's vertices (the farthest pair always lies on the hull), then
    corrected as the module docstring explains.
    """
    dim = points.shape[1]
    cand = _hull_vertices(points)
    dist, i, j = _farthest_pair(cand)
    if dist > 0.0:
        u = (cand[j] - cand[i]) / dist
    else:  # one point: take the in-plane/in-space direction in which the voxel is widest
        widths = [voxel_width(edges, np.eye(dim)[k]) for k in range(dim)]
        u = np.eye(dim)[int(np.argmax(widths))]
    w = voxel_width(edges, u)
    return max(dist + 0.5 * w, w), np.asarray(u, dtype=np.float64)


def extent(edges: FloatArray, points: FloatArray, direction: FloatArray) -> float:
    """Caliper length of digitised points along ``direction`` (unit), corrected like ``diameter``."""
    proj = points @ direction
    w = voxel_width(edges, direction)
    return max(float(proj.max() - proj.min()) + 0.5 * w, w)


def axial_axes(affine: FloatArray, points_lps: FloatArray) -> AxialAxes:
    """Long and short axis on the axial cross-section where the component is largest.

    The axial plane is LPS z = const whatever the grid's orientation: voxel
    centres are binned by z into slabs one voxel thick (the z extent of one
    voxel box, so an axial grid gives exactly one slice per slab and a sagittal
    or coronal grid one row), aligned with the grid origin's z; the slab holding
    most centres is the cross-section of largest area. The short axis is the
    caliper extent perpendicular to the long axis (for convex shapes, the
    longest diameter perpendicular to it), never more than the long axis.
    """
    edges3 = np.asarray(affine[:3, :3], dtype=np.float64)
    thickness = float(np.abs(edges3[2]).sum())
    z = points_lps[:, 2]
    bins = np.floor((z - affine[2, 3]) / thickness + 0.5).astype(np.int64)
    lo = int(bins.min())
    counts = np.bincount(bins - lo)
    best = np.flatnonzero(counts == counts.max()) + lo
    if len(best) > 1:  # ties: the slab nearest the component's centroid, then the lowest
        zc = (float(z.mean()) - affine[2, 3]) / thickness
        best = best[np.argsort(np.abs(best - zc), kind="stable")]
    slab = bins == best[0]
    pts = points_lps[slab, :2]
    edges2 = edges3[:2]
    long_mm, u = diameter(edges2, pts)
    v = np.array([-u[1], u[0]])
    short_mm = min(extent(edges2, pts, v), long_mm)
    return AxialAxes(long_mm, short_mm, slab)


def principal_min_extent(edges: FloatArray, points: FloatArray) -> float:
    """Smallest of the extents along the three principal (PCA) axes of the points, in mm.

    The principal axes are the eigenvectors of the centres' covariance; each
    extent is the caliper length along one axis (corrected like ``diameter``).
    Taking the minimum of the three, rather than the extent along the smallest-
    variance axis only, keeps the value defined for spheres and single voxels.
    """
    if len(points) < 2:
        axes = np.eye(3)
    else:
        _, axes = np.linalg.eigh(np.cov(points, rowvar=False))
    return min(extent(edges, points, axes[:, k]) for k in range(3))


def _hull_vertices(points: FloatArray) -> FloatArray:
    """The points that can realise the farthest pair: hull vertices, or all points when few."""
    if len(points) <= _DIRECT_PAIRS_MAX:
        return points
    try:
        hull = ConvexHull(points)
    except QhullError:  # flat or collinear sets: joggle, which keeps indices of the original points
        hull = ConvexHull(points, qhull_options="QJ")
    vertices = np.asarray(hull.vertices, dtype=np.intp)
    return points[vertices]


def _farthest_pair(points: FloatArray) -> tuple[float, int, int]:
    """Largest pairwise distance among ``points`` and the indices of that pair, in bounded memory."""
    best, bi, bj = -1.0, 0, 0
    for start in range(0, len(points), _PAIR_BLOCK):
        block = points[start:start + _PAIR_BLOCK]
        d2 = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
        k = int(np.argmax(d2))
        r, c = divmod(k, len(points))
        if d2[r, c] > best:
            best, bi, bj = float(d2[r, c]), start + r, c
    return float(np.sqrt(max(best, 0.0))), bi, bj
