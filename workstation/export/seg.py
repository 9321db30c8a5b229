"""DICOM SEG of an analysis' label map (highdicom), referencing the source images.

Segmentation type: BINARY (Segmentation Storage, 1.2.840.10008.5.1.4.1.1.66.4).
highdicom 0.28 can also write LABELMAP (Label Map Segmentation Storage, ...66.7,
added to the standard in 2024), but dciodvfy does not know that IOD yet
("Information Object Not found") and most PACS and viewers do not read it, so
we write BINARY; our labels never overlap, so nothing is lost.

Segments: one per label present in the label map, except lesion labels, whose
26-connected components (the findings' lesions) each get their own segment
(``lung_nodule 1``, ``lung_nodule 2`` ... numbered as the findings number
them), so the measurement SR can point each lesion's measurements at exactly
that lesion. Codes come from the label table (``workstation.export.codes``).

Frames and source slices: when each slice of the analysed volume is exactly
one source file (``SourceSeries.mapped``), frame ``k`` is built from volume
slice ``k`` with source file ``k`` of the geometric match, and each frame
references its own source instance (Derivation Image Sequence). When the
loader resampled the grid (tilted gantry, uneven spacing, missing slices) or
the source is multi-frame, the volume's own grid is written: each frame
carries its plane position in the source frame of reference, the source
series is referenced as a whole, and no frame claims a source slice it does
not equal. (Refusing would lose a valid, exactly placed segmentation;
claiming slice correspondence would be false.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.contract import AnalysisResult
from inference.findings import Lesion
from inference.labels import Label
from workstation.export import codes
from workstation.export.deid import Deidentifier
from workstation.export.files import (
    APPLICATION,
    DEVICE_SERIAL,
    MODEL_NAME,
    SEG_SERIES_NUMBER,
    save_dataset,
    software_version,
)
from workstation.export.sources import ExportError, SourceSeries

logger = logging.getLogger(__name__)

DRAFT_DESCRIPTION = "AI SEG (draft)"
SIGNED_DESCRIPTION = "AI SEG (signed report)"
CONTENT_LABEL = "AI_SEGMENTATION"
_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of the SEG: its number, the label (and lesion) it shows, and its tracking identity."""

    number: int
    label_value: int
    name: str
    tracking_id: str
    tracking_uid: str
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    lesion_number: int | None = None


@dataclass
class SegExport:
    """A written SEG: its file, the dataset (before de-identification), segments and how frames reference."""

    path: Path
    dataset: Any
    segments: list[SegmentInfo]
    per_slice_references: bool

    def segment_for(self, label_value: int, lesion_number: int | None = None) -> SegmentInfo | None:
        """The segment of a label (or of one lesion of a lesion label)."""
        return next((s for s in self.segments if s.label_value == label_value
                     and s.lesion_number == lesion_number), None)


def plan_segments(result: AnalysisResult) -> tuple[npt.NDArray[Any], list[SegmentInfo]]:
    """The segment-number array (0 = none) and the segments, from the label map and findings."""
    import highdicom as hd
    from scipy import ndimage

    labelmap = np.asarray(result.labelmap)
    if labelmap.size and int(labelmap.min()) < 0:
        raise ExportError("the label map holds negative values")
    counts = np.bincount(labelmap.ravel().astype(np.intp, copy=False)) if labelmap.size else np.zeros(1, np.intp)
    present = [int(v) for v in np.nonzero(counts)[0] if v > 0]
    table = result.label_table
    lut = np.zeros(len(counts), dtype=np.int64)
    infos: list[SegmentInfo] = []
    lesion_parts: list[tuple[int, npt.NDArray[np.bool_]]] = []
    for value in present:
        label = table.by_value(value) or Label(value, f"label {value}", (128, 128, 128))
        if label.code is None or table.by_value(value) is None:
            logger.info("label %d (%s) has no code; exported as Tissue", value, label.name)
        category, kind = codes.segment_codes(label)
        if not label.lesion:
            number = len(infos) + 1
            lut[value] = number
            infos.append(SegmentInfo(number, value, label.name, label.name, str(hd.UID()), category, kind))
            continue
        comps, n = ndimage.label(labelmap == value, structure=_CONNECTIVITY_26)
        found = [les for les in result.findings.lesions if les.label == value]
        for comp, lesion_number in _number_components(comps, n, found):
            number = len(infos) + 1
            name = f"{label.name} {lesion_number}"
            infos.append(SegmentInfo(number, value, name, name, str(hd.UID()), category, kind, lesion_number))
            lesion_parts.append((number, comps == comp))
    dtype = np.uint8 if len(infos) < 256 else np.uint16
    seg = np.asarray(lut.astype(dtype)[labelmap], dtype=dtype)
    for number, mask in lesion_parts:
        seg[mask] = number
    return seg, infos


