"""Measure a label map: per-structure size, density and position, and each lesion one by one.

``compute_findings`` turns a model's label map into the numbers a report may
quote (``inference.findings.model``). Everything is measured on the volume's
own grid and reported in LPS mm through its affine, so the numbers are right
for any orientation or anisotropic spacing.

Cost: one streaming pass over the label map, slab by slab (about one 512x512 slice each)
(``np.bincount`` on per-slice label values gives counts per slice, row and
column for every label at once, plus intensity sums and squared deviations);
memory stays bounded by the slab, the volume is never converted to float64
wholesale. Lesion labels then work on their bounding box only.

Definitions:

- ``volume_ml``: voxel count x voxel volume (|det| of the affine), in mL.
- ``mean``/``std``: of ``volume.array`` over the label's voxels, population
  standard deviation (ddof=0), in ``volume.units`` (empty for MR: arbitrary units).
- ``centroid_index``: mean voxel index; ``centroid_lps`` its image by the affine.
- ``side``: ``side_of`` the centroid's LPS x against the midline, which is the
  centroid x of a label named "body" when the map has one, else the x of the
  centre of the volume grid.
- Lesions: see ``inference.findings.lesions`` (components) and
  ``inference.findings.geometry`` (diameters); each names the acquired image
  nearest its centre (``series_number``, ``instance_number``; ``inference.image_refs``).
- ``zone``: lobe or zone and central/peripheral of each lesion in a lung
  (``inference.findings.zones``), which may add a caution when the scan cuts a lung.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.errors import GeometryError, ModelError
from inference.findings.lesions import measure_lesions
from inference.findings.model import Findings, StructureFinding, side_of
from inference.findings.zones import assign_zones
from inference.labels import LabelTable
from inference.volume import Volume

logger = logging.getLogger(__name__)

SLAB_VOXELS = 1 << 18  # voxels per streaming slab (at least one slice): small enough to stay in cache
MAX_LABEL_VALUE = 65535  # DICOM SEG's limit; larger values mean a broken label map
_DIRECT_LABELS = 256  # label values below this index the bins directly; larger ones are compacted first
MIDLINE_LABEL = "body"


@dataclass(frozen=True)
class LabelStats:
    """Summary of one label value over the whole map."""

    value: int
    voxels: int
    mean: float
    std: float
    bbox_min: tuple[int, int, int]
    bbox_max: tuple[int, int, int]
    centroid_index: tuple[float, float, float]

    @property
    def bbox(self) -> tuple[slice, slice, slice]:
        """The bounding box as array slices."""
        lo, hi = self.bbox_min, self.bbox_max
        return (slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1), slice(lo[2], hi[2] + 1))


def compute_findings(volume: Volume, labelmap: npt.NDArray[np.integer[Any]], label_table: LabelTable) -> Findings:
    """Measured findings of ``labelmap`` (on ``volume``'s grid) described by ``label_table``.

    One ``StructureFinding`` per label value present in the map (values absent
    from the map are skipped; values missing from the table are reported as
    "label N"), in label order, and one ``Lesion`` per connected component of
    each ``lesion=True`` label. ``cautions`` hold only the zones' (a lung cut by
    the scan range): models add their own.
    Raises ``GeometryError`` if the map's shape differs from the volume's and
    ``ModelError`` if it does not hold non-negative integers.
    """
    labelmap = np.asarray(labelmap)
    if labelmap.shape != volume.shape:
        raise GeometryError(f"label map shape {labelmap.shape} differs from the volume's {volume.shape}")
    stats = label_statistics(labelmap, volume.array)
    midline = _midline_x(volume, stats, label_table)
    findings = Findings()
    for value in sorted(stats):
        st = stats[value]
        lab = label_table.by_value(value)
        name = lab.name if lab is not None else f"label {value}"
        if lab is None:
            logger.warning("label map holds value %d, which the label table does not name", value)
        centroid_lps = volume.index_to_lps(st.centroid_index)
        findings.structures.append(StructureFinding(
            label=value, name=name, voxels=st.voxels, volume_ml=st.voxels * volume.voxel_volume_ml,
            mean=st.mean, std=st.std, units=volume.units,
            bbox_min_index=st.bbox_min, bbox_max_index=st.bbox_max, centroid_index=st.centroid_index,
            centroid_lps=(float(centroid_lps[0]), float(centroid_lps[1]), float(centroid_lps[2])),
            side=side_of(float(centroid_lps[0]), midline),
        ))
        if lab is not None and lab.lesion:
            findings.lesions.extend(measure_lesions(volume, labelmap, value, name, st.bbox, midline, label_table))
    assign_zones(volume, labelmap, label_table, findings, midline)  # lobe or zone of each lung lesion
    logger.debug("findings: %d structures, %d lesions", len(findings.structures), len(findings.lesions))
    return findings


def label_statistics(labelmap: npt.NDArray[Any], image: npt.NDArray[Any]) -> dict[int, LabelStats]:
    """Count, bounding box, centroid and intensity mean/std of every non-zero label value present.

    One pass in slabs along the first axis. Per slab, ``np.bincount`` of
    ``row * K + label`` gives voxel counts per (slice, row, label) and of
    ``column * K + label`` per (column, label): their marginals give counts,
    bounding boxes and centroids exactly. Intensities are combined across slabs
    with the pairwise (Chan et al.) update of mean and sum of squared
    deviations, each slab's deviations taken from that slab's own mean, so the
    standard deviation stays accurate whatever the offset of the values.
    """
    if labelmap.dtype.kind not in "biu":
        raise ModelError(f"a label map must hold integers, not {labelmap.dtype}")
    if labelmap.size == 0:
        return {}
    vmax = int(labelmap.max())
    if labelmap.dtype.kind == "i" and int(labelmap.min()) < 0:
        raise ModelError("a label map must not hold negative values")
    if vmax > MAX_LABEL_VALUE:
        raise ModelError(f"label value {vmax} is above the supported maximum {MAX_LABEL_VALUE}")
    nz, ny, nx = labelmap.shape
    lut: npt.NDArray[np.intp] | None = None
    values = np.arange(vmax + 1)
    if vmax >= _DIRECT_LABELS:  # compact the present values to 0..K-1 so bins stay few
        values = _present_values(labelmap, vmax)
        lut = np.zeros(vmax + 1, dtype=np.intp)
        lut[values] = np.arange(len(values))
    k_bins = len(values)
    rows_per_slab = max(1, SLAB_VOXELS // (ny * nx))
    row_key = np.repeat(np.arange(rows_per_slab * ny, dtype=np.intp) * k_bins, nx)
    col_key = np.tile(np.arange(nx, dtype=np.intp) * k_bins, rows_per_slab * ny)
    per_slice = np.zeros((nz, k_bins), dtype=np.int64)
    per_row = np.zeros((ny, k_bins), dtype=np.int64)
    per_col = np.zeros((nx, k_bins), dtype=np.int64)
    n_a = np.zeros(k_bins)
    mean = np.zeros(k_bins)
    m2 = np.zeros(k_bins)
    # reused work buffers: allocating fresh ones per slab costs more than the arithmetic
    cap = len(row_key)
    buf_label, buf_key = np.empty(cap, dtype=np.intp), np.empty(cap, dtype=np.intp)
    buf_value, buf_dev = np.empty(cap), np.empty(cap)
    for z0 in range(0, nz, rows_per_slab):
        z1 = min(z0 + rows_per_slab, nz)
        n_vox = (z1 - z0) * ny * nx
        flat, key = buf_label[:n_vox], buf_key[:n_vox]
        if lut is not None:
            np.take(lut, labelmap[z0:z1].ravel(), out=flat)
        else:
            np.copyto(flat, labelmap[z0:z1].ravel(), casting="unsafe")
        np.add(flat, row_key[:n_vox], out=key)
        counts = np.bincount(key, minlength=(z1 - z0) * ny * k_bins).reshape(z1 - z0, ny, k_bins)
        per_slice[z0:z1] = counts.sum(axis=1)
        per_row += counts.sum(axis=0)
        np.add(flat, col_key[:n_vox], out=key)
        per_col += np.bincount(key, minlength=nx * k_bins).reshape(nx, k_bins)
        # intensities: this slab's mean and squared deviations, then merged into the running totals
        value = buf_value[:n_vox]
        np.copyto(value, image[z0:z1].ravel(), casting="unsafe")
        n_b = per_slice[z0:z1].sum(axis=0).astype(np.float64)
        mean_b = np.bincount(flat, weights=value, minlength=k_bins) / np.maximum(n_b, 1.0)
        dev = buf_dev[:n_vox]
        np.take(mean_b, flat, out=dev)
        np.subtract(value, dev, out=dev)
        np.multiply(dev, dev, out=dev)
        m2_b = np.bincount(flat, weights=dev, minlength=k_bins)
        total = np.maximum(n_a + n_b, 1.0)
        delta = mean_b - mean
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta * delta * n_a * n_b / total
        n_a = n_a + n_b
    return _assemble(values, per_slice, per_row, per_col, mean, m2)


def _assemble(values: npt.NDArray[Any], per_slice: npt.NDArray[np.int64], per_row: npt.NDArray[np.int64],
              per_col: npt.NDArray[np.int64], mean: npt.NDArray[np.float64],
              m2: npt.NDArray[np.float64]) -> dict[int, LabelStats]:
    """``LabelStats`` for every non-zero bin with voxels, from the per-axis count profiles."""
    voxels = per_slice.sum(axis=0)
    out: dict[int, LabelStats] = {}
    for k in np.flatnonzero(voxels):
        value = int(values[k])
        if value == 0:
            continue
        n = int(voxels[k])
        lo, hi, centroid = [], [], []
        for profile in (per_slice[:, k], per_row[:, k], per_col[:, k]):
            nonzero = np.flatnonzero(profile)
            lo.append(int(nonzero[0]))
            hi.append(int(nonzero[-1]))
            centroid.append(float(np.dot(np.arange(len(profile), dtype=np.float64), profile) / n))
        out[value] = LabelStats(
            value=value, voxels=n, mean=float(mean[k]), std=float(np.sqrt(max(m2[k], 0.0) / n)),
            bbox_min=(lo[0], lo[1], lo[2]), bbox_max=(hi[0], hi[1], hi[2]),
            centroid_index=(centroid[0], centroid[1], centroid[2]),
        )
    return out


def _present_values(labelmap: npt.NDArray[Any], vmax: int) -> npt.NDArray[np.intp]:
    """The label values that occur in the map (with 0), found slab by slab."""
    seen = np.zeros(vmax + 1, dtype=bool)
    step = max(1, SLAB_VOXELS // max(1, labelmap[0].size))
    for z0 in range(0, labelmap.shape[0], step):
        seen |= np.bincount(labelmap[z0:z0 + step].ravel().astype(np.intp), minlength=vmax + 1) > 0
    seen[0] = True
    return np.flatnonzero(seen)


def _midline_x(volume: Volume, stats: dict[int, LabelStats], table: LabelTable) -> float:
    """LPS x of the patient's midline: the body label's centroid, else the centre of the grid."""
    body = table.by_name(MIDLINE_LABEL)
    if body is not None and body.value in stats:
        return float(volume.index_to_lps(stats[body.value].centroid_index)[0])
    centre = (np.asarray(volume.shape, dtype=np.float64) - 1.0) / 2.0
    return float(volume.index_to_lps(centre)[0])
