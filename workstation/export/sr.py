"""DICOM SR of the quantitative findings: a TID 1500 Measurement Report (highdicom, Comprehensive 3D SR).

Content (TID 1500 "Imaging Measurement Report"):

- observation context: the analysis model as device observer (TID 1004);
- procedure reported: from the modality (CT -> SCT 77477000);
- image library: every source image;
- one TID 1411 volumetric group per SEG segment: tracking identifier (the
  segment's tracking ID and UID, the same as in the SEG), the referenced SEG
  segment (with its source images), finding type (the segment's code), and
  the volume (mL) and mean density (HU, "Attenuation Coefficient" with
  derivation "Mean"); lesions add long and short axis (mm, axial plane) and a
  finding site (the organ around it, with laterality), and their referenced
  segment names as its source image the one image a reader goes to: the
  acquired image nearest the lesion's centre along the slice normal (the one
  whose InstanceNumber the findings, PDF and report quote; a frame of a
  multi-frame object by its frame number). The SEG itself still lists every
  image each segment covers;
- one TID 1501 group per model-specific measurement (lung volume, %LAA-950,
  body-composition areas...): tracking identifier ``"<name>, <structure>"``,
  finding site = the structure's code when it is a label.

With a comparison with a prior study, lesions carry two time points and their
change (``workstation.export.sr_comparison``).

Units are UCUM (``mL``, ``mm``, ``cm2``, ``[hnsf'U]``, ``%``, ``d``).

Sign-off state: VerificationFlag VERIFIED (by the signing radiologist, at the
signing time), CompletionFlag COMPLETE and PreliminaryFlag FINAL only once the
report quoting these numbers is signed; until then UNVERIFIED, PARTIAL,
PRELIMINARY and the series description says "(draft)".
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from inference.contract import AnalysisResult
from inference.findings import Lesion, Measurement, StructureFinding
from inference.followup.model import Comparison
from inference.image_refs import lesion_ref
from inference.labels import readable_name
from workstation.document.model import SignOff
from workstation.export import codes
from workstation.export.deid import Deidentifier
from workstation.export.files import APPLICATION, MEASUREMENT_SR_SERIES_NUMBER, save_dataset
from workstation.export.seg import SegExport, SegmentInfo
from workstation.export.sources import ExportError, SourceSeries
from workstation.export.sr_comparison import current_extras, prior_groups

logger = logging.getLogger(__name__)

LEFT = ("7771000", "SCT", "Left")
RIGHT = ("24028007", "SCT", "Right")


def person_name(name: str) -> str:
    """A typed name as a DICOM PN: ``Jane Smith`` / ``Smith, Jane`` / ``Dr. Jane Smith`` -> ``Smith^Jane...``."""
    text = " ".join(name.split())
    if "^" in text:
        return text[:64]
    prefix = ""
    match = re.match(r"^(Dr\.?|Prof\.?|Mr\.?|Mrs\.?|Ms\.?)\s+", text, flags=re.IGNORECASE)
    if match:
        prefix, text = match.group(1), text[match.end():]
    if "," in text:
        family, given = (p.strip() for p in text.split(",", 1))
    else:
        parts = text.split(" ")
        family, given = (parts[-1], " ".join(parts[:-1])) if len(parts) > 1 else (text, "")
    out = f"{family}^{given}" + (f"^^{prefix}" if prefix else "")
    return out[:64]


def dicom_datetime(iso: str) -> str:
    """ISO 8601 (with offset) -> DICOM DT ``YYYYMMDDHHMMSS+ZZZZ``."""
    stamp = datetime.fromisoformat(iso)
    return stamp.strftime("%Y%m%d%H%M%S%z")


def device_uid(name: str, version: str) -> str:
    """A stable UID naming a model or drafter as SR device observer."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'radiology-workstation|device|{name}|{version}').int}"


def apply_sign_off(sr: Any, sign_off: SignOff | None) -> None:
    """Put the signing time (not the time of writing) into the verifying observer item."""
    if sign_off is not None and "VerifyingObserverSequence" in sr:
        sr.VerifyingObserverSequence[0].VerificationDateTime = dicom_datetime(sign_off.signed_at)