def _number_components(comps: npt.NDArray[np.int32], n: int, lesions: Sequence[Lesion]) -> list[tuple[int, int]]:
    """(component, lesion number) pairs: each component takes the number of the lesion at its centroid.

    Components the findings do not list (there should be none) are numbered
    after the listed ones, largest first.
    """
    from scipy import ndimage

    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones(comps.shape, dtype=np.int32), comps, index)
    centroids = np.array(ndimage.center_of_mass(np.ones(comps.shape, dtype=np.int8), comps, index), dtype=float)
    out: list[tuple[int, int]] = []
    used: set[int] = set()
    for les in lesions:
        dist = np.linalg.norm(centroids - np.asarray(les.centroid_index), axis=1)
        best = int(np.argmin(dist))
        if dist[best] <= 0.5 and int(sizes[best]) == les.voxels and best + 1 not in used:
            used.add(best + 1)
            out.append((best + 1, les.number))
    rest = sorted((c for c in index.tolist() if c not in used), key=lambda c: -sizes[c - 1])
    if rest:
        logger.warning("%d lesion component(s) not in the findings; numbered after them", len(rest))
    next_number = max((num for _, num in out), default=0) + 1
    for offset, comp in enumerate(rest):
        out.append((comp, next_number + offset))
    return sorted(out, key=lambda pair: pair[1])


def build_segmentation(result: AnalysisResult, sources: SourceSeries, *, signed: bool = False) -> tuple[
        Any, list[SegmentInfo]]:
    """The highdicom ``Segmentation`` of ``result`` (not yet written) and its segments."""
    import highdicom as hd
    from pydicom.sr.codedict import codes as dcm_codes

    seg_array, infos = plan_segments(result)
    if not infos:
        raise ExportError("the label map is empty: there is nothing to export as DICOM SEG")
    prov = result.provenance
    algorithm = hd.AlgorithmIdentificationSequence(
        name=prov.model_id[:64], family=dcm_codes.cid7162.ArtificialIntelligence,
        version=prov.model_version[:64] or "unknown", source=APPLICATION)
    descriptions = []
    for info in infos:
        label = result.label_table.by_value(info.label_value)
        color = label.color if label is not None else (128, 128, 128)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=info.number, segment_label=info.name[:64],
            segmented_property_category=codes.concept(info.category),
            segmented_property_type=codes.concept(info.type),
            algorithm_type="AUTOMATIC", algorithm_identification=algorithm,
            tracking_uid=info.tracking_uid, tracking_id=info.tracking_id[:64],
            display_color=hd.color.CIELabColor.from_rgb(*color)))
    volume = result.request.volume
    if sources.mapped:
        source_images = sources.slice_datasets()
        pixels: Any = seg_array
    else:
        source_images = sources.datasets
        pixels = hd.Volume(array=seg_array, affine=volume.affine, coordinate_system="PATIENT",
                           frame_of_reference_uid=sources.frame_of_reference_uid)
    state = "signed report" if signed else "draft, not verified"
    try:
        seg = hd.seg.Segmentation(
            source_images=source_images, pixel_array=pixels, segmentation_type="BINARY",
            segment_descriptions=descriptions, series_instance_uid=str(hd.UID()),
            series_number=SEG_SERIES_NUMBER, sop_instance_uid=str(hd.UID()), instance_number=1,
            manufacturer=APPLICATION, manufacturer_model_name=MODEL_NAME, software_versions=software_version(),
            device_serial_number=DEVICE_SERIAL, content_label=CONTENT_LABEL,
            content_description=f"AI segmentation {prov.model_id} {prov.model_version}, {state}"[:64],
            series_description=SIGNED_DESCRIPTION if signed else DRAFT_DESCRIPTION,
            omit_empty_frames=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"DICOM SEG could not be built: {exc}") from exc
    return seg, infos


def write_seg(result: AnalysisResult, sources: SourceSeries, path: str | Path, *, signed: bool = False,
              deid: Deidentifier | None = None, protect: Sequence[str | Path] = ()) -> SegExport:
    """Build and write the SEG to ``path`` (optionally de-identified); ``protect`` lists source files."""
    seg, infos = build_segmentation(result, sources, signed=signed)
    out = seg
    if deid is not None:
        out = deid.deidentify(seg)
    written = save_dataset(out, Path(path), protect)
    logger.info("SEG: %d segments, %d frames, %s references", len(infos), int(seg.NumberOfFrames),
                "per-slice" if sources.mapped else "frame-of-reference")
    return SegExport(written, seg, infos, sources.mapped)
