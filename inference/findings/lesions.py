"""Lesion measurement: each connected component of a lesion label, sized and placed.

Components are 3-D and 26-connected (voxels touching by a face, an edge or a
corner belong together), so a small nodule digitised as diagonal steps is one
lesion, not several. Work happens on the label's bounding box only.

Each lesion names the image a radiologist goes to (``series_number``,
``instance_number``): the acquired image nearest its centre along the slice
normal (``inference.image_refs``), when the volume knows its source images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from inference.findings.geometry import axial_axes, diameter, principal_min_extent
from inference.findings.model import Lesion, side_of
from inference.image_refs import image_ref
from inference.labels import LabelTable, readable_name
from inference.volume import Volume

logger = logging.getLogger(__name__)

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def measure_lesions(
    volume: Volume,
    labelmap: npt.NDArray[np.integer[Any]],
    value: int,
    name: str,
    bbox: tuple[slice, slice, slice],
    midline_mm: float,
    label_table: LabelTable,
) -> list[Lesion]:
    """Every 26-connected component of ``labelmap == value`` as a ``Lesion``, largest first.

    ``bbox`` bounds all voxels of the label. Numbers run 1.. by volume
    descending (ties: by position, so the order is reproducible). ``location``
    names the non-lesion label most frequent in the one-voxel (26-neighbour)
    shell around the component, or is empty when the shell is all background or
    lesion labels.
    """
    shape = labelmap.shape
    outer = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(bbox, shape, strict=True))
    lab_crop = labelmap[outer]
    comps, n = ndimage.label(lab_crop == value, structure=CONNECTIVITY_26)
    if n == 0:
        return []
    objects = ndimage.find_objects(comps)
    excluded = {lab.value for lab in label_table if lab.lesion} | {0, value}
    origin = np.array([s.start for s in outer])
    edges = np.asarray(volume.affine[:3, :3], dtype=np.float64)
    measured = []
    for k, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        # one voxel of margin for the shell, clipped to the crop
        pad = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, m)) for s, m in zip(sl, comps.shape, strict=True))
        mask = comps[pad] == k
        local = np.nonzero(mask)
        start = origin + np.array([s.start for s in pad])
        index = np.stack(local, axis=1) + start
        region = tuple(slice(int(a), int(a) + m) for a, m in zip(start, mask.shape, strict=True))
        values = np.asarray(volume.array[region][mask], dtype=np.float64)
        shell = ndimage.binary_dilation(mask, structure=CONNECTIVITY_26) & ~mask
        location = _location(lab_crop[pad][shell], excluded, label_table)
        measured.append(_measure_one(volume, edges, index, values, location, value, name, midline_mm))
    measured.sort(key=lambda les: (-les.voxels, les.centroid_index))
    for number, les in enumerate(measured, start=1):
        les.number = number
    return measured


def _measure_one(volume: Volume, edges: npt.NDArray[np.float64], index: npt.NDArray[np.int64],
                 values: npt.NDArray[np.float64], location: str, value: int, name: str,
                 midline_mm: float) -> Lesion:
    """Size, density and position of one component given its voxel indices (N, 3)."""
    points = volume.index_to_lps(index)
    centroid_index = index.mean(axis=0)
    centroid_lps = volume.index_to_lps(centroid_index)
    axial = axial_axes(volume.affine, points)
    long_3d, _ = diameter(edges, points)
    # the grid axis most aligned with LPS z: slice for axial series, row for sagittal/coronal ones
    z_axis = int(np.argmax(np.abs(edges[2])))
    axial_slice = int(np.rint(index[axial.slab_mask, z_axis].mean()))
    ref = image_ref(volume, point=centroid_lps)  # the image the viewer shows when it goes to the centre
    return Lesion(
        label=value, name=name, number=0, voxels=len(index),
        volume_ml=len(index) * volume.voxel_volume_ml,
        mean=float(values.mean()) if len(values) else None, units=volume.units,
        centroid_index=_triple(centroid_index), centroid_lps=_triple(centroid_lps),
        long_axis_mm=axial.long_mm, short_axis_mm=axial.short_mm,
        long_axis_3d_mm=long_3d, short_axis_3d_mm=min(principal_min_extent(edges, points), long_3d),
        axial_slice=axial_slice, side=side_of(float(centroid_lps[0]), midline_mm), location=location,
        series_number=ref.series_number if ref is not None else None,
        instance_number=ref.instance_number if ref is not None else None,
    )


def attach_image_refs(volume: Volume, lesions: Sequence[Lesion]) -> None:
    """Fill ``series_number``/``instance_number`` of lesions that lack them (e.g. a model's own lesions)."""
    for les in lesions:
        if les.instance_number is None:
            ref = image_ref(volume, point=les.centroid_lps)
            if ref is not None:
                les.series_number, les.instance_number = ref.series_number, ref.instance_number


def _location(shell_labels: npt.NDArray[np.integer[Any]], excluded: set[int], table: LabelTable) -> str:
    """Readable name of the most frequent label in the shell that is not background or a lesion."""
    counts = np.bincount(shell_labels.astype(np.intp, copy=False).ravel())
    for v in excluded:
        if v < len(counts):
            counts[v] = 0
    if len(counts) == 0 or counts.max() == 0:
        return ""
    best = int(np.argmax(counts))
    lab = table.by_value(best)
    return readable_name(lab.name if lab is not None else f"label {best}")


def _triple(a: Sequence[float] | npt.NDArray[np.float64]) -> tuple[float, float, float]:
    return (float(a[0]), float(a[1]), float(a[2]))
