"""The report panel on real components: template and tiny-LLM drafts streamed through the drafting thread,
provenance, flags that block sign-off, sign-off and lock, debounced autosave, navigation, export, shutdown.

The analysis is the real built-in CT model on the demo phantom (60 x 128 x 128);
the language model is a tiny random Llama saved like a real model folder
(``tests/llm_factory.py``), so loading, streaming and cancelling are the real code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from inference.contract import AnalysisRequest
from inference.engine import Engine
from tests.llm_factory import build_tiny_llm
from workstation.demo import generate_demo_study
from workstation.dicomio.series import study_key
from workstation.document import AutosaveStore, SentenceOrigin
from workstation.qt.panels.targets import FindingTarget
from workstation.qt.report_panel import ReportContext, ReportPanel
from workstation.qt.report_panel.rows import FLAGGED_BG
from workstation.qt.report_panel.signoff import remembered_name
from workstation.services.reporting import report_inputs
from workstation.services.studies import load_series_volumes, resolve_series

READER = "Dr. Ada Reader"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_context(tmp_path_factory: pytest.TempPathFactory) -> ReportContext:
    """The demo phantom, loaded from its DICOM files and analysed by the built-in CT model."""
    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder, shape=(60, 128, 128))
    source = resolve_series(str(folder), None)
    volume = load_series_volumes(source).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    inputs = report_inputs(None, None, result, volume, headers=source.headers)
    headers = list(source.headers)
    return ReportContext(study_key(headers[0]), result, inputs, study_description="CT CHEST",
                         series_uid=headers[0].series_uid, headers=lambda: headers)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


@pytest.fixture
def store(tmp_path: Path) -> AutosaveStore:
    return AutosaveStore(tmp_path / "drafts")


@pytest.fixture
def make_panel(qtbot: QtBot, store: AutosaveStore) -> Iterator[Callable[..., ReportPanel]]:
    """Panels that are always shut down, and checked to leave no thread running."""
    made: list[ReportPanel] = []

    def make(**kwargs: Any) -> ReportPanel:
        kwargs.setdefault("stream_interval_ms", 0)
        panel = ReportPanel(kwargs.pop("store", store), **kwargs)
        qtbot.addWidget(panel)
        panel.resize(520, 900)
        panel.show()
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.shutdown()
        assert not panel.worker.is_running(), "the drafting thread outlived its panel"
        assert not panel.exporter.is_running(), "an export outlived its panel"
    assert not [t for t in threading.enumerate() if t.name == "llm-generate"], "a generation thread leaked"


def draft(qtbot: QtBot, panel: ReportPanel, ctx: ReportContext) -> list[str]:
    """Draft with the template and wait for the document; the streamed chunks."""
    chunks: list[str] = []
    panel.worker.chunk.connect(lambda _g, text: chunks.append(text))
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        panel.set_context(ctx)
        assert panel.state == "streaming"
        assert panel.stream_view.isReadOnly()
    assert panel.state == "editing"
    return chunks


def sentence_id(panel: ReportPanel, section: str, index: int) -> str:
    assert panel.document is not None
    return panel.document.sentence_at(section, index).id


def test_template_draft_streams_in_then_is_an_editable_ai_document(qtbot: QtBot, make_panel: Any,
                                                                      demo_context: ReportContext,
                                                                      store: AutosaveStore) -> None:
    panel = make_panel()
    chunks = draft(qtbot, panel, demo_context)
    assert len(chunks) >= 5  # one per section
    assert "Findings:" in panel.stream_view.toPlainText()
    doc = panel.document
    assert doc is not None and doc.study_key == demo_context.study_key
    sentences = [s for _, s in doc.sentences()]
    assert len(sentences) > 15
    assert {s.provenance for s in sentences} == {SentenceOrigin.AI}
    assert set(panel.editor.rows) == {s.id for s in sentences}
    assert panel.banner.text().startswith("AI DRAFT – not signed")
    assert "0 of" in panel.banner.text()
    assert doc.source.drafter.startswith("template")
    qtbot.waitUntil(lambda: store.load(doc.study_key) is not None, timeout=2000)  # saved in the next turn
    # accept one, then every unflagged sentence
    first = sentence_id(panel, "Findings", 0)
    panel.accept_sentence(first)
    assert doc.sentence(first).provenance is SentenceOrigin.AI_ACCEPTED
    assert panel.accept_all_unflagged() == len(sentences) - 1
    assert not panel.editor.accept_all_button.isEnabled()


def background_share(widget: Any, colour: str) -> float:
    """Share of the widget's drawn pixels that are exactly ``colour``."""
    from PySide6.QtGui import QColor

    image = widget.grab().toImage()
    want = QColor(colour).rgb()
    w, h = image.width(), image.height()
    hits = sum(image.pixel(x, y) == want for x in range(0, w, 3) for y in range(0, h, 3))
    return hits / max(len(range(0, w, 3)) * len(range(0, h, 3)), 1)


