"""Make the screenshots in docs/ from the real window and the real PDF export (offscreen Qt).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshots.py [--out docs]

Writes, from the demo study analysed by the built-in model in a temporary user data dir:
- ``main-window.png``: the reading window, nodule 1 selected in the findings, a 10 mm MIP slab on;
- ``report-panel.png``: the Report tab with the template draft;
- ``pdf-findings.png``: the PDF page holding the lesion table (pdftoppm renders it);
- ``side-by-side.png``: follow-up reading of the demo pair, current | prior linked on the grown nodule,
  the comparison in the Findings tab (``--only side-by-side`` makes just this one);
- ``pdf-comparison.png``: the PDF page with the change table, from ``workstation demo --no-gui`` (the
  demo report compares with the prior by itself; ``--only pdf-comparison`` makes just this one).
The image number of nodule 1 is printed so it can be checked in both pictures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _pump(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _wait(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        _pump(0.05)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--only", choices=("side-by-side", "pdf-comparison"), help="make only this picture")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only is None:
        _main_pictures(args)
    if args.only in (None, "side-by-side"):
        _side_by_side(args.out)
    if args.only in (None, "pdf-comparison"):
        _pdf_comparison(args.out)
    return 0


def _pdf_comparison(out: Path) -> None:
    """The demo's own report run (current study, prior found and compared): its PDF page with the change table."""
    if shutil.which("pdftoppm") is None:
        print("pdftoppm not found (Debian package poppler-utils): no PDF picture")
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, WORKSTATION_CONFIG_DIR=str(Path(tmp) / "config"),
                   WORKSTATION_DATA_DIR=str(Path(tmp) / "data"))
        subprocess.run([sys.executable, "-m", "workstation", "demo", "--no-gui"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        pdf_path = Path(tmp) / "data" / "demo_report" / "report.pdf"
        from pypdf import PdfReader

        pages = [i for i, p in enumerate(PdfReader(str(pdf_path)).pages, 1)
                 if "Comparison with the prior" in (p.extract_text() or "")]
        if not pages:
            raise RuntimeError("the demo report has no comparison table")
        subprocess.run(["pdftoppm", "-r", "80", "-png", "-f", str(pages[0]), "-l", str(pages[0]), str(pdf_path),
                        str(Path(tmp) / "cmp")], check=True)
        shutil.copy(sorted(Path(tmp).glob("cmp*.png"))[0], out / "pdf-comparison.png")
    print(f"wrote {out}/pdf-comparison.png")


def _main_pictures(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKSTATION_CONFIG_DIR"] = str(Path(tmp) / "config")
        os.environ["WORKSTATION_DATA_DIR"] = str(Path(tmp) / "data")
        from inference.findings import Lesion
        from inference.image_refs import lesion_text
        from workstation.demo import generate_demo_study
        from workstation.qt.app import create_main_window
        from workstation.settings import get_settings

        generate_demo_study(Path(tmp) / "demo")
        win = create_main_window(get_settings())
        win.resize(1800, 1000)
        win.show()
        done: list[object] = []
        win.import_finished.connect(done.append)
        win.start_import([Path(tmp) / "demo"])
        _wait(lambda: done, 300, "the import")
        opened: list[int] = []
        win.session.seriesOpened.connect(opened.append)
        win.open_study(1)
        _wait(lambda: opened, 120, "the series")
        shown: list[int] = []
        win.session.resultShown.connect(shown.append)
        win.session.run_ai("builtin.ct")
        _wait(lambda: shown, 600, "the analysis")
        _wait(lambda: win.report.state == "editing", 120, "the draft")
        panel = win.findings
        win.tabs.setCurrentWidget(panel)
        row = next(r for r in range(panel.proxy.rowCount()) if panel.proxy.index(r, 0).data() == "Lung nodule 1")
        panel.table.selectRow(row)
        win.viewer.set_slab(10.0, "mip")
        _pump(1.0)
        win.grab().save(str(args.out / "main-window.png"))
        win.tabs.setCurrentWidget(win.report)
        _pump(1.0)
        win.grab().save(str(args.out / "report-panel.png"))
        result = win.session.result(opened[0])
        assert result is not None
        nodule: Lesion = next(les for les in result.findings.lesions if les.number == 1)
        print(f"nodule 1: {lesion_text(nodule, 'long', result.request.volume)}")
        from workstation.export import pdf

        doc = win.report.document
        assert doc is not None
        pdf_path = Path(tmp) / "report.pdf"
        pdf_path.write_bytes(pdf.render_pdf(doc, result))
        win.close()
        _pump(0.5)
        if shutil.which("pdftoppm") is None:
            print("pdftoppm not found (Debian package poppler-utils): no PDF picture")
            return
        subprocess.run(["pdftoppm", "-r", "80", "-png", str(pdf_path), str(Path(tmp) / "page")], check=True)
        from pypdf import PdfReader

        pages = [i for i, p in enumerate(PdfReader(str(pdf_path)).pages, 1)
                 if "Lesions (AI" in (p.extract_text() or "")]
        page = sorted(Path(tmp).glob(f"page-*{pages[0] if pages else 1}.png"))[0]
        shutil.copy(page, args.out / "pdf-findings.png")
    print(f"wrote {args.out}/main-window.png, report-panel.png, pdf-findings.png")


def _side_by_side(out: Path) -> None:
    """The demo with its prior: analysed, compared, the grown nodule chosen in the comparison table."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORKSTATION_CONFIG_DIR"] = str(Path(tmp) / "config")
        os.environ["WORKSTATION_DATA_DIR"] = str(Path(tmp) / "data")
        from workstation.qt.app import create_main_window
        from workstation.settings import get_settings

        get_settings.cache_clear()
        win = create_main_window(get_settings())
        win.resize(1800, 1000)
        win.show()
        opened: list[object] = []
        win.compare.priorsFound.connect(lambda *found: opened.append(found))
        win.open_demo()
        _wait(lambda: opened, 300, "the demo study and its priors")
        shown: list[int] = []
        win.session.resultShown.connect(shown.append)
        win.session.run_ai("builtin.ct")
        _wait(lambda: shown, 600, "the analysis")
        compared: list[object] = []
        win.compare.comparisonShown.connect(compared.append)
        win.compare.compare_action.trigger()
        _wait(lambda: compared, 600, "the comparison")
        win.tabs.setCurrentWidget(win.findings)
        panel = win.findings.comparison
        grown = next(r for r, ch in enumerate(panel.changes()) if ch.status.value == "grown")
        panel.table.selectRow(grown)
        axial = win.viewer.view("axial")
        assert axial.geom is not None
        axial.zoom_about(axial.image_to_widget(*axial.geom.index_to_image(win.viewer.model.state.cursor)), 1.6)
        win.compare.sync_zoom(axial)
        _pump(1.0)
        win.grab().save(str(out / "side-by-side.png"))
        change = panel.changes()[grown]
        print(f"grown nodule: {change.diameter_then_mm:.1f} -> {change.diameter_now_mm:.1f} mm, "
              f"prior cursor {win.compare.prior_viewer.model.current_lps().round(1)}")
        win.close()
        _pump(0.5)
    print(f"wrote {out}/side-by-side.png")


if __name__ == "__main__":
    sys.exit(main())
