"""Exports of an analysed study (Qt-free): DICOM SEG, DICOM SR (measurements, report), PDF, text, NIfTI.

Source DICOM files are read (headers only) and never written. Every DICOM
object can be checked with ``dciodvfy`` (``validate_file``); de-identification
for research use is optional (``Deidentifier``). ``export_study`` does all of
it in the right order; the modules can also be used one by one.
"""

from workstation.export.bundle import ALL_FORMATS, FILE_NAMES, ExportOptions, ExportResult, export_study
from workstation.export.deid import Deidentifier
from workstation.export.nifti import write_labelmap_nifti
from workstation.export.pdf import render_pdf, write_pdf
from workstation.export.seg import SegExport, SegmentInfo, build_segmentation, plan_segments, write_seg
from workstation.export.sources import ExportError, SourceSeries, StudyInfo, read_sources
from workstation.export.sr import build_measurement_report, write_measurement_sr
from workstation.export.sr_document import build_report_sr, write_report_sr
from workstation.export.text import report_text, write_text
from workstation.export.validate import ValidationResult, validate_file

__all__ = [
    "ALL_FORMATS",
    "FILE_NAMES",
    "Deidentifier",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "SegExport",
    "SegmentInfo",
    "SourceSeries",
    "StudyInfo",
    "ValidationResult",
    "build_measurement_report",
    "build_report_sr",
    "build_segmentation",
    "export_study",
    "plan_segments",
    "read_sources",
    "render_pdf",
    "report_text",
    "validate_file",
    "write_labelmap_nifti",
    "write_measurement_sr",
    "write_pdf",
    "write_report_sr",
    "write_seg",
    "write_text",
]