def _measurement(name: tuple[str, str, str], value: float, unit: str, derivation: tuple[str, str, str] | None = None
                 ) -> Any:
    import highdicom as hd

    return hd.sr.Measurement(name=codes.concept(name), value=float(value), unit=codes.concept(codes.unit(unit)),
                             derivation=codes.concept(derivation) if derivation else None)


def _density(mean: float | None, units: str) -> list[Any]:
    if mean is None:
        return []
    if units == "HU":
        return [_measurement(codes.ATTENUATION, mean, "HU", codes.MEAN)]
    return [_measurement(codes.MEAN, mean, units)]


def _site(result: AnalysisResult, location: str, side: str) -> list[Any]:
    """The finding site of a lesion: the label named like its location, with laterality."""
    import highdicom as hd

    label = next((lab for lab in result.label_table if readable_name(lab.name) == location and lab.code), None)
    if label is None or label.code is None:
        return []
    lat = {"left": LEFT, "right": RIGHT}.get(side)
    code = (label.code.value, label.code.scheme, label.code.meaning)
    return [hd.sr.FindingSite(anatomic_location=codes.concept(code),
                              laterality=codes.concept(lat) if lat else None)]


def _volumetric(seg: SegExport, info: SegmentInfo, algorithm: Any, measurements: list[Any],
                sites: list[Any], referenced_segment: Any | None = None, time_point_context: Any | None = None,
                qualitative_evaluations: list[Any] | None = None) -> Any:
    import highdicom as hd

    if referenced_segment is None:
        referenced_segment = hd.sr.ReferencedSegment.from_segmentation(seg.dataset, info.number)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=info.tracking_uid, identifier=info.tracking_id),
        referenced_segment=referenced_segment, time_point_context=time_point_context,
        finding_type=codes.concept(info.type), algorithm_id=algorithm, finding_sites=sites or None,
        measurements=measurements, qualitative_evaluations=qualitative_evaluations)


def _structure_group(seg: SegExport, s: StructureFinding, algorithm: Any) -> Any | None:
    info = seg.segment_for(s.label)
    if info is None:
        return None
    ms = [_measurement(codes.VOLUME, s.volume_ml, "mL"), *_density(s.mean, s.units)]
    return _volumetric(seg, info, algorithm, ms, [])


def _centre_segment(result: AnalysisResult, sources: SourceSeries, seg: SegExport, info: SegmentInfo,
                    les: Lesion) -> Any | None:
    """The lesion's segment referenced with one source image: the acquired image nearest its centre."""
    import highdicom as hd

    ref = lesion_ref(result.request.volume, les)
    if ref is None:
        return None
    uid = ref.image.sop_instance_uid
    ds = next((d for d in sources.datasets if str(d.SOPInstanceUID) == uid), None)
    if ds is None:
        logger.warning("lesion %s %d: its centre image is not among the export's source files", les.name, les.number)
        return None
    frames = [ref.image.frame] if ref.image.frame is not None else None
    return hd.sr.ReferencedSegment(
        sop_class_uid=str(seg.dataset.SOPClassUID), sop_instance_uid=str(seg.dataset.SOPInstanceUID),
        segment_number=info.number,
        source_images=[hd.sr.SourceImageForSegmentation(str(ds.SOPClassUID), uid, frames)])


def _lesion_group(result: AnalysisResult, sources: SourceSeries, seg: SegExport, les: Lesion,
                  algorithm: Any, comparison: Comparison | None = None) -> Any | None:
    info = seg.segment_for(les.label, les.number)
    if info is None:
        logger.warning("lesion %s %d has no SEG segment; left out of the SR", les.name, les.number)
        return None
    extras = current_extras(comparison, les)
    ms = [_measurement(codes.LONG_AXIS, les.long_axis_mm, "mm"),
          _measurement(codes.SHORT_AXIS, les.short_axis_mm, "mm"),
          _measurement(codes.VOLUME, les.volume_ml, "mL"), *_density(les.mean, les.units),
          *extras.get("extra_measurements", [])]
    return _volumetric(seg, info, algorithm, ms, _site(result, les.location, les.side),
                       _centre_segment(result, sources, seg, info, les), extras.get("time_point_context"),
                       extras.get("qualitative_evaluations"))


