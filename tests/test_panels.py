"""The side panels: findings from a real analysis, clinical notes saved to the index, the AI run bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from scipy import ndimage as ndi

from inference import AnalysisRequest, AnalysisResult, Volume
from inference.engine import Engine
from inference.findings import lesion_volume_text
from tests import dicom_factory as f
from tests.bundle_factory import _write, metadata
from workstation.index.db import StudyIndex
from workstation.qt.panels import AnalysisBar, FindingsPanel, FindingTarget, NotesPanel, display_name
from workstation.qt.panels.findings import SORT_ROLE, fmt_mean, fmt_number, fmt_volume
from workstation.services.catalog import Catalog


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    """The built-in CT analysis of the (small) demo phantom."""
    from workstation.demo import build_phantom

    ph = build_phantom((40, 96, 96))
    volume = Volume(ph.hu, ph.grid.affine, modality="CT", units="HU")
    return Engine(None).run(AnalysisRequest(volume, "builtin.ct", "cpu"))


def _click_row(qtbot: QtBot, panel: FindingsPanel, row: int) -> FindingTarget:
    index = panel.proxy.index(row, 0)
    panel.table.scrollTo(index)
    rect = panel.table.visualRect(index)
    with qtbot.waitSignal(panel.findingSelected, timeout=2000) as blocker:
        qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    target = blocker.args[0]
    assert isinstance(target, FindingTarget)
    return target


def _ml(text: str) -> float:
    """A volume cell ("2170 mL", "5558 mm³", "<0.01 mL") in mL."""
    number, unit = text.lstrip("<").split()
    return float(number) / (1000.0 if unit == "mm³" else 1.0)


def _texts(panel: FindingsPanel, column: int) -> list[str]:
    return [panel.proxy.index(r, column).data() for r in range(panel.proxy.rowCount())]


def test_findings_table_from_a_real_result(qtbot: QtBot, result: AnalysisResult) -> None:
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.row_count() == 0 and not panel.banner.isVisible()
    panel.set_result(result)
    # the table fills over the next event-loop turns (a frame's budget each): nothing of it in this one
    assert panel.filling and panel.model.rowCount() == 0 and not panel.banner.isVisible()
    qtbot.waitUntil(lambda: not panel.filling, timeout=2000)
    lesions, structures = result.findings.lesions, result.findings.structures
    assert panel.banner.isVisible() and "not verified" in panel.banner.text()
    names = _texts(panel, 0)
    # lesions one by one first, then every structure except the lesion label's aggregate
    assert names[:len(lesions)] == [f"Lung nodule {les.number}" for les in lesions]
    assert names[len(lesions):] == [display_name(s.name) for s in structures if s.name != "lung_nodule"]
    assert "Right lung" in names and "Subcutaneous fat" in names
    right = next(s for s in structures if s.name == "lung_right")
    row = names.index("Right lung")
    assert _texts(panel, 1)[row] == f"{fmt_volume(right.volume_ml)} mL"
    lesions = result.findings.lesions
    if lesions:  # nodules in mm³, as the report text gives them (one unit per kind of finding everywhere)
        les_row = names.index(f"{display_name(lesions[0].name)} {lesions[0].number}")
        assert _texts(panel, 1)[les_row] == lesion_volume_text(lesions[0].volume_ml)
        assert _texts(panel, 1)[les_row].endswith(" mm³")
    assert _texts(panel, 2)[row] == f"{fmt_number(right.mean or 0)} ± {right.std:.0f}"
    assert panel.model.headerData(2, Qt.Orientation.Horizontal) == "Mean ± SD\n(HU)"
    assert _texts(panel, 2)[row].startswith("\u2212"), "lung density is negative, shown with a minus sign"
    assert _texts(panel, 4)[row] == "right"
    first = lesions[0]
    assert _texts(panel, 3)[0] == f"{first.long_axis_mm:.1f} × {first.short_axis_mm:.1f}"
    assert _texts(panel, 4)[0] == first.zone and first.zone.startswith(("left", "right"))  # "left lower zone, ..."
    # measurements and cautions are shown, cautions verbatim (they go to the report)
    measures = [panel.measure_model.item(r, 0).text() for r in range(panel.measure_model.rowCount())]
    assert any("%LAA-950, right" in m for m in measures)
    for caution in result.findings.cautions:
        assert caution in panel.cautions.text()
    assert panel.cautions.isVisible()
    panel.set_result(None)
    assert panel.row_count() == 0 and not panel.banner.isVisible()


def test_clicking_a_row_gives_where_the_finding_is(qtbot: QtBot, result: AnalysisResult) -> None:
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.resize(700, 600)
    panel.show()
    panel.set_result(result)
    qtbot.waitUntil(lambda: not panel.filling, timeout=2000)
    lm = result.labelmap
    for row, les in enumerate(result.findings.lesions):
        target = _click_row(qtbot, panel, row)
        assert (target.kind, target.lesion_number, target.label) == ("lesion", les.number, les.label)
        assert target.voxel == tuple(round(c) for c in les.centroid_index)
        assert lm[target.voxel] == les.label, "the centroid of a round nodule lies in it"
        # the box is exactly that nodule's connected component, found independently here
        comps, _ = ndi.label(lm == les.label, structure=np.ones((3, 3, 3)))
        pts = np.argwhere(comps == comps[target.voxel])
        assert target.bbox_min_index == tuple(int(v) for v in pts.min(axis=0))
        assert target.bbox_max_index == tuple(int(v) for v in pts.max(axis=0))
        assert len(pts) == les.voxels
    row = _texts(panel, 0).index("Left lung")
    target = _click_row(qtbot, panel, row)
    left = next(s for s in result.findings.structures if s.name == "lung_left")
    assert target.kind == "structure" and target.name == "Left lung" and target.label == left.label
    assert target.voxel == tuple(round(c) for c in left.centroid_index)
    assert (target.bbox_min_index, target.bbox_max_index) == (left.bbox_min_index, left.bbox_max_index)
    assert target.centroid_lps == left.centroid_lps and target.centroid_lps[0] > 0, "left is +x in LPS"


def test_sorting_is_numeric_and_selection_follows_the_sort(qtbot: QtBot, result: AnalysisResult) -> None:
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_result(result)
    qtbot.waitUntil(lambda: not panel.filling, timeout=2000)
    panel.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
    volumes = [panel.proxy.index(r, 1).data(SORT_ROLE) for r in range(panel.proxy.rowCount())]
    assert volumes == sorted(volumes, reverse=True)
    texts = _texts(panel, 1)
    assert _ml(texts[0]) > _ml(texts[-1]), "sorted by value, not as text ('<0.01' < '1000')"
    largest = max((s for s in result.findings.structures), key=lambda s: s.volume_ml)
    target = _click_row(qtbot, panel, 0)
    assert target.name == display_name(largest.name) == _texts(panel, 0)[0]
    panel.table.sortByColumn(2, Qt.SortOrder.AscendingOrder)
    means = [panel.proxy.index(r, 2).data(SORT_ROLE) for r in range(panel.proxy.rowCount())]
    assert means == sorted(means)


def test_row_count_and_targets_complete_a_fill_in_progress(qtbot: QtBot, result: AnalysisResult) -> None:
    """Asking for the rows (a test, a finding link clicked in the report) never sees half a table."""
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_result(result)
    assert panel.filling
    expected = len(result.findings.lesions) + sum(
        1 for s in result.findings.structures if s.label not in {les.label for les in result.findings.lesions})
    assert panel.row_count() == expected
    assert not panel.filling and panel.banner.isVisible() and panel.target_at(0) is not None  # type: ignore[unreachable]
    panel.set_result(result)  # a new result while one fills: the old fill is dropped, not appended to
    panel.set_result(result)
    assert panel.row_count() == expected
    panel.set_result(None)
    assert not panel.filling and panel.model.rowCount() == 0


def test_number_formats() -> None:
    assert fmt_number(-856.4) == "\u2212856" and fmt_number(-0.2) == "0" and fmt_number(12.34, 1) == "12.3"
    assert [fmt_volume(v) for v in (2170.4, 43.51, 7.537, 0.27, 0.001)] == ["2170", "43.5", "7.54", "0.27", "<0.01"]
    assert fmt_mean(None, None, "HU") == "—" and fmt_mean(40.2, 12.7, "HU") == "40 ± 13 HU"
    assert fmt_mean(3.21, 0.5, "") == "3.2 ± 0.5"


# --- notes --------------------------------------------------------------------------
def _note_text(index: StudyIndex, note_id: int | None) -> str | None:
    """The stored text of a note (None when there is no such note)."""
    row = index.note(note_id) if note_id is not None else None
    return row.text if row is not None else None


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, int]:
    """A one-series CT study imported with a notes file and a DICOM reason-for-request field."""
    from workstation.index.importer import import_paths

    folder = tmp_path / "study"
    f.ct_series(folder, 3, ReasonForTheRequestedProcedure="Cough for 3 weeks")
    (folder / "notes.txt").write_text("Smoker, 30 pack-years.", encoding="utf-8")
    db = tmp_path / "index.sqlite"
    with StudyIndex(db) as index:
        result = import_paths([folder], index, workers=1)
        (study_id,) = set(result.study_ids)
    return db, study_id


def test_notes_panel_edits_are_saved_debounced_with_their_source(qtbot: QtBot, study: tuple[Path, int],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    db, study_id = study
    caplog.set_level("DEBUG")
    panel = NotesPanel(Catalog(db))
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.add_button.isEnabled()
    panel.set_study(study_id)
    with StudyIndex(db) as index:
        before = index.notes(study_id)
    assert {r.kind for r in before} >= {"text file", "dicom field"}
    assert [c.text() for c in panel.cards] == [r.text for r in before]
    card = next(c for c in panel.cards if c.kind == "text file")
    assert "<b>notes.txt</b>" in card.header.text() and "text file" in card.header.text()
    card.editor.selectAll()
    qtbot.keyClicks(card.editor, "Ex-smoker, 30 pack-years, stopped 2019.")
    with StudyIndex(db) as index:
        assert _note_text(index, card.note_id) == "Smoker, 30 pack-years.", "saved only after a pause"
    assert panel.pending()
    with qtbot.waitSignal(panel.saved, timeout=5000) as blocker:
        pass
    assert blocker.args == [card.note_id] and not panel.pending()
    with StudyIndex(db) as index:
        after = {r.id: r for r in index.notes(study_id)}
    assert card.note_id is not None
    assert after[card.note_id].text == "Ex-smoker, 30 pack-years, stopped 2019."
    assert (after[card.note_id].source, after[card.note_id].kind) == (card.source, "text file")
    assert len(after) == len(before)
    # a reopened panel shows the saved text
    panel.set_study(None)
    panel.set_study(study_id)
    assert "Ex-smoker, 30 pack-years, stopped 2019." in [c.text() for c in panel.cards]
    assert "pack-years" not in caplog.text, "note text is never logged"


def test_typed_notes_are_added_and_flushed_on_study_change(qtbot: QtBot, study: tuple[Path, int]) -> None:
    db, study_id = study
    panel = NotesPanel(Catalog(db))
    qtbot.addWidget(panel)
    panel.set_study(study_id)
    n = len(panel.cards)
    empty = panel.add_note()
    assert empty is not None and empty.note_id is None
    with qtbot.waitSignal(panel.saved, timeout=5000):
        qtbot.keyClicks(empty.editor, "Called referrer about nodule.")
    second = panel.add_note()
    assert second is not None
    qtbot.keyClicks(second.editor, "Second typed note.")
    panel.set_study(None)  # switching study saves what is pending at once
    with StudyIndex(db) as index:
        typed = [r for r in index.notes(study_id) if r.kind == "typed note"]
    assert [(r.source, r.text) for r in typed] == [("typed", "Called referrer about nodule."),
                                                         ("typed (2)", "Second typed note.")]
    panel.set_study(study_id)
    assert len(panel.cards) == n + 2
    blank = panel.add_note()
    assert blank is not None
    panel.flush()
    with StudyIndex(db) as index:
        assert len(index.notes(study_id)) == n + 2, "an empty new note is not stored"


# --- the AI run bar -----------------------------------------------------------------
def _bundle(models_dir: Path, name: str, modality: str, weights: bool = True) -> None:
    folder = models_dir / name
    _write(folder, metadata(f"{name} model", {"0": "background", "1": "organ"}, modality=modality),
           {"network_def": {"_target_": "UNet"}})
    if weights:
        (folder / "models" / "model.ts").write_bytes(b"not loaded by the listing")


def test_model_picker_filters_by_modality(qtbot: QtBot, tmp_path: Path) -> None:
    models = tmp_path / "models"
    _bundle(models, "brain_mr", "MRI")
    _bundle(models, "liver_ct", "CT")
    _bundle(models, "broken_ct", "CT", weights=False)
    bar = AnalysisBar(models)
    qtbot.addWidget(bar)
    assert bar.model_ids() == [] and not bar.run_button.isEnabled(), "no series open: nothing to run"
    bar.set_modality("CT")
    assert bar.model_ids() == ["builtin.ct", "bundle.broken_ct", "bundle.liver_ct"]
    assert bar.enabled_model_ids() == ["builtin.ct", "bundle.liver_ct"]
    assert bar.current_model_id() == "builtin.ct" and bar.run_button.isEnabled()
    broken = next(bar._items.item(i) for i in range(bar._items.rowCount())
                  if bar._items.item(i).data(Qt.ItemDataRole.UserRole + 1) == "bundle.broken_ct")
    assert "no weights" in broken.toolTip() and not broken.isEnabled()
    bar.picker.setCurrentIndex(2)
    bar.set_modality("MR")
    assert bar.model_ids() == ["bundle.brain_mr"] and bar.current_model_id() == "bundle.brain_mr"
    bar.set_modality("US")
    assert bar.model_ids() == [] and bar.current_model_id() is None and not bar.run_button.isEnabled()
    assert "No model for US images" in bar.picker.currentText()


def test_run_bar_states(qtbot: QtBot, tmp_path: Path, result: AnalysisResult) -> None:
    bar = AnalysisBar(tmp_path / "none")
    qtbot.addWidget(bar)
    bar.set_modality("CT")
    with qtbot.waitSignal(bar.runRequested, timeout=1000) as blocker:
        qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["builtin.ct"]
    bar.show_running()
    assert not bar.run_button.isEnabled() and bar.cancel_button.isEnabled() and not bar.picker.isEnabled()
    bar.show_progress(1, 0.35, "finding lung nodule candidates")
    assert bar.progress.value() == 350
    assert bar.progress.text() == "Finding lung nodule candidates · 35%"
    with qtbot.waitSignal(bar.cancelRequested, timeout=1000):
        qtbot.mouseClick(bar.cancel_button, Qt.MouseButton.LeftButton)
    assert bar.progress.text() == "Cancelling…" and not bar.cancel_button.isEnabled()
    bar.show_progress(1, 0.5, "segmenting bone")
    assert bar.progress.text() == "Cancelling…"
    bar.show_cancelled(1)
    assert bar.progress.text() == "Cancelled" and bar.run_button.isEnabled()
    bar.show_running()
    bar.show_failed(2, "Model problem: unknown model 'x' (installed: builtin.ct)")
    assert bar.message_text.startswith("Model problem") and bar.run_button.isEnabled()
    bar.show_running()
    bar.show_finished(3, result)
    assert bar.progress.value() == 1000 and bar.message_text.startswith("Finished in")
    bar.show_device("CPU (2 threads)")
    assert bar.device.text() == "CPU (2 threads)"


def test_hiding_the_notes_panel_saves_pending_edits(qtbot: QtBot, study: tuple[Path, int]) -> None:
    db, study_id = study
    panel = NotesPanel(Catalog(db))
    qtbot.addWidget(panel)
    panel.show()
    panel.set_study(study_id)
    card = panel.cards[0]
    original = card.text()
    qtbot.keyClick(card.editor, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(card.editor, " (checked)")
    panel.hide()  # e.g. the window closes before the debounce fires
    assert not panel.pending()
    with StudyIndex(db) as index:
        assert _note_text(index, card.note_id) == original + " (checked)"