def test_flagged_sentences_are_highlighted_and_block_sign_off_until_resolved(
        qtbot: QtBot, make_panel: Any, demo_context: ReportContext) -> None:
    panel = make_panel()
    draft(qtbot, panel, demo_context)
    doc = panel.document
    assert doc is not None
    # two crafted sentences the check must flag: an organ never measured, a size no finding has
    liver = sentence_id(panel, "Findings", 0)
    panel.edit_sentence(liver, "A 31 mm lesion in the liver.")
    size = sentence_id(panel, "Impression", 0)
    original = doc.sentence(size).text
    panel.edit_sentence(size, "3 lung nodule candidates; the largest measures 48 x 40 mm.")
    assert doc.sentence(liver).provenance is SentenceOrigin.EDITED
    assert doc.sentence(liver).flags and doc.sentence(size).flags
    row = panel.editor.rows[liver]
    assert not row.reasons.isHidden() and "liver" in row.reasons.text()
    assert background_share(row, FLAGGED_BG) > 0.3  # drawn on the flagged (red) ground
    assert "liver" in row.toolTip()
    assert panel.editor.flag_list.count() == 2
    assert "2 flagged" in panel.banner.text()

    dialog = panel.request_sign_off()
    assert dialog is not None and dialog.isVisible()
    assert not dialog.sign_button.isEnabled()
    listed = [dialog.flag_list.item(i).text() for i in range(dialog.flag_list.count())]
    assert any("A 31 mm lesion in the liver." in line for line in listed)
    assert any("48 x 40 mm" in line for line in listed)
    dialog.name_edit.setText(READER)
    dialog.confirm.setChecked(True)
    assert not dialog.try_sign() and "liver" in dialog.refusal_text()
    dialog.reject()
    assert not doc.signed

    # resolve one by overriding its flag, the other by editing it back to what was measured
    panel.acknowledge_sentence(liver, "Seen on the images: known haemangioma")
    panel.edit_sentence(size, original)
    assert doc.sentence(size).provenance is SentenceOrigin.AI_ACCEPTED and not doc.sentence(size).flags
    assert not doc.unresolved()
    assert panel.editor.flag_list.isHidden()

    dialog = panel.request_sign_off()
    assert dialog is not None
    dialog.name_edit.setText(READER)
    assert not dialog.sign_button.isEnabled()  # the confirmation is not ticked yet
    dialog.confirm.setChecked(True)
    assert dialog.sign_button.isEnabled()
    dialog.sign_button.click()
    assert doc.signed and doc.sign_off is not None
    assert doc.sign_off.radiologist == READER
    assert [a.note for a in doc.sign_off.acknowledged_flags] == ["Seen on the images: known haemangioma"]
    assert panel.state == "signed"
    assert panel.banner.text().startswith(f"Signed by {READER} on ")
    assert remembered_name() == READER
    # locked: no editing controls, edits are ignored, only an addendum can be added
    row = panel.editor.rows[liver]
    assert row.edit_button.isHidden() and row.accept_button.isHidden()
    row.begin_edit()
    assert not row.editing
    panel.edit_sentence(liver, "Changed after signing.")
    assert doc.sentence(liver).text == "A 31 mm lesion in the liver."
    assert not panel.editor.addendum_button.isHidden() and not panel.editor.export_button.isHidden()
    assert panel.add_addendum("Comparison with outside CT: stable.", READER)
    assert doc.addenda[0].author == READER