def measurement_concept(m: Measurement) -> tuple[tuple[str, str, str], tuple[str, str, str] | None]:
    """(concept name, derivation) of a model-specific measurement, from its unit (local code for ratios)."""
    if m.unit in ("mL", "ml"):
        return codes.VOLUME, None
    if m.unit in ("cm2", "mm2"):
        return codes.AREA, None
    if m.unit == "HU":
        return codes.ATTENUATION, codes.MEAN
    if m.unit in ("mm", "cm"):
        return codes.DIAMETER_3D, None
    return codes.local(m.name), None


def _measurement_group(result: AnalysisResult, m: Measurement, algorithm: Any) -> Any:
    import highdicom as hd

    label = result.label_table.by_name(m.structure) if m.structure else None
    sites = []
    if label is not None and label.code is not None:
        sites.append(hd.sr.FindingSite(anatomic_location=codes.concept(
            (label.code.value, label.code.scheme, label.code.meaning))))
    name, derivation = measurement_concept(m)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=str(hd.UID()), identifier=tracking_name(m)),
        algorithm_id=algorithm, finding_sites=sites or None,
        measurements=[_measurement(name, m.value, m.unit, derivation)])


def tracking_name(m: Measurement) -> str:
    """The tracking identifier of a model-specific measurement group: ``"<name>, <structure>"``."""
    return f"{m.name}, {m.structure}"[:64] if m.structure else m.name[:64]


def build_measurement_report(result: AnalysisResult, sources: SourceSeries, seg: SegExport, *,
                             sign_off: SignOff | None = None, organization: str = "",
                             comparison: Comparison | None = None) -> Any:
    """The TID 1500 Comprehensive 3D SR of ``result``'s findings, referencing ``seg`` and the source images
    (and, with ``comparison``, the prior's measurements as a second time point)."""
    import highdicom as hd

    prov = result.provenance
    algorithm = hd.sr.AlgorithmIdentification(name=prov.model_id[:64], version=prov.model_version or "unknown")
    observer = hd.sr.ObserverContext(
        observer_type=codes.concept(("121007", "DCM", "Device")),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(prov.model_id, prov.model_version), name=prov.model_id[:64],
            manufacturer_name=APPLICATION, model_name=f"{prov.model_id} {prov.model_version}"[:64]))
    groups: list[Any] = []
    findings = result.findings
    lesion_labels = {les.label for les in findings.lesions}
    for s in findings.structures:
        if s.label not in lesion_labels:
            group = _structure_group(seg, s, algorithm)
            if group is not None:
                groups.append(group)
    for les in findings.lesions:
        group = _lesion_group(result, sources, seg, les, algorithm, comparison)
        if group is not None:
            groups.append(group)
    groups.extend(prior_groups(comparison, result, seg, algorithm))
    groups.extend(_measurement_group(result, m, algorithm) for m in findings.measurements)
    if not groups:
        raise ExportError("no findings to report in a measurement SR")
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.concept(codes.procedure(result.request.volume.modality or sources.info.modality)),
        imaging_measurements=groups, referenced_images=sources.datasets)
    signed = sign_off is not None
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*sources.datasets, seg.dataset], content=report[0], series_instance_uid=str(hd.UID()),
        series_number=MEASUREMENT_SR_SERIES_NUMBER, sop_instance_uid=str(hd.UID()), instance_number=1,
        manufacturer=APPLICATION, is_complete=signed, is_final=signed, is_verified=signed,
        verifying_observer_name=person_name(sign_off.radiologist) if sign_off else None,
        verifying_organization=(organization or sources.info.institution or "Unknown")[:64] if signed else None,
        series_description="AI measurements" if signed else "AI measurements (draft)")
    apply_sign_off(sr, sign_off)
    codes.declare_local_scheme(sr)
    return sr


def write_measurement_sr(result: AnalysisResult, sources: SourceSeries, seg: SegExport, path: str | Path, *,
                         sign_off: SignOff | None = None, organization: str = "",
                         deid: Deidentifier | None = None, protect: Sequence[str | Path] = (),
                         comparison: Comparison | None = None) -> tuple[Path, Any]:
    """Build and write the measurement SR; returns the file and the dataset (before de-identification)."""
    sr = build_measurement_report(result, sources, seg, sign_off=sign_off, organization=organization,
                                  comparison=comparison)
    written = save_dataset(deid.deidentify(sr) if deid is not None else sr, Path(path), protect)
    return written, sr
