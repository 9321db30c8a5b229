"""The self-test's steps: what it checks in the real window and headless, and how each outcome is recorded.

``workstation.selftest`` runs them in an isolated temporary folder (``run_self_test``);
this module holds the steps themselves (``SelfTestRun``: resources, window, demo
study, decoders, the analysis on the worker thread, report and exports, the
language model, the import workers, closing), the nested-event-loop ``Waiter``
that turns a dialog or a failure signal into a failed step, and the report types.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance

    from workstation.qt.main_window import MainWindow
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

MODEL_ID = "builtin.ct"
OPEN_TIMEOUT_S = 180.0  # generate + import + stream the demo study
ANALYSIS_TIMEOUT_S = 600.0  # the first run imports torch on the worker; CPU only on most CI machines
STORE_TIMEOUT_S = 60.0  # the worker writes the label map and findings into the analysis store after the result
LLM_TOKENS = 16  # enough to prove a local model loads and streams
EXPECTED_EXPORTS = ("seg", "sr", "report_sr", "pdf", "txt", "nifti")

@dataclass
class StepResult:
    """One checked step: its name, whether it passed, how long it took and what it saw."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class SelfTestReport:
    """Every step in order, the start-up time and where the outputs were written."""

    steps: list[StepResult] = field(default_factory=list)
    startup_s: float | None = None
    frozen: bool = False
    platform: str = ""
    workdir: str = ""

    @property
    def ok(self) -> bool:
        """True when there was at least one step and every step passed."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {"ok": self.ok, "startup_s": self.startup_s, "frozen": self.frozen, "platform": self.platform,
                "workdir": self.workdir, "steps": [asdict(s) for s in self.steps]}


class SelfTestError(Exception):
    """A step failed; the message says what was wrong."""


# --- timing ---------------------------------------------------------------------------------------
def process_age_s() -> float | None:
    """Seconds since this process was launched (Linux ``/proc``; None elsewhere)."""
    try:
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime, in clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


# --- the GUI part -----------------------------------------------------------------------------------
class Waiter:
    """Runs a nested event loop until a signal arrives, a failure is reported, or the time is up.

    Failures come from the session's ``problem`` signal, the worker's
    ``failed`` signal and any message box that pops up (recorded and closed, so
    a modal dialog can never hang the self-test).
    """

    def __init__(self) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        self.failures: list[str] = []
        self._loop: QEventLoop | None = None
        self._modal_timer = QTimer()
        self._modal_timer.setInterval(200)
        self._modal_timer.timeout.connect(self._close_modal)
        self._modal_timer.start()

    def fail(self, text: str) -> None:
        """Record a failure and stop waiting."""
        logger.warning("self-test: %s", text)
        self.failures.append(text)
        if self._loop is not None:
            self._loop.quit()

    def _close_modal(self) -> None:
        from PySide6.QtWidgets import QApplication, QDialog, QMessageBox

        widget = QApplication.activeModalWidget()
        if isinstance(widget, QMessageBox):
            title, text = widget.windowTitle(), widget.text()
            widget.reject()
            self.fail(f"dialog '{title}': {text}")
        elif isinstance(widget, QDialog):
            self.fail(f"unexpected dialog '{widget.windowTitle()}'")
            widget.reject()

    def run_until(self, signal: SignalInstance, trigger: Callable[[], object], timeout_s: float,
                  what: str) -> tuple[Any, ...]:
        """Connect to ``signal``, call ``trigger``, and wait for the signal; its arguments, or raise."""
        from PySide6.QtCore import QEventLoop, QTimer

        got: list[tuple[Any, ...]] = []
        loop = QEventLoop()

        def arrived(*args: Any) -> None:
            got.append(args)
            loop.quit()

        signal.connect(arrived)
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        before = len(self.failures)
        try:
            trigger()
            if not got and len(self.failures) == before:
                self._loop = loop
                timer.start(int(timeout_s * 1000))
                loop.exec()
        finally:
            self._loop = None
            timer.stop()
            signal.disconnect(arrived)
        if len(self.failures) > before:
            raise SelfTestError(f"{what}: " + "; ".join(self.failures[before:]))
        if not got:
            raise SelfTestError(f"{what}: nothing happened within {timeout_s:.0f} s")
        return got[0]

    def close(self) -> None:
        """Stop watching for dialogs."""
        self._modal_timer.stop()


class SelfTestRun:
    """The state of one self-test run (steps, outputs) with one method per step."""

    def __init__(self, settings: Settings, workdir: Path, report: SelfTestReport) -> None:
        self.settings = settings
        self.workdir = workdir
        self.report = report
        self.window: MainWindow | None = None
        self.waiter: Waiter | None = None
        self.study_id: int | None = None
        self.series_id: int | None = None
        self.result: Any = None
        self.subject: Any = None  # what the report was drafted for, kept for the language-model check

    def step(self, name: str, action: Callable[[], str]) -> bool:
        """Run one step, record its outcome and time; True if it passed."""
        t0 = time.perf_counter()
        try:
            detail, ok = action(), True
        except Exception as exc:  # a self-test reports every failure instead of crashing on the first
            logger.debug("self-test step %s failed", name, exc_info=True)
            detail, ok = (str(exc) if isinstance(exc, SelfTestError) else f"{type(exc).__name__}: {exc}"), False
        self.report.steps.append(StepResult(name, ok, round(time.perf_counter() - t0, 2), detail))
        return ok

    # -- steps ------------------------------------------------------------------------------------
    def resources(self) -> str:
        from workstation.settings import resources_dir

        root = resources_dir()
        missing = [p for p in ("style/dark.qss", "presets") if not (root / p).exists()]
        if missing:
            raise SelfTestError(f"resources folder {root} lacks {', '.join(missing)}")
        return str(root)

    def open_window(self) -> str:
        from PySide6.QtWidgets import QApplication

        from workstation.qt.app import create_main_window

        window = create_main_window(self.settings)
        self.window = window
        self.waiter = Waiter()
        window.session.problem.connect(lambda title, text: self._fail(f"{title}: {text}"))
        window.session.worker.failed.connect(lambda _gen, text: self._fail(f"analysis failed: {text}"))
        window.show()
        QApplication.processEvents()
        if not window.isVisible():
            raise SelfTestError("the main window did not show")
        age = process_age_s()
        self.report.startup_s = round(age, 2) if age is not None else None
        app = QApplication.instance()
        platform = app.platformName() if isinstance(app, QApplication) else "?"
        self.report.platform = str(platform)
        shown = f"{self.report.startup_s:.2f} s after launch" if self.report.startup_s is not None else "shown"
        return f"'{window.windowTitle()}' on Qt platform '{platform}', {shown}"

    def _fail(self, text: str) -> None:
        if self.waiter is not None:
            self.waiter.fail(text)

    def _gui(self) -> tuple[MainWindow, Waiter]:
        if self.window is None or self.waiter is None:
            raise SelfTestError("the window is not open")
        return self.window, self.waiter

    def open_demo(self) -> str:
        window, waiter = self._gui()
        imported: list[Any] = []
        window.import_finished.connect(imported.append)
        (series_id,) = waiter.run_until(window.session.seriesOpened, window.open_demo, OPEN_TIMEOUT_S,
                                        "opening the demo study")
        if not imported or not imported[0].study_ids:
            raise SelfTestError("the demo import reported no study")
        from workstation.index import StudyIndex

        self.series_id = int(series_id)
        with StudyIndex(self.settings.db_path) as index:  # the opened series' study (the demo brings a prior along)
            row = index.series_by_id(self.series_id)
        self.study_id = row.study_id if row is not None else int(sorted(imported[0].study_ids)[0])
        volume = window.session.volume()
        shape = "x".join(str(n) for n in volume.shape) if volume is not None else "?"
        return f"study {self.study_id}, series {self.series_id}: {shape} voxels, {imported[0].added} files imported"

    def analyse(self) -> str:
        window, waiter = self._gui()
        results: list[Any] = []
        window.session.worker.finished.connect(lambda _gen, result: results.append(result))

        def submit() -> None:
            if window.session.run_ai(MODEL_ID) is None:
                waiter.fail(f"{MODEL_ID} was not submitted (no loaded series)")

        (series_id,) = waiter.run_until(window.session.resultShown, submit, ANALYSIS_TIMEOUT_S,
                                        f"running {MODEL_ID} on the worker thread")
        if series_id != self.series_id or not results:
            raise SelfTestError(f"result shown for series {series_id}, expected {self.series_id}")
        self.result = results[-1]
        prov = self.result.provenance
        findings = self.result.findings
        if not findings.measurements:
            raise SelfTestError("the analysis measured nothing on the demo study")
        wait_for_store(self.settings)
        return (f"{prov.model_id} {prov.model_version} on {prov.device}: {len(self.result.label_table)} labels, "
                f"{len(findings.measurements)} measurements, {len(findings.lesions)} lesions, "
                f"{prov.timings_s.get('total', 0.0):.1f} s")

    def report_and_exports(self) -> str:
        """``run_report`` on the demo study, as ``workstation report`` runs it, into the temporary folder."""
        if self.result is None or self.study_id is None:
            raise SelfTestError("no analysis result to report on")
        from workstation.services.reporting import run_report

        out = self.workdir / "report"
        res = run_report(self.settings, f"study:{self.study_id}", out, device=self.settings.device,
                         export_formats=EXPECTED_EXPORTS, reuse=False)  # not the worker's stored result: run again
        self.subject = res.subject
        missing = [k for k in (*EXPECTED_EXPORTS, "json") if k not in res.files or not res.files[k].is_file()
                   or res.files[k].stat().st_size == 0]
        if missing:
            raise SelfTestError(f"exports missing or empty: {', '.join(missing)}")
        invalid = {k: v.errors[:3] for k, v in res.validation.items() if v.errors}
        if invalid:
            raise SelfTestError(f"dciodvfy found errors: {invalid}")
        verify_exports(res.files)
        gui, headless = measurements(self.result.findings), measurements(res.inputs.findings)
        if gui != headless:
            raise SelfTestError(f"the worker thread's analysis and the headless one differ: {gui} != {headless}")
        return (f"{res.draft.metadata.get('drafter', '?')} draft, {len(res.grounding.sentences)} sentences, "
                f"{len(res.flagged)} flagged; {len(res.files)} files in {out}")

    def language_model(self, folder: Path) -> str:
        """Load a local causal LM (offline) and draft a few tokens with it: the transformers path of the bundle."""
        if self.subject is None:
            raise SelfTestError("no report inputs (the report step failed)")
        from inference.drafting import make_drafter
        from workstation.services.drafting import draft_document

        chunks: list[str] = []
        drafter = make_drafter(folder, self.settings.device, LLM_TOKENS)
        drafted = draft_document(self.subject, drafter, on_token=chunks.append)  # the pipeline the window runs
        meta = drafted.draft.metadata
        if not chunks:
            raise SelfTestError(f"{folder.name}: no text was generated")
        return (f"{meta.get('drafter', '?')} {meta.get('model', folder.name)} on {meta.get('device', '?')}: "
                f"{len(chunks)} chunks streamed ({folder})")

    def decoders(self) -> str:
        if self.series_id is None:
            raise SelfTestError("no demo series to take a slice from")
        from workstation.index import StudyIndex

        with StudyIndex(self.settings.db_path) as index:
            headers = index.series_headers(self.series_id)
        return check_decoders(Path(headers[len(headers) // 2].file_ref.path))

    def import_workers(self) -> str:
        if self.series_id is None:
            raise SelfTestError("no demo series to read again")
        from workstation.index import StudyIndex
        from workstation.index.importer import PARALLEL_THRESHOLD, read_headers

        with StudyIndex(self.settings.db_path) as index:
            refs = [h.ref for h in index.series_headers(self.series_id)]
        repeat = -(-PARALLEL_THRESHOLD // len(refs))
        headers, rejected = read_headers(refs * repeat, workers=2)
        if rejected or len(headers) != len(refs) * repeat:
            raise SelfTestError(f"worker processes read {len(headers)} of {len(refs) * repeat} headers"
                                + (f"; first rejection: {rejected[0].reason}" if rejected else ""))
        return f"{len(headers)} headers read by 2 worker processes"

    def close_window(self) -> str:
        from PySide6.QtWidgets import QApplication

        window, waiter = self._gui()
        waiter.close()
        window.close()
        QApplication.processEvents()
        left = []
        if window.session.worker.is_running():
            left.append("inference worker")
        if window.import_runner.is_running():
            left.append("import runner")
        window.deleteLater()
        QApplication.processEvents()
        self.window = None
        if left:
            raise SelfTestError(f"still running after close: {', '.join(left)}")
        return "closed; no thread left running"


def wait_for_store(settings: Settings) -> None:
    """The worker keeps its result in the analysis store (of the temporary data dir) right after showing it."""
    from PySide6.QtWidgets import QApplication

    from workstation.services.analysis_store import AnalysisStore

    store = AnalysisStore.for_settings(settings)
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while not store.records() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if not store.records():
        raise SelfTestError(f"the worker's result was not kept in the analysis store ({store.root})")


def measurements(findings: Any) -> list[tuple[str, str, str, float]]:
    return sorted((m.name, m.side, m.unit, round(float(m.value), 3)) for m in findings.measurements)


def verify_exports(files: dict[str, Path]) -> None:
    """Read the written files back: DICOM objects parse, the PDF is a PDF, the NIfTI loads."""
    import nibabel as nib
    import pydicom

    for kind in ("seg", "sr", "report_sr"):
        ds = pydicom.dcmread(files[kind])
        if not getattr(ds, "SOPInstanceUID", ""):
            raise SelfTestError(f"{files[kind].name} has no SOPInstanceUID")
    if not files["pdf"].read_bytes().startswith(b"%PDF"):
        raise SelfTestError(f"{files['pdf'].name} is not a PDF")
    image: Any = nib.load(str(files["nifti"]))
    if len(image.shape) != 3:
        raise SelfTestError(f"{files['nifti'].name} is not a 3D label map")


def check_decoders(sample: Path) -> str:
    """Compress a CT slice with lossless JPEG 2000, JPEG-LS and RLE and decode it back with pylibjpeg.

    Also checks that pylibjpeg's plugins (found through their entry points,
    which a frozen build only has if their metadata was packed) cover every
    JPEG transfer syntax the importer promises to read.
    """
    import numpy as np
    import pydicom
    from pydicom import uid
    from pydicom.pixels import get_decoder, pixel_array

    wanted = (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLosslessSV1, uid.JPEGLSLossless,
              uid.JPEG2000Lossless, uid.JPEG2000, uid.RLELossless)
    lacking = [u.name for u in wanted if "pylibjpeg" not in get_decoder(u).available_plugins]
    if lacking:
        raise SelfTestError(f"no pylibjpeg decoder for: {'; '.join(lacking)}")
    reference = pydicom.dcmread(sample).pixel_array
    done = []
    for syntax, encoder in ((uid.JPEG2000Lossless, "pylibjpeg"), (uid.RLELossless, "pylibjpeg"),
                            (uid.JPEGLSLossless, "pyjpegls")):
        ds = pydicom.dcmread(sample)
        try:
            ds.compress(syntax, encoding_plugin=encoder)
        except (RuntimeError, ValueError) as exc:  # the encoder is optional; decoding is what matters here
            logger.info("self-test: cannot encode %s with %s: %s", syntax.name, encoder, exc)
            continue
        if not np.array_equal(pixel_array(ds, decoding_plugin="pylibjpeg"), reference):
            raise SelfTestError(f"{syntax.name}: decoded pixels differ from the original")
        done.append(syntax.name.split(" Image")[0])
    if not done:
        raise SelfTestError("no compressed round trip could be made")
    return f"pylibjpeg decodes {len(wanted)} JPEG/RLE syntaxes; lossless round trips: {', '.join(done)}"