def test_edits_are_autosaved_after_a_debounce(qtbot: QtBot, make_panel: Any, demo_context: ReportContext,
                                              store: AutosaveStore) -> None:
    panel = make_panel(autosave_ms=1000)
    draft(qtbot, panel, demo_context)
    path = store.path_for(demo_context.study_key)
    qtbot.waitUntil(path.is_file, timeout=2000)  # the fresh draft, saved in the turn after it is shown
    sid = sentence_id(panel, "Findings", 9)
    panel.edit_sentence(sid, "Caution: emphysema index measured on thick sections.")
    edited_at = time.monotonic()
    assert "thick sections" not in path.read_text(encoding="utf-8")  # not yet: the save is debounced
    with qtbot.waitSignal(panel.saved, timeout=5000):
        pass
    assert time.monotonic() - edited_at >= 0.9
    saved = store.load(demo_context.study_key)
    assert saved is not None
    assert saved.sentence(sid).text == "Caution: emphysema index measured on thick sections."
    assert saved.sentence(sid).provenance is SentenceOrigin.EDITED
    # a second panel (as after a restart) opens the saved draft of the study instead of drafting again
    again = make_panel()
    again.set_context(demo_context)
    assert again.state == "editing" and not again.worker.is_busy()
    assert again.document is not None and again.document.sentence(sid).text.endswith("thick sections.")


def test_clicking_a_sentence_navigates_to_its_finding(qtbot: QtBot, make_panel: Any,
                                                     demo_context: ReportContext) -> None:
    panel = make_panel()
    draft(qtbot, panel, demo_context)
    sid = sentence_id(panel, "Findings", 3)  # nodule 1
    row = panel.editor.rows[sid]
    panel.editor.scroll_area.ensureWidgetVisible(row)  # a click lands on what is on screen
    qtbot.waitUntil(lambda: not row.visibleRegion().isEmpty())
    with qtbot.waitSignal(panel.navigateTo) as nav, qtbot.waitSignal(panel.linkActivated) as link:
        qtbot.mouseClick(row.text, _left())
    target = nav.args[0]
    assert isinstance(target, FindingTarget)
    assert target.kind == "lesion" and target.lesion_number == 1
    assert link.args[0].key == "lesion:lung_nodule:1"
    lesion = demo_context.result.findings.lesions[0]
    assert target.centroid_lps == lesion.centroid_lps


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_signed_report_exports_then_finishes_and_drops_its_crash_copy(
        qtbot: QtBot, make_panel: Any, demo_context: ReportContext, store: AutosaveStore, tmp_path: Path) -> None:
    panel = make_panel()
    draft(qtbot, panel, demo_context)
    assert panel.sign(READER)
    assert store.load(demo_context.study_key) is not None
    out = tmp_path / "export"
    with qtbot.waitSignal(panel.finished, timeout=120_000) as done:
        assert panel.export_to(out)
    assert done.args[0].signed
    assert (out / "report.pdf").is_file() or any(out.glob("*.pdf"))
    assert store.load(demo_context.study_key) is None
    qtbot.wait(1300)  # past the autosave debounce: nothing writes the crash copy back
    assert store.load(demo_context.study_key) is None
    assert panel.banner.text().endswith("· exported")


def test_llm_draft_streams_throttled_and_cancels_promptly(qtbot: QtBot, make_panel: Any, tiny_llm: Path,
                                                          demo_context: ReportContext) -> None:
    panel = make_panel(llm_dir=tiny_llm, device="cpu", max_new_tokens=1500, stream_interval_ms=50)
    times: list[float] = []
    panel.worker.chunk.connect(lambda _g, _t: times.append(time.monotonic()))
    panel.set_context(demo_context)
    assert panel.state == "streaming"
    qtbot.waitUntil(lambda: len(times) >= 8, timeout=60_000)
    assert panel.stream_view.toPlainText()
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate <= 22, f"{rate:.1f} chunk signals a second"
    t0 = time.monotonic()
    with qtbot.waitSignal(panel.worker.cancelled, timeout=5000):
        panel.cancel_button.click()
    assert time.monotonic() - t0 < 2.0
    assert panel.state == "idle" and panel.document is None
    assert not panel.draft_button.isHidden() and not panel.template_button.isHidden()
    # the template fallback still works on the same thread
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        panel.template_button.click()
    assert panel.state == "editing"


def test_shutdown_with_a_draft_running_leaves_no_thread(qtbot: QtBot, make_panel: Any, tiny_llm: Path,
                                                        demo_context: ReportContext) -> None:
    panel = make_panel(llm_dir=tiny_llm, device="cpu", max_new_tokens=1500)
    panel.set_context(demo_context)
    qtbot.waitUntil(lambda: bool(panel.stream_view.toPlainText()), timeout=60_000)
    t0 = time.monotonic()
    panel.shutdown()
    assert time.monotonic() - t0 < 5.0
    assert not panel.worker.is_running()
    assert not [t for t in threading.enumerate() if t.name == "llm-generate"]


