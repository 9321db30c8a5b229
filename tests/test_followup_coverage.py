"""A lesion outside the other study's field of view is "not covered", never "new" or "resolved".

Follow-ups rarely image the same length (a chest-only prior to a chest-abdomen
current). A current lesion the prior never imaged, or a prior lesion the
current does not reach, has no known change: calling it new (or resolved)
would have the radiologist sign a false statement. These tests build fields of
view that cover only part of the other study and follow such lesions through
the matching, the record, the guidelines, the draft and its grounding check,
the PDF, the SR and the window's table; and end to end through
``compare_with_prior`` with the demo prior cut to a shorter field of view.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from inference.drafting import ReportInputs, TemplateDrafter, check_draft, check_sentence
from inference.drafting.comparison import change_clause
from inference.drafting.draft import COMPARISON, IMPRESSION
from inference.drafting.facts import collect_facts
from inference.findings.model import Lesion
from inference.followup.guidelines import fleischner, lung_rads
from inference.followup.matching import match_lesions
from inference.followup.model import ChangeStatus, Comparison, LesionChange
from inference.followup.space import FieldOfView
from tests.comparison_factory import registration, sample_comparison
from tests.llm_factory import sample_inputs
from tests.requirements import SYSTEM_TOOLS_FIX, requires
from workstation.export.validate import dciodvfy_path

if TYPE_CHECKING:
    from pytestqt.qtbot import QtBot

    from inference.contract import AnalysisResult
    from workstation.dicomio.headers import InstanceHeader

SHIFT = (2.0, -1.0, 3.0)  # the factory's registration: current -> prior adds this


def _field(z_first: float, slices: int, step: float = 5.0) -> FieldOfView:
    """An axial stack: ``slices`` slices from ``z_first`` every ``step`` mm, 400 x 400 mm centred on the axis."""
    affine = np.eye(4)
    affine[:3, 0] = (0.0, 0.0, step)  # slice index -> z
    affine[:3, 1] = (0.0, 2.0, 0.0)  # row -> y
    affine[:3, 2] = (2.0, 0.0, 0.0)  # column -> x
    affine[:3, 3] = (-200.0, -200.0, z_first)
    return FieldOfView((slices, 200, 200), tuple(tuple(float(v) for v in row) for row in affine))


def _nodule(number: int, centre: tuple[float, float, float], diameter: float, mean: float = 30.0) -> Lesion:
    return Lesion(label=10, name="lung_nodule", number=number, voxels=100, volume_ml=math.pi * diameter ** 3 / 6000.0,
                  mean=mean, units="HU", centroid_index=(0.0, 0.0, 0.0), centroid_lps=centre,
                  long_axis_mm=diameter, short_axis_mm=diameter, long_axis_3d_mm=diameter,
                  short_axis_3d_mm=diameter, axial_slice=0, side="right", series_number=2,
                  instance_number=10 + number)


def _in_prior(number: int, centre: tuple[float, float, float], diameter: float) -> Lesion:
    """A prior lesion at the same anatomy as current point ``centre`` (carried by the factory's shift)."""
    moved = (centre[0] + SHIFT[0], centre[1] + SHIFT[1], centre[2] + SHIFT[2])
    return dataclasses.replace(_nodule(number, moved, diameter), series_number=3)


# --- matching ----------------------------------------------------------------------------------------------

CURRENT_FIELD = _field(0.0, 53)  # current z -2.5 .. 262.5 mm
PRIOR_FIELD = _field(100.0, 47)  # prior z 97.5 .. 332.5 mm: a prior that starts higher up


def _scenario() -> tuple[list[Lesion], list[Lesion]]:
    current = [
        _nodule(1, (0.0, 0.0, 200.0), 8.0),  # imaged in both, there in both: stable
        _nodule(2, (50.0, 0.0, 250.0), 6.0),  # inside the prior's field, absent there: new
        _nodule(3, (-50.0, 0.0, 40.0), 7.0),  # prior z 43: the prior never imaged it
        _nodule(4, (-100.0, 50.0, 97.0), 10.0),  # prior z 100: centre inside, but the prior cut it in half
        _nodule(5, (100.0, 50.0, 97.0), 4.0),  # prior z 100 too, small: wholly inside the prior's field: new
    ]
    prior = [
        _in_prior(1, (0.0, 0.0, 200.0), 8.0),
        _in_prior(2, (-80.0, -40.0, 150.0), 6.0),  # inside the current's field, absent now: resolved
        _in_prior(3, (80.0, -40.0, 307.0), 6.0),  # current z 307: beyond the current's field
    ]
    return current, prior


def test_an_unmatched_lesion_outside_the_other_field_of_view_is_not_covered() -> None:
    current, prior = _scenario()
    changes = match_lesions(current, prior, registration(), 366, current_field=CURRENT_FIELD,
                            prior_field=PRIOR_FIELD)
    status = {(ch.current_id, ch.prior_id): ch.status for ch in changes}
    assert status == {
        (1, 1): ChangeStatus.STABLE,
        (2, None): ChangeStatus.NEW,
        (3, None): ChangeStatus.NOT_COVERED,
        (4, None): ChangeStatus.NOT_COVERED,
        (5, None): ChangeStatus.NEW,
        (None, 2): ChangeStatus.RESOLVED,
        (None, 3): ChangeStatus.NOT_COVERED,
    }
    for ch in changes:
        if ch.status is ChangeStatus.NOT_COVERED:  # nothing is known of its change
            assert ch.volume_change_percent is None and ch.diameter_change_mm is None
            assert ch.doubling_time_days is None and "field of view" in ch.doubling_time_reason
    # without the fields (unknown) the old reading stays: unmatched means new or resolved
    plain = match_lesions(current, prior, registration(), 366)
    assert ChangeStatus.NOT_COVERED not in {ch.status for ch in plain}


def test_the_field_of_view_is_the_voxel_grid_plus_half_a_voxel() -> None:
    field = _field(100.0, 47)  # slice centres 100 .. 330 mm
    inside = field.contains([(0.0, 0.0, 97.6), (0.0, 0.0, 332.4), (199.0, 199.0, 200.0)])
    outside = field.contains([(0.0, 0.0, 97.4), (0.0, 0.0, 332.6), (0.0, 201.0, 200.0)])
    assert inside.tolist() == [True, True, True] and outside.tolist() == [False, False, False]
    assert field.contains([(0.0, 0.0, 101.0)], 3.0).tolist() == [True]
    assert field.contains([(0.0, 0.0, 100.0)], 3.0).tolist() == [False]


def test_not_covered_round_trips_through_json() -> None:
    current, prior = _scenario()
    c = sample_comparison([_nodule(9, (0.0, 0.0, 0.0), 5.0)] * 3)  # any record; its changes replaced below
    changes = match_lesions(current, prior, registration(), 366, current_field=CURRENT_FIELD,
                            prior_field=PRIOR_FIELD)
    c = dataclasses.replace(c, changes=changes)
    data = json.loads(json.dumps(c.to_dict()))
    assert [x["status"] for x in data["lesions"]].count("not covered") == 3
    assert Comparison.from_dict(data) == c


# --- guidelines --------------------------------------------------------------------------------------------


def _unseen(les: Lesion) -> LesionChange:
    (ch,) = match_lesions([les], [], registration(), 800, prior_field=PRIOR_FIELD)
    assert ch.status is ChangeStatus.NOT_COVERED
    return ch


def test_a_not_covered_nodule_is_graded_as_at_baseline_never_new_or_growing() -> None:
    nodule = _nodule(1, (0.0, 0.0, 40.0), 9.0)  # prior z 43: outside the prior's field
    ch = _unseen(nodule)
    rads = lung_rads([nodule], [ch]).recommendation
    assert rads is not None
    assert rads.category == "4A"  # 8 to < 15 mm at baseline; a new nodule of 9 mm would be 4B
    assert "field of view" in rads.basis and "baseline" in rads.basis and "new" not in rads.basis
    fl = fleischner([nodule], [ch], interval_days=800).recommendation
    assert fl is not None and "growing" not in fl.rule and "growing" not in fl.text.lower()
    assert fl.rule == "Fleischner 2017: solid nodule, single, >8 mm, high risk"
    assert "field of view" in fl.basis
    # next to a nodule stable for over two years it does not make the exam "stable for 2 years"
    stable = _nodule(2, (0.0, 0.0, 200.0), 5.0)
    pair = match_lesions([nodule, stable], [_in_prior(1, (0.0, 0.0, 200.0), 5.0)], registration(), 800,
                         prior_field=PRIOR_FIELD)
    both = fleischner([nodule, stable], pair, interval_days=800).recommendation
    assert both is not None and "stable for 2 years" not in both.rule


# --- the draft and its grounding ---------------------------------------------------------------------------


def _draft_inputs() -> ReportInputs:
    """sample_inputs' comparison with a prior stack ending at prior z 69.5 mm and a current one from z -90 mm.

    Nodule 2 (z 60, 14 mm) lies partly beyond the prior's top slice: not covered; nodule 4 (z -40) is new;
    the prior's lesion 3 (current z -103) lies below the current's field: not covered, not resolved.
    """
    base = sample_inputs()
    prior_field = _field(-110.0, 180, 1.0)  # z -110.5 .. 69.5 mm
    current_field = _field(-90.0, 191, 1.0)  # z -90.5 .. 100.5 mm
    c = sample_comparison(base.findings.lesions, current_field=current_field, prior_field=prior_field)
    return dataclasses.replace(base, comparison=c)


def test_the_draft_says_not_in_the_prior_field_of_view_and_passes_grounding() -> None:
    inputs = _draft_inputs()
    c = inputs.comparison
    assert c is not None
    statuses = {(ch.current_id, ch.prior_id): ch.status for ch in c.changes}
    assert statuses[(2, None)] is ChangeStatus.NOT_COVERED and statuses[(4, None)] is ChangeStatus.NEW
    assert statuses[(None, 3)] is ChangeStatus.NOT_COVERED
    draft = TemplateDrafter().draft(inputs)
    line = next(s for s in draft[COMPARISON] if s.startswith("Nodule 2"))
    assert "not included in the prior examination's field of view; no comparison possible" in line
    assert "new" not in line and "doubling" not in line and "mean diameter prior" not in line
    gone = next(s for s in draft[COMPARISON] if s.startswith("Prior nodule 3"))
    assert "not included in the current examination's field of view" in gone and "resolved" not in gone
    text = " ".join(s for section in draft.sections.values() for s in section)
    assert "1 new nodule (nodule 4)" in text  # only the nodule the prior did image is counted new
    report = check_draft(draft, inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]


def test_grounding_flags_new_or_resolved_for_a_lesion_outside_the_field_of_view() -> None:
    inputs = _draft_inputs()
    facts = collect_facts(inputs)
    draft = TemplateDrafter().draft(inputs)
    line = next(s for s in draft[COMPARISON] if s.startswith("Nodule 2"))
    assert check_sentence(line, COMPARISON, facts).ok
    claimed = line.replace("not included in the prior examination's field of view; no comparison possible", "new")
    verdict = check_sentence(claimed, COMPARISON, facts)
    assert not verdict.ok and any("field of view" in r for r in verdict.reasons)
    for bad in ("Nodule 2 is new since the prior.", "New nodule 2 in the left lung.",
                "Prior nodule 3 has resolved.", "2 new nodules since the prior."):
        assert not check_sentence(bad, IMPRESSION, facts).ok, bad
    unseen = next(ch for ch in inputs.comparison.changes if ch.current_id == 2)  # type: ignore[union-attr]
    clause = change_clause(unseen, inputs.comparison)  # type: ignore[arg-type]
    assert "not included in the field of view of the prior" in clause and "new" not in clause
    assert check_sentence(f"Nodule 2 measures 14 x 14 mm, {clause}.", IMPRESSION, facts).ok
    for good in ("Nodule 4 is new since the prior.", "Nodule 2 was not included in the prior examination.",
                 "1 new nodule since the prior."):
        assert check_sentence(good, IMPRESSION, facts).ok, good


# --- end to end: the demo prior cut to a chest-only field of view, through compare_with_prior ------------

PRIOR_TOP_ONLY_FROM_Z = -35.0
"""The cut prior keeps the slices from z -35 mm up: its two lower nodules (the stable one at prior z -62 and
the place of the new one, near prior z -57) lie below its field; the grown and the upper stable one inside."""


@dataclasses.dataclass
class CutPair:
    headers: list[InstanceHeader]
    result: AnalysisResult
    comparison: Comparison
    truth_status: list[str]
    current_centres: list[tuple[float, float, float]]


@pytest.fixture(scope="module")
def cut_pair(tmp_path_factory: pytest.TempPathFactory) -> CutPair:
    from inference.contract import AnalysisRequest
    from inference.engine import Engine
    from workstation.demo import ensure_demo_study
    from workstation.demo.phantom import PRIOR_FOLDER_NAME
    from workstation.demo.prior import load_followup_truth
    from workstation.dicomio.headers import read_header_path
    from workstation.services.analysis_store import AnalysisStore
    from workstation.services.followup import compare_with_prior
    from workstation.services.studies import SeriesSource, load_series_volumes

    root = tmp_path_factory.mktemp("coverage")
    study = ensure_demo_study(root / "cache")
    truth = load_followup_truth(study / PRIOR_FOLDER_NAME)
    current = SeriesSource("demo current", [read_header_path(p) for p in sorted(study.glob("IM*.dcm"))])
    prior_all = [read_header_path(p) for p in sorted((study / PRIOR_FOLDER_NAME).glob("IM*.dcm"))]
    kept = [h for h in prior_all if h.ipp is not None and h.ipp[2] >= PRIOR_TOP_ONLY_FROM_Z]
    prior = SeriesSource("demo prior, chest only", kept)
    assert 0 < len(prior.headers) < len(prior_all)
    volume = load_series_volumes(current).volumes[0]
    engine = Engine(None)
    result = engine.run(AnalysisRequest(volume, "builtin.ct"))
    comparison = compare_with_prior(current, volume, result, prior, engine=engine, store=AnalysisStore(root / "store"),
                                    model_id="builtin.ct", device="cpu")
    return CutPair(list(current.headers), result, comparison, [n.status for n in truth.nodules],
                   [n.center_current_lps_mm for n in truth.nodules])


def test_compare_with_a_shorter_prior_calls_the_unimaged_nodules_not_covered(cut_pair: CutPair) -> None:
    c = cut_pair.comparison
    assert c.registration.passed, c.registration.reason
    got = []
    for centre in cut_pair.current_centres:
        ch = min((x for x in c.changes if x.current is not None),
                 key=lambda x: float(np.linalg.norm(np.subtract(x.current.centroid_lps, centre))))  # type: ignore[union-attr]
        got.append(ch.status.value)
    # the truth of the full prior: grown, new, stable, stable; the two lower ones were cut off the prior
    assert cut_pair.truth_status == ["grown", "new", "stable", "stable"]
    assert got == ["grown", "not covered", "stable", "not covered"]
    assert not c.by_status(ChangeStatus.NEW) and not c.by_status(ChangeStatus.RESOLVED)
    assert c.recommendation is not None and c.recommendation.rule == "Fleischner 2017: growing solid nodule"


def test_pdf_and_window_table_show_not_covered(cut_pair: CutPair, tmp_path: Path, qtbot: QtBot) -> None:
    from pypdf import PdfReader
    from PySide6.QtGui import QColor

    from workstation.document import DraftSource, ReportDocument
    from workstation.export import render_pdf
    from workstation.export.pdf_comparison import change_rows
    from workstation.qt.panels.comparison import STATUS_COLOURS, ComparisonPanel

    c = cut_pair.comparison
    rows = change_rows(c)
    unseen = [i for i, ch in enumerate(c.changes) if ch.status is ChangeStatus.NOT_COVERED]
    assert unseen and all(rows[i][6] == "not in prior field" and rows[i][4] == "-" and rows[i][5] == "-"
                          for i in unseen)
    doc = ReportDocument.from_draft("study", {"Comparison": "See the table."},
                                    DraftSource("template", "1", "builtin.ct", "1.0.0"))
    (tmp_path / "r.pdf").write_bytes(render_pdf(doc, cut_pair.result, comparison=c, key_images=0))
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(str(tmp_path / "r.pdf")).pages)
    assert "not in prior field" in text and "outside that examination's field of view" in text
    panel = ComparisonPanel()
    qtbot.addWidget(panel)
    panel.set_comparison(c)
    for i in unseen:
        assert panel.cell_text(i, 1) == "not in prior field"
        item = panel.model.item(i, 1)
        assert item.foreground().color() == QColor(STATUS_COLOURS[ChangeStatus.NOT_COVERED])
        assert "field of view" in item.toolTip()


