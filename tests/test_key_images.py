"""Key images read like films: one window for the montage and the PDF, the patient's sides marked on the
edges, a legend of the colours shown, and one unit per kind of quantity on paper."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from inference import AnalysisRequest, AnalysisResult, Volume
from inference.engine import Engine
from inference.findings import Measurement
from inference.labels import readable_name
from workstation.demo import generate_demo_study
from workstation.document import DraftSource, ReportDocument
from workstation.export import pdf
from workstation.imaging import key_slices
from workstation.key_images import MARKER_COLOUR, edge_letters, key_image, key_window, legend, write_montage
from workstation.services.studies import load_series_volumes, resolve_series


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(40, 96, 96))
    volume = load_series_volumes(resolve_series(str(folder), None)).volumes[0]
    return Engine(None).run(AnalysisRequest(volume, "builtin.ct", "cpu"))


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def test_standard_and_flipped_axial_edges() -> None:
    axial = np.eye(4)  # slice -> z, row -> y (posterior), column -> x (patient's left)
    axial[:3, :3] = np.array([[0, 0, 0.7], [0, 0.7, 0], [2.0, 0, 0]])
    vol = Volume(np.zeros((2, 4, 4), np.int16), axial)
    assert edge_letters(vol) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    flipped = axial.copy()
    flipped[:3, 2] *= -1  # columns run towards the patient's right
    assert edge_letters(Volume(np.zeros((2, 4, 4), np.int16), flipped))["left"] == "L"


def test_montage_and_pdf_use_one_window_with_sides_and_legend(demo: AnalysisResult, tmp_path: Path) -> None:
    from PIL import Image

    picks = key_slices(demo)
    win = key_window(demo, picks)
    path = write_montage(demo, tmp_path / "montage.png")
    with Image.open(path) as sheet:
        banner = sheet.text["Captions"]  # type: ignore[attr-defined]
        shown = sheet.text["Legend"].splitlines()  # type: ignore[attr-defined]
    assert banner and shown == [name for name, _ in legend(demo, picks)]
    assert "right lung" in shown and "lung nodule" in shown  # readable names, as the findings panel shows them
    doc = ReportDocument.from_draft("study", {"Findings": "Nodules."}, DraftSource("template", "1", "builtin.ct"))
    text = _pdf_text(pdf.render_pdf(doc, demo, key_images=6))
    assert f"window W {win[1]:.0f} / L {win[0]:.0f}" in text, "the PDF's key images use the montage's window"
    for name in shown:
        assert readable_name(name) in text


def test_key_images_mark_the_patients_sides(demo: AnalysisResult) -> None:
    """The demo's edges are air: white marker pixels there can only be the R and L letters."""
    k = key_slices(demo)[0]
    img = np.asarray(key_image(demo, k, key_window(demo, [k]), 384).convert("RGB"))
    h, w = img.shape[:2]
    white = np.all(img == MARKER_COLOUR, axis=2)
    left, right = white[h // 2 - 15:h // 2 + 15, :20], white[h // 2 - 15:h // 2 + 15, w - 20:]
    assert left.sum() > 10 and right.sum() > 10


def test_pdf_units_are_those_of_the_report_text(demo: AnalysisResult) -> None:
    area = Measurement("skeletal muscle area", 88.04, "cm2", "muscle")
    demo.findings.measurements.append(area)
    doc = ReportDocument.from_draft("study", {"Findings": "Nodules."}, DraftSource("template", "1", "builtin.ct"))
    try:
        text = _pdf_text(pdf.render_pdf(doc, demo, key_images=0))
    finally:
        demo.findings.measurements.remove(area)
    assert "cm2" not in text and "cm²" in text
    first = demo.findings.lesions[0]
    assert re.search(rf"\b{round(first.volume_ml * 1000)} mm³", text), "nodule volumes in mm³, as in the text"