IMPORT_PROBE = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path
    first = {}

    def hook(event, args):
        if event == "import" and args[0] in ("torch", "transformers") and args[0] not in first:
            first[args[0]] = threading.current_thread() is threading.main_thread()

    sys.addaudithook(hook)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from tests.llm_factory import sample_inputs
    from workstation.qt.report_panel import DraftWorker
    worker = DraftWorker()
    outcome = []
    worker.finished.connect(lambda g, d: (outcome.append(d.draft.metadata["drafter"]), app.quit()))
    worker.failed.connect(lambda g, m: (outcome.append("failed: " + m), app.quit()))
    worker.chunk.connect(lambda g, t: outcome.append("chunk"))
    worker.submit(sample_inputs(), Path(sys.argv[1]), "cpu", 16)
    QTimer.singleShot(120_000, app.quit)
    app.exec()
    assert worker.shutdown()
    print(json.dumps({"imported_on_gui_thread": first, "outcome": outcome}))
""")


def test_torch_and_transformers_are_imported_on_the_drafting_thread_only(tiny_llm: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(tiny_llm)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180, check=True)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["outcome"][-1] == "transformers" and "chunk" in report["outcome"]
    assert report["imported_on_gui_thread"] == {"torch": False, "transformers": False}


def test_a_superseded_draft_is_dropped(qtbot: QtBot, demo_context: ReportContext) -> None:
    from workstation.qt.report_panel import DraftWorker

    worker = DraftWorker(stream_interval_ms=0)
    try:
        seen: list[int] = []
        worker.chunk.connect(lambda gen, _t: seen.append(gen))
        first = worker.submit(demo_context.inputs)
        second = worker.submit(demo_context.inputs)
        with qtbot.waitSignal(worker.finished, timeout=30_000) as done:
            pass
        assert done.args[0] == second != first
        qtbot.wait(200)
        assert set(seen) <= {second}
        assert not worker.is_busy()
    finally:
        assert worker.shutdown()
    assert not worker.is_running()


def test_a_template_draft_sends_nothing_to_paint_while_it_is_written(qtbot: QtBot,
                                                                    demo_context: ReportContext) -> None:
    """Text or a status painted while the template drafts would make the GUI wait for the GIL the draft holds:
    a draft done within the stream interval is announced once, before it starts, and arrives whole."""
    from workstation.qt.report_panel import DraftWorker

    worker = DraftWorker(stream_interval_ms=5000)
    chunks: list[str] = []
    statuses: list[str] = []
    worker.chunk.connect(lambda _g, text: chunks.append(text))
    worker.status.connect(lambda _g, text: statuses.append(text))
    try:
        with qtbot.waitSignal(worker.finished, timeout=30_000) as done:
            worker.submit(demo_context.subject)
        assert done.args[1].document.study_key == demo_context.study_key
        qtbot.wait(50)
        assert chunks == []
        assert statuses == ["Drafting the report…"]
    finally:
        assert worker.shutdown()


def test_a_streaming_draft_is_never_taken_for_a_quick_one() -> None:
    """Once text was sent (a language model streaming), the check's status and the text's tail are sent too."""
    from workstation.qt.report_panel.draft_worker import _Throttle

    sent: list[str] = []
    throttle = _Throttle(sent.append, 0.05)
    throttle.put("Findings: ")
    assert sent == [] and throttle.quick()  # the first piece waits an interval
    time.sleep(0.06)
    throttle.put("the lungs")
    assert sent == ["Findings: the lungs"]
    throttle.put(" are clear.")
    assert not throttle.quick()  # just sent, but a streaming draft: its check is announced and the tail flushed
    throttle.flush()
    assert sent == ["Findings: the lungs", " are clear."]


def test_a_draft_starts_once_the_gui_has_drawn_what_it_was_drawing(qtbot: QtBot, demo_context: ReportContext,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A result's table and overlays are drawn in frame steps: the draft it prompts waits until they are done."""
    from PySide6.QtWidgets import QWidget

    from workstation.qt.frame_steps import FrameSteps
    from workstation.qt.report_panel import DraftWorker
    from workstation.services import drafting

    started: list[float] = []
    real = drafting.draft_document

    def noting_start(*args: Any, **kwargs: Any) -> Any:
        started.append(time.perf_counter())
        return real(*args, **kwargs)

    monkeypatch.setattr(drafting, "draft_document", noting_start)
    owner = QWidget()
    qtbot.addWidget(owner)
    drawn: list[float] = []

    def draw() -> None:
        time.sleep(0.003)
        drawn.append(time.perf_counter())

    worker = DraftWorker(stream_interval_ms=0)
    try:
        FrameSteps(owner, budget_ms=0.0).start([draw for _ in range(40)])
        with qtbot.waitSignal(worker.finished, timeout=30_000):
            worker.submit(demo_context.subject)
        assert len(drawn) == 40 and len(started) == 1
        assert started[0] > drawn[-1]
    finally:
        assert worker.shutdown()


