"""Export everything of one analysed study in one call: SEG, measurement SR, report SR, PDF, text, NIfTI.

The order matters: the measurement SR references the SEG's segments, and the
report SR lists both as evidence. Every DICOM object is validated with
``dciodvfy`` when it is installed. Source files are never written: outputs go
to ``out_dir``, which may not be the folder holding the source files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.contract import AnalysisResult
from inference.followup.model import Comparison
from workstation.dicomio.headers import InstanceHeader
from workstation.document.editing import ReportDocument
from workstation.export.deid import Deidentifier
from workstation.export.nifti import write_labelmap_nifti
from workstation.export.pdf import write_pdf
from workstation.export.seg import write_seg
from workstation.export.sources import ExportError, read_sources
from workstation.export.sr import write_measurement_sr
from workstation.export.sr_document import write_report_sr
from workstation.export.text import write_text
from workstation.export.validate import ValidationResult, validate_file

logger = logging.getLogger(__name__)

ALL_FORMATS = frozenset({"seg", "sr", "report_sr", "pdf", "txt", "nifti"})
FILE_NAMES = {"seg": "seg.dcm", "sr": "measurements_sr.dcm", "report_sr": "report_sr.dcm", "pdf": "report.pdf",
              "txt": "report.txt", "nifti": "labelmap.nii.gz"}


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. ``salt`` makes de-identification repeatable across sessions."""

    formats: frozenset[str] = ALL_FORMATS
    deidentify: bool = False
    salt: str | None = None
    organization: str = ""
    validate: bool = True
    key_images: int = 6


@dataclass
class ExportResult:
    """The files written (by format), their validation, and what was repaired or noted on the way."""

    files: dict[str, Path] = field(default_factory=dict)
    validation: dict[str, ValidationResult] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    salt: str | None = None

    @property
    def ok(self) -> bool:
        """No validator errors (objects not validated count as fine here; see ``validation``)."""
        return all(not v.errors for v in self.validation.values())


def export_study(result: AnalysisResult, headers: Sequence[InstanceHeader], out_dir: str | Path,
                 report: ReportDocument | None = None, options: ExportOptions | None = None, *,
                 comparison: Comparison | None = None) -> ExportResult:
    """Write the chosen exports of ``result`` (made from the series ``headers``) into ``out_dir``.

    With ``comparison`` (the study compared with a prior, ``inference.followup``), the measurement SR
    carries the prior's measurements as a second time point and the PDF a change table.
    """
    opts = options or ExportOptions()
    unknown = set(opts.formats) - ALL_FORMATS
    if unknown:
        raise ExportError(f"unknown export format(s): {', '.join(sorted(unknown))}")
    out = Path(out_dir).expanduser().absolute()
    protect = [h.file_ref.path for h in headers]
    if any(Path(p).absolute().parent == out for p in protect):
        raise ExportError(f"{out}: holds the source files; export to another folder")
    out.mkdir(parents=True, exist_ok=True)
    deid = Deidentifier(opts.salt) if opts.deidentify else None
    if deid is not None and report is not None:
        # staff names are identifiers too (PS3.15: observer names are replaced); free text keeps none
        deid.learn(*(s.radiologist for s in [report.sign_off] if s), *(a.author for a in report.addenda))
    sources = read_sources(headers, result.request.volume)
    res = ExportResult(repairs=list(sources.repairs), salt=deid.salt if deid else None)
    if not sources.mapped:
        res.notes.append(f"SEG frames reference the frame of reference, not source slices: {sources.reason_unmapped}")
    sign_off = report.sign_off if report is not None else None
    fmts = opts.formats
    seg = None
    evidence: list[Any] = []
    if fmts & {"seg", "sr"}:
        seg = write_seg(result, sources, out / FILE_NAMES["seg"], signed=sign_off is not None, deid=deid,
                        protect=protect)
        res.files["seg"] = seg.path
        evidence.append(seg.dataset)
    if "sr" in fmts and seg is not None:
        path, msr = write_measurement_sr(result, sources, seg, out / FILE_NAMES["sr"], sign_off=sign_off,
                                         organization=opts.organization, deid=deid, protect=protect,
                                         comparison=comparison)
        res.files["sr"] = path
        evidence.append(msr)
    if report is not None and "report_sr" in fmts:
        path, _ = write_report_sr(report, sources, out / FILE_NAMES["report_sr"], evidence=evidence,
                                  organization=opts.organization, deid=deid, protect=protect)
        res.files["report_sr"] = path
    if report is not None and "pdf" in fmts:
        res.files["pdf"] = write_pdf(report, out / FILE_NAMES["pdf"], result, sources.info,
                                     key_images=opts.key_images, deid=deid, protect=protect, comparison=comparison)
    if report is not None and "txt" in fmts:
        res.files["txt"] = write_text(report, out / FILE_NAMES["txt"], sources.info, deid=deid, protect=protect)
    if "nifti" in fmts:
        res.files["nifti"] = write_labelmap_nifti(result, out / FILE_NAMES["nifti"], protect)
    if opts.validate:
        for kind in ("seg", "sr", "report_sr"):
            if kind in res.files:
                res.validation[kind] = validate_file(res.files[kind])
    logger.info("exported %s to %s", ", ".join(sorted(res.files)), out)
    return res
