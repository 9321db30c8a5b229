"""PDF of the report (fpdf2): header, state, sections, key images with overlay, findings, cautions.

Until sign-off every page carries a red ``DRAFT - NOT SIGNED`` banner and a
diagonal ``DRAFT`` watermark, and the unresolved grounding flags are listed;
after sign-off the banner gives way to ``Signed by NAME on DATE`` with the
models that drafted and measured. Key images come from the same renderer as
the montage (``workstation.key_images``, ``key_slices``), captioned in
the PDF rather than in the pixels, so a signed PDF never shows a "draft" label
burnt into its images. With a comparison with a prior study, a change table
follows the report text (``workstation.export.pdf_comparison``).

Fonts: a Unicode TrueType font (DejaVu Sans from ``resources/fonts``, the
system, or Arial on Windows/macOS) so that "≤", "±", "µ" and dashes print; without
one the core Helvetica font is used and text is folded to Latin-1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inference.contract import AnalysisResult
from inference.findings import lesion_volume_text, unit_text
from inference.followup.model import Comparison
from inference.image_refs import lesion_text
from inference.labels import readable_name
from workstation.document.editing import ReportDocument
from workstation.export.deid import Deidentifier
from workstation.export.files import APPLICATION, safe_target, software_version, write_atomic
from workstation.export.pdf_comparison import comparison_block
from workstation.export.sources import StudyInfo
from workstation.export.text import (
    DRAFT_BANNER,
    format_utc,
    header_fields,
    signature_lines,
)
from workstation.imaging import key_slices, slice_caption
from workstation.key_images import key_image, key_window, legend

logger = logging.getLogger(__name__)

RED = (190, 20, 30)
GREEN = (20, 110, 50)
GREY = (90, 90, 90)
_FONT_CANDIDATES = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
    ("C:/Windows/Fonts/arial.ttf", "C:/Windows/Fonts/arialbd.ttf"),
    ("/System/Library/Fonts/Supplemental/Arial.ttf", "/System/Library/Fonts/Supplemental/Arial Bold.ttf"),
)
_FOLD = {"–": "-", "—": "-", "≤": "<=", "≥": ">=", "•": "-", "→": "->", "’": "'", "‘": "'", "“": '"', "”": '"',
         "…": "...", "×": "x", "≈": "~"}


def _font_files() -> tuple[Path, Path] | None:
    from workstation.settings import resources_dir

    fonts = resources_dir() / "fonts"
    for regular, bold in _FONT_CANDIDATES:
        r = Path(regular) if Path(regular).is_absolute() else fonts / regular
        b = Path(bold) if Path(bold).is_absolute() else fonts / bold
        if r.is_file() and b.is_file():
            return r, b
    return None


def _pdf_class() -> type[Any]:
    from fpdf import FPDF

    class ReportPDF(FPDF):
        """A4 pages with the draft banner and watermark (drafts) and a page footer."""

        draft = True
        family = "Helvetica"
        unicode = False
        footer_text = ""

        def header(self) -> None:
            if not self.draft:
                return
            with self.local_context(text_color=(248, 205, 205)):
                self.set_font(self.family, "B", 110)
                with self.rotation(45, self.w / 2, self.h / 2):
                    self.text(self.w / 2 - 75, self.h / 2 + 15, "DRAFT")
            self.set_fill_color(*RED)
            self.set_text_color(255, 255, 255)
            text = f"{DRAFT_BANNER} - not verified by a radiologist"
            size = 12.0
            self.set_font(self.family, "B", size)
            while size > 6 and self.get_string_width(text) > self.w - self.l_margin - self.r_margin - 4:
                size -= 0.5
                self.set_font(self.family, "B", size)
            self.cell(0, 8, text, fill=True, align="C", new_x="LMARGIN", new_y="NEXT")
            self.set_text_color(0, 0, 0)
            self.ln(2)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(self.family, "", 7)
            self.set_text_color(*GREY)
            self.cell(0, 5, f"{self.footer_text}   Page {self.page_no()}/{{nb}}", align="C")
            self.set_text_color(0, 0, 0)

    return ReportPDF


class _Writer:
    """Lays out one report; methods add blocks top to bottom."""

    def __init__(self, draft: bool, scrub: Callable[[str], str] | None = None) -> None:
        self.scrub = scrub
        pdf = _pdf_class()(format="A4")
        fonts = _font_files()
        if fonts is not None:
            pdf.add_font("Report", "", str(fonts[0]))
            pdf.add_font("Report", "B", str(fonts[1]))
            pdf.family, pdf.unicode = "Report", True
        pdf.draft = draft
        pdf.footer_text = f"{APPLICATION} {software_version()}" + (" - DRAFT, NOT SIGNED" if draft else "")
        pdf.set_margins(15, 12, 15)
        pdf.set_auto_page_break(True, margin=16)
        pdf.alias_nb_pages()
        self.pdf = pdf

    def t(self, text: str) -> str:
        """Text the current font can print (de-identified when exporting for research)."""
        if self.scrub is not None:
            text = self.scrub(text)
        if self.pdf.unicode:
            return text
        for a, b in _FOLD.items():
            text = text.replace(a, b)
        return text.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False) -> None:
        self.pdf.set_font(self.pdf.family, "B" if bold else "", size)

    def heading(self, text: str, size: float = 11.5) -> None:
        if self.pdf.get_y() > self.pdf.h - 40:
            self.pdf.add_page()
        self.pdf.ln(2)
        self.font(size, True)
        self.pdf.cell(0, 6.5, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.font(10)

    def para(self, text: str, size: float = 10, color: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.font(size)
        self.pdf.set_text_color(*color)
        self.pdf.multi_cell(0, size * 0.5, self.t(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)

    def title_block(self, title: str, info: StudyInfo | None) -> None:
        self.font(15, True)
        self.pdf.cell(0, 8, self.t(title), new_x="LMARGIN", new_y="NEXT")
        if info is None:
            return
        fields = header_fields(info)
        col = (self.pdf.w - 30) / 3
        self.font(8.5)
        for i in range(0, len(fields), 3):
            for label, value in fields[i:i + 3]:
                self.font(8.5, True)
                width = self.pdf.get_string_width(self.t(label + ": ")) + 1
                self.pdf.cell(width, 5, self.t(label + ":"))
                self.font(8.5)
                self.pdf.cell(col - width, 5, self.t(value)[:60])
            self.pdf.ln(5)
        self.pdf.set_draw_color(*GREY)
        self.pdf.line(15, self.pdf.get_y() + 1, self.pdf.w - 15, self.pdf.get_y() + 1)
        self.pdf.ln(3)

    def status_block(self, doc: ReportDocument) -> None:
        lines = signature_lines(doc)
        color = RED if doc.sign_off is None else GREEN
        self.pdf.set_draw_color(*color)
        self.pdf.set_line_width(0.6)
        self.font(10.5, True)
        self.pdf.set_text_color(*color)
        self.pdf.multi_cell(0, 6, self.t(lines[0]), border="LTR", padding=(1.5, 2, 0, 2),
                            new_x="LMARGIN", new_y="NEXT")
        self.font(8.5)
        self.pdf.set_text_color(0, 0, 0)
        self.pdf.multi_cell(0, 4.5, self.t("\n".join(lines[1:])), border="LBR", padding=(0, 2, 1.5, 2),
                            new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_line_width(0.2)
        self.pdf.set_draw_color(*GREY)
        self.pdf.ln(2)

    def table(self, headings: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float],
              bold_rows: Callable[[int], bool] | None = None) -> None:
        """A table with a grey heading row; ``bold_rows(i)`` prints data row ``i`` in bold."""
        from fpdf.fonts import FontFace

        self.font(8.5)
        bold = FontFace(emphasis="BOLD")
        with self.pdf.table(col_widths=tuple(widths), text_align="LEFT", line_height=4.8,
                            first_row_as_headings=True, headings_style=_headings_style()) as table:
            for i, row in enumerate([headings, *rows]):
                style = bold if i > 0 and bold_rows is not None and bold_rows(i - 1) else None
                cells = table.row(style=style)
                for value in row:
                    cells.cell(self.t(value))
        self.pdf.ln(1)


def _headings_style() -> Any:
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD", fill_color=(230, 230, 230))


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _findings_tables(w: _Writer, result: AnalysisResult) -> None:
    f = result.findings
    if f.lesions:
        w.heading("Lesions (AI; Image: series and image through the centre)")
        volume = result.request.volume
        rows = [[f"{les.number}", readable_name(les.name), les.zone or les.location or les.side or "-",
                 f"{les.long_axis_mm:.1f} x {les.short_axis_mm:.1f}", lesion_volume_text(les.volume_ml),
                 _num(les.mean, 0), lesion_text(les, volume=volume) or "-"] for les in f.lesions]
        w.table(["#", "Finding", "Location", "Axes mm (long x short)", "Volume", "Mean HU", "Image"],
                rows, (6, 24, 50, 30, 20, 16, 34))
    if f.measurements:
        w.heading("Measurements (AI)")
        rows = [[m.name, f"{m.value:g} {unit_text(m.unit)}", readable_name(m.structure) if m.structure else "-",
                 "see caution" if m.caution else ""] for m in f.measurements]
        w.table(["Measurement", "Value", "Structure", "Note"], rows, (50, 35, 55, 40))
    structures = [s for s in f.structures if s.voxels > 0]
    if structures:
        w.heading("Segmented structures (AI)")
        rows = [[readable_name(s.name), _num(s.volume_ml), _num(s.mean, 0)] for s in structures]
        w.table(["Structure", "Volume mL", f"Mean {structures[0].units or 'value'}"], rows, (80, 50, 50))


def _key_images(w: _Writer, result: AnalysisResult, count: int) -> None:
    picks = key_slices(result, count) or [result.request.volume.shape[0] // 2]
    volume = result.request.volume
    win = key_window(result, picks)
    pdf = w.pdf
    tile_w, gap = (pdf.w - 30 - 2 * 4) / 3, 4.0
    if pdf.get_y() > pdf.h - 90:
        pdf.add_page()
    w.heading(f"Key images (AI overlay; window W {win[1]:.0f} / L {win[0]:.0f})")
    for i, k in enumerate(picks):
        img = key_image(result, k, win, 384)
        tile_h = tile_w * img.height / img.width
        if i % 3 == 0:
            if pdf.get_y() + tile_h + 8 > pdf.h - 16:
                pdf.add_page()
            top = pdf.get_y()
        x = 15 + (i % 3) * (tile_w + gap)
        pdf.image(img, x=x, y=top, w=tile_w)
        z = float(volume.index_to_lps([k, 0, 0])[2])
        w.font(7.5)
        pdf.set_xy(x, top + tile_h + 0.5)
        pdf.cell(tile_w, 4, w.t(f"{slice_caption(volume, k)}, z {z:.1f} mm"), align="C")
        if i % 3 == 2 or i == len(picks) - 1:
            pdf.set_xy(15, top + tile_h + 6)
    _legend(w, result, picks)


def _legend(w: _Writer, result: AnalysisResult, picks: Sequence[int]) -> None:
    pdf = w.pdf
    w.font(7.5)
    x = 15.0
    for name, colour in legend(result, picks):
        text = w.t(name)
        width = pdf.get_string_width(text) + 8
        if x + width > pdf.w - 15:
            x = 15.0
            pdf.ln(4.5)
        pdf.set_fill_color(*colour)
        pdf.rect(x, pdf.get_y() + 0.8, 3, 3, style="F")
        pdf.set_xy(x + 4, pdf.get_y())
        pdf.cell(width - 4, 4.5, text)
        x += width
    pdf.ln(6)


def render_pdf(doc: ReportDocument, result: AnalysisResult | None = None, info: StudyInfo | None = None, *,
               title: str = "", key_images: int = 6, deid: Deidentifier | None = None,
               comparison: Comparison | None = None) -> bytes:
    """The report as PDF bytes (with ``comparison``, the prior study and the change table after the text)."""
    if deid is not None and info is not None:
        info = deid.study_info(info)
    w = _Writer(draft=doc.sign_off is None, scrub=deid.scrub if deid is not None else None)
    w.pdf.add_page()
    heading = title or (info.study_description if info and info.study_description else "Radiology report")
    w.title_block(heading, info)
    w.status_block(doc)
    for sec in doc.sections:
        if sec.sentences:
            w.heading(sec.title)
            w.para(sec.text())
    for add in doc.addenda:
        w.heading(f"Addendum - {add.author}, {format_utc(add.added_at)}")
        w.para(add.text)
    if doc.sign_off is not None:
        w.pdf.ln(2)
        w.para(f"Electronically signed by {doc.sign_off.radiologist} on {format_utc(doc.sign_off.signed_at)}.",
               10, GREEN)
    pending = doc.unresolved()
    if pending:
        w.heading("Review needed: sentences flagged by the grounding check")
        for s in pending:
            w.para(f"- {s.text} [{'; '.join(s.flags)}]", 9, RED)
    if comparison is not None:
        comparison_block(w, comparison, RED, GREY)
    if result is not None:
        if result.findings.cautions:
            w.heading("Cautions")
            for c in result.findings.cautions:
                w.para(f"- {c}", 9)
        _findings_tables(w, result)
        if key_images > 0:
            _key_images(w, result, key_images)
        prov = result.provenance
        w.para(f"Analysis: {prov.model_id} {prov.model_version} on {prov.device_name or prov.device}. "
               "Measurements are automatic; check them on the images.", 7.5, GREY)
    return bytes(w.pdf.output())


def write_pdf(doc: ReportDocument, path: str | Path, result: AnalysisResult | None = None,
              info: StudyInfo | None = None, *, key_images: int = 6, deid: Deidentifier | None = None,
              protect: Sequence[str | Path] = (), comparison: Comparison | None = None) -> Path:
    """Write the report PDF to ``path``."""
    target = safe_target(path, protect)
    data = render_pdf(doc, result, info, key_images=key_images, deid=deid, comparison=comparison)
    write_atomic(target, lambda tmp: tmp.write_bytes(data))
    logger.info("wrote report PDF %s (%d bytes)", target.name, len(data))
    return target