class GatedEngine(Engine):
    """The real engine, holding each run at a gate and noting (in ``events``) when it starts and ends."""

    def __init__(self, events: list[str], gate: threading.Event) -> None:
        super().__init__(None)
        self.events, self.gate = events, gate

    def run(self, request: AnalysisRequest, progress: Any = lambda f, s: None, cancel: Any = None) -> Any:
        self.events.append("analysis-start")
        assert self.gate.wait(60), "the test never opened the gate"
        try:
            return super().run(request, progress, cancel)
        finally:
            self.events.append("analysis-end")


@pytest.fixture
def shared_runner(qtbot: QtBot, demo_context: ReportContext,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """One device runner shared by an analysis service (gated engine) and a draft worker; the event order."""
    from workstation.qt.bridge import GuiPoster
    from workstation.qt.report_panel import DraftWorker
    from workstation.services import drafting
    from workstation.services.analysis_jobs import AnalysisFinished, AnalysisService
    from workstation.services.runner import JobRunner

    events: list[str] = []
    gate = threading.Event()
    original = drafting.draft_document

    def recording(*args: Any, **kwargs: Any) -> Any:
        events.append("draft-start")
        try:
            return original(*args, **kwargs)
        finally:
            events.append("draft-end")

    monkeypatch.setattr(drafting, "draft_document", recording)
    runner = JobRunner("test-device-runner")
    poster = GuiPoster()
    analysis = AnalysisService(poster.post, engine_factory=lambda: GatedEngine(events, gate), runner=runner)
    worker = DraftWorker(stream_interval_ms=0, runner=runner)
    results: list[Any] = []
    analysis.subscribe(lambda e: results.append(e) if isinstance(e, AnalysisFinished) else None)
    request = AnalysisRequest(demo_context.result.request.volume, "builtin.ct", "cpu")
    try:
        yield {"events": events, "gate": gate, "runner": runner, "analysis": analysis, "worker": worker,
               "results": results, "request": request, "poster": poster}
    finally:
        gate.set()
        try:
            assert worker.shutdown() and analysis.shutdown()
            assert runner.is_running(), "the draft worker and the analysis service stopped a runner not theirs"
        finally:
            stopped = runner.shutdown(10)
    assert stopped and not runner.is_running() and not worker.is_running()


def test_a_draft_waits_for_the_running_analysis_on_the_shared_runner(qtbot: QtBot, demo_context: ReportContext,
                                                                      shared_runner: dict[str, Any]) -> None:
    events, worker, analysis = shared_runner["events"], shared_runner["worker"], shared_runner["analysis"]
    request = shared_runner["request"]
    analysis_gen = analysis.submit(request, series_id=1)
    qtbot.waitUntil(lambda: "analysis-start" in events, timeout=60_000)
    with qtbot.waitSignal(worker.finished, timeout=60_000) as drafted:
        gen = worker.submit(demo_context.subject)
        qtbot.wait(300)
        assert "draft-start" not in events, "the draft ran beside the analysis"
        assert worker.is_busy()
        shared_runner["gate"].set()
    qtbot.waitUntil(lambda: bool(shared_runner["results"]), timeout=10_000)
    assert events == ["analysis-start", "analysis-end", "draft-start", "draft-end"]
    assert drafted.args[0] == gen and list(drafted.args[1].document.sentences())
    (finished,) = shared_runner["results"]
    assert finished.generation == analysis_gen and finished.result.labelmap.shape == request.volume.shape
    assert not worker.is_busy() and not analysis.is_busy()


def test_a_reader_analysis_goes_before_a_queued_draft(qtbot: QtBot, demo_context: ReportContext,
                                                     shared_runner: dict[str, Any]) -> None:
    events, worker, analysis = shared_runner["events"], shared_runner["worker"], shared_runner["analysis"]
    hold = threading.Event()
    shared_runner["runner"].submit("hold", lambda _ctx: hold.wait(60))  # the device is busy with something else
    shared_runner["gate"].set()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.submit(demo_context.subject)  # queued first...
        analysis.submit(shared_runner["request"], series_id=1)  # ...but the reader's analysis runs first
        hold.set()
    qtbot.waitUntil(lambda: bool(shared_runner["results"]), timeout=10_000)
    assert events == ["analysis-start", "analysis-end", "draft-start", "draft-end"]


def test_context_from_the_index_and_switching_studies(qtbot: QtBot, make_panel: Any, demo_context: ReportContext,
                                                      store: AutosaveStore) -> None:
    from workstation.index import StudyIndex, import_paths
    from workstation.services.catalog import Catalog
    from workstation.services.report_context import context_for_series
    from workstation.settings import get_settings

    catalog = Catalog.for_settings(get_settings())
    db = catalog.db_path
    assert demo_context.headers is not None
    folder = Path(demo_context.headers()[0].file_ref.path).parent
    with StudyIndex(db) as index:
        import_paths([folder], index)
        (series,) = [s for s in index.series() if s.kind in ("volume", "multi-volume")]
    volume = demo_context.result.request.volume
    ctx = context_for_series(catalog, series.id, demo_context.result, volume)
    study = catalog.study_of_series(series.id)
    assert study is not None and ctx.study_key == demo_context.study_key == study.study_key
    found = catalog.study_by_key(ctx.study_key)
    assert found is not None and found.id == series.study_id
    assert ctx.headers is not None and len(ctx.headers()) == 60
    assert ctx.inputs.notes  # the study's notes, de-identified, from the index
    panel = make_panel()
    draft(qtbot, panel, ctx)
    sid = sentence_id(panel, "Comparison", 0)
    panel.edit_sentence(sid, "Compared with the CT of last year: no change.")
    doc = panel.document
    panel.set_study("another study")  # reading another study puts this report away (saved)
    assert panel.document is None and panel.state == "idle"
    saved = store.load(ctx.study_key)
    assert saved is not None and saved.sentence(sid).text.startswith("Compared with")
    panel.set_study(ctx.study_key)  # back: the saved report, before the analysis is shown again
    assert panel.state == "editing" and panel.document is not None and panel.context is None
    restored = panel.document
    panel.set_context(ctx)  # the analysis arrives: same document, now with navigation and export
    assert panel.document is restored is not doc and panel.context is ctx


def _with_comparison(ctx: ReportContext) -> ReportContext:
    """The same study's context once the comparison with a prior has arrived."""
    import dataclasses

    from tests.comparison_factory import sample_comparison

    comparison = sample_comparison(ctx.result.findings.lesions)
    return dataclasses.replace(ctx, inputs=dataclasses.replace(ctx.inputs, comparison=comparison))


def test_a_comparison_redrafts_an_untouched_draft_and_spares_an_edited_one(
        qtbot: QtBot, make_panel: Any, demo_context: ReportContext) -> None:
    """The comparison arrives after the first draft: an AI-only draft is written again with it; once the
    radiologist has changed a sentence, the draft stays and Redraft is offered instead."""
    from tests.comparison_factory import PRIOR_DATE

    prior_date = PRIOR_DATE.isoformat()
    panel = make_panel()
    draft(qtbot, panel, demo_context)
    assert panel.document is not None and prior_date not in panel.document.text()
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        panel.take_new_facts(_with_comparison(demo_context), "the comparison with the prior")
    assert panel.state == "editing" and panel.document is not None
    assert prior_date in panel.document.section("Comparison").text()  # the new draft compares with the prior

    sid = sentence_id(panel, "Findings", 0)
    panel.edit_sentence(sid, "Lungs reviewed by the radiologist.")
    panel.take_new_facts(_with_comparison(demo_context), "the comparison with the prior")
    qtbot.wait(300)
    assert panel.state == "editing" and not panel.worker.is_busy()  # no redraft over the radiologist's work
    assert panel.document is not None and panel.document.sentence(sid).text == "Lungs reviewed by the radiologist."
    assert "Redraft writes it into the report" in panel.notice.text()