@requires(dciodvfy_path() is not None, "dciodvfy (Debian package dicom3tools) is not installed", SYSTEM_TOOLS_FIX)
def test_measurement_sr_codes_not_covered_and_passes_dciodvfy(cut_pair: CutPair, tmp_path: Path) -> None:
    import pydicom

    from workstation.document import DraftSource, ReportDocument
    from workstation.export import ExportOptions, export_study
    from workstation.export.sr_comparison import QUALITATIVE_DIFFERENCE, STATUS_CODES

    doc = ReportDocument.from_draft("study", {"Comparison": "See the table."},
                                    DraftSource("template", "1", "builtin.ct", "1.0.0"))
    res = export_study(cut_pair.result, cut_pair.headers, tmp_path / "out", doc,
                       ExportOptions(formats=frozenset({"seg", "sr"})), comparison=cut_pair.comparison)
    assert res.validation["sr"].errors == [], res.validation["sr"].errors
    codes: list[str] = []

    def walk(items: Any) -> None:
        for item in items:
            if "ConceptCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_DIFFERENCE[0]:
                codes.append(str(item.ConceptCodeSequence[0].CodeValue))
            walk(item.get("ContentSequence", []))

    walk(pydicom.dcmread(res.files["sr"]).ContentSequence)
    want = STATUS_CODES[ChangeStatus.NOT_COVERED][0]
    assert codes.count(want) == len(cut_pair.comparison.by_status(ChangeStatus.NOT_COVERED)) == 2
    assert STATUS_CODES[ChangeStatus.NEW][0] not in codes
