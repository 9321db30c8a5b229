"""The grounding check: crafted sentences that must pass and must fail, units and rounding, and the template's
own report on the demo study's real analysis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from inference.drafting import ClinicalNote, ReportDraft, ReportInputs, TemplateDrafter, check_draft, check_sentence
from inference.drafting.draft import CLINICAL, COMPARISON, FINDINGS, IMPRESSION, TECHNIQUE
from inference.drafting.facts import GroundingFacts, collect_facts
from inference.drafting.quantities import find_quantities, format_value, parse_number
from inference.findings import Findings, Lesion, Measurement
from tests.llm_factory import sample_inputs


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return sample_inputs()


@pytest.fixture(scope="module")
def facts(inputs: ReportInputs) -> GroundingFacts:
    return collect_facts(inputs)


# ---------------------------------------------------------------- quantities


@pytest.mark.parametrize(("text", "kind", "values", "relation"), [
    ("12 mm", "length", (12.0,), "="),
    ("1.2 cm", "length", (12.0,), "="),
    ("22 x 18 mm", "length", (22.0, 18.0), "="),
    ("22 mm x 18 mm x 15 mm", "length", (22.0, 18.0, 15.0), "="),
    ("6-8 mm", "length", (6.0, 8.0), "range"),
    ("between 6 and 8 mm", "length", (6.0, 8.0), "range"),
    ("less than 6 mm", "length", (6.0,), "<"),
    ("at least 5%", "percent", (5.0,), ">"),
    ("2.2 L", "volume", (2200.0,), "="),
    ("2170 ml", "volume", (2170.0,), "="),
    ("12 cc", "volume", (12.0,), "="),
    ("5558 mm³", "volume", (5.558,), "="),
    ("94.3 cm²", "area", (94.3,), "="),
    ("94.3 cm2", "area", (94.3,), "="),
    ("-950 HU", "density", (-950.0,), "="),
    ("13.5 %", "percent", (13.5,), "="),
    ("z = -45.0 mm", "position", (-45.0,), "="),
])
def test_quantities_are_read_with_kind_and_canonical_value(text: str, kind: str, values: tuple[float, ...],
                                                           relation: str) -> None:
    (q,) = find_quantities(f"Here: {text}, as said.")
    assert q.kind == kind
    assert q.values == pytest.approx(values)
    assert q.relation == relation


def test_numbers_without_units_are_not_quantities() -> None:
    assert find_quantities("B30f kernel, L3 level, 40 pack-years, stopped 2015, slice 41, %LAA-950 index") == []
    assert [q.text for q in find_quantities("13.5% on the right and 0.0% on the left")] == ["13.5%", "0.0%"]


def test_rounding_shown_sets_the_tolerance() -> None:
    assert parse_number("12") == (12.0, 0.5)
    assert parse_number("1.25") == pytest.approx((1.25, 0.005))
    assert parse_number("2170") == (2170.0, 5.0)  # rounded to the last non-zero digit
    assert parse_number("2000") == (2000.0, 100.0)  # ... but never looser than 5 %
    assert parse_number("2,174") == (2174.0, 0.5)  # a thousands separator
    assert parse_number("2,5") == pytest.approx((2.5, 0.05))
    assert format_value(12.5, 0) == "13" and format_value(-0.04, 1) == "0.0" and format_value(13.47, 1) == "13.5"


def _inputs_with_lesion(long_mm: float) -> ReportInputs:
    les = Lesion(10, "lung_nodule", 1, 50, 0.3, 30.0, "HU", (10.0, 10.0, 10.0), (-80.0, 0.0, 0.0), long_mm,
                 long_mm - 3.0, long_mm, long_mm - 3.0, 10, "right", "right lung")
    return ReportInputs(Findings(lesions=[les], measurements=[Measurement("lung volume", 2170.2, "mL",
                                                                          "lung_right", "right")]))


@pytest.mark.parametrize(("measured", "written", "ok"), [
    (11.6, "12 mm", True),
    (12.5, "12 mm", True),  # exactly half-way: either rounding is honest
    (12.5, "13 mm", True),
    (12.51, "12 mm", False),
    (11.49, "12 mm", False),
    (11.6, "1.2 cm", True),
    (12.6, "1.2 cm", False),
    (12.26, "12.3 mm", True),
    (12.26, "12.2 mm", False),
])
def test_rounding_edges(measured: float, written: str, ok: bool) -> None:
    facts = collect_facts(_inputs_with_lesion(measured))
    result = check_sentence(f"A {written} nodule in the right lung.", FINDINGS, facts)
    assert result.ok is ok, result.reasons


def test_litres_convert_to_millilitres() -> None:
    facts = collect_facts(_inputs_with_lesion(10.0))
    assert check_sentence("Right lung volume 2.2 L.", FINDINGS, facts).ok
    assert check_sentence("Right lung volume 2.17 L.", FINDINGS, facts).ok
    assert not check_sentence("Right lung volume 2.3 L.", FINDINGS, facts).ok


# ---------------------------------------------------------------- crafted sentences

PASSING = [
    (FINDINGS, "The right lung volume is 2170 mL.", "measurement:lung volume:lung_right"),
    (FINDINGS, "A 2.2 cm nodule in the left lung.", "lesion:lung_nodule:1"),
    (FINDINGS, "Nodule 3 in the right lung measures 10 x 8 mm.", "lesion:lung_nodule:3"),
    (FINDINGS, "Nodule 1 measures 22.5 mm, with a mean attenuation of 30 HU and a volume of 5.6 mL.",
     "lesion:lung_nodule:1"),
    (FINDINGS, "Emphysema index 13.5% in the right lung and 0.0% in the left lung.",
     "measurement:%LAA-950:lung_left"),
    (FINDINGS, "%LAA-950 (voxels below -950 HU) is 7.4% over both lungs.", "measurement:%LAA-950:lungs"),
    (FINDINGS, "Skeletal muscle area 94.3 cm² at the lung bases.", "measurement:muscle area:muscle"),
    (FINDINGS, "Visceral fat area 144.2 cm2; subcutaneous fat area 103.8 cm2.",
     "measurement:subcutaneous fat area:subcutaneous_fat"),
    (FINDINGS, "Total lung volume 3943 mL.", "measurement:total lung volume:lungs"),
    (FINDINGS, "%LAA-950 of 13.5% (right) and 0.0% (left).", "measurement:%LAA-950:lung_right"),
    (FINDINGS, "Lung volumes: right: 2170 mL, left: 1772 mL.", "measurement:lung volume:lung_left"),
    (FINDINGS, "Mean attenuation of the vertebral bone 250 HU.", "measurement:bone mean HU:bone_marrow"),
    (FINDINGS, "The right upper lobe nodule measures 10 x 8 mm.", "lesion:lung_nodule:3"),  # lobe: from the notes
    (FINDINGS, "Two nodules in the right lung, the larger 10 x 8 mm.", "lesion:lung_nodule:3"),
    (FINDINGS, "A nodule in the right lung.", "lesion:lung_nodule:4"),
    (FINDINGS, "Bilateral lung nodules.", "lesion:lung_nodule:1"),
    (FINDINGS, "The smallest nodule is under 6 mm.", "lesion:lung_nodule:4"),
    (IMPRESSION, "4 lung nodule candidates, the largest over 20 mm.", "lesion:lung_nodule:1"),
    (FINDINGS, "Caution: %LAA-950 is valid on thin sections (<= 1.5 mm).", "caution:0"),
    (CLINICAL, "Prior CT: right upper lobe nodule of 16 mm.", "note:2"),
    (TECHNIQUE, "CT of the chest without contrast, 2.5 mm slices.", "technique"),
    (COMPARISON, "No prior imaging was available for comparison.", None),
]

FAILING = [
    (FINDINGS, "The left lung volume is 2170 mL.", "said to be on the left"),
    (FINDINGS, "There is a nodule in the right lung measuring 22 x 22 mm.", "on the right"),
    (FINDINGS, "Nodule 3 in the left lung.", "nodule 3 on the left"),
    (FINDINGS, "A 25 mm nodule in the left lung.", "25 mm matches no measured finding"),
    (FINDINGS, "Nodule 1 measures 2.2 mm.", "2.2 mm"),  # unit slip: 2.2 cm would be right
    (FINDINGS, "Right lung volume 2.3 L.", "2.3 L"),
    (FINDINGS, "The right lung measures 3943 mL.", "both sides together"),
    (FINDINGS, "%LAA-950 of 0.0% (right) and 13.5% (left).", "13.5% is said to be on the left"),
    (FINDINGS, "Lung volumes: right: 1772 mL, left: 2170 mL.", "1772 mL is said to be on the right"),
    (FINDINGS, "No pneumothorax.", "names the pneumothorax"),
    (FINDINGS, "Skeletal muscle area 103.8 cm².", "not a value of the muscle"),
    (FINDINGS, "Subcutaneous fat area 144.2 cm2.", "not a value of the subcutaneous fat"),
    (FINDINGS, "The liver is normal.", "names the liver"),
    (FINDINGS, "No pleural effusion.", "names the pleural effusion"),
    (FINDINGS, "The heart is not enlarged.", "names the heart"),
    (FINDINGS, "A left lower lobe nodule measures 22 x 22 mm.", "names the lower lobe"),
    (FINDINGS, "No nodules in the left lung.", "no lesion on the left"),
    (FINDINGS, "5 lung nodule candidates.", "counts 5"),
    (FINDINGS, "Three nodules in the right lung.", "counts 3 lesion(s) on the right"),
    (FINDINGS, "All nodules are under 6 mm.", "does not hold for every lesion"),
    (FINDINGS, "The nodule previously measured 16 mm.", "from the notes"),
    (FINDINGS, "Nodule 7 is stable.", "no lesion has that number"),
    (CLINICAL, "Prior nodule measured 12 mm.", "not in the notes"),
    (TECHNIQUE, "Images at 1.0 mm slice thickness.", "technique"),
]


@pytest.mark.parametrize(("section", "text", "link"), PASSING)
def test_grounded_sentences_pass_and_link_their_findings(facts: GroundingFacts, section: str, text: str,
                                                         link: str | None) -> None:
    result = check_sentence(text, section, facts)
    assert result.ok, result.reasons
    assert result.status == "ok"
    if link is not None:
        assert link in [ln.key for ln in result.links]


@pytest.mark.parametrize(("section", "text", "reason"), FAILING)
def test_ungrounded_sentences_are_flagged_with_the_reason(facts: GroundingFacts, section: str, text: str,
                                                          reason: str) -> None:
    result = check_sentence(text, section, facts)
    assert not result.ok
    assert result.status == "flagged"
    assert any(reason in r for r in result.reasons), result.reasons


def test_links_carry_what_the_viewer_needs(facts: GroundingFacts) -> None:
    result = check_sentence("Nodule 1 (left lung): 22 x 22 mm.", FINDINGS, facts)
    link = next(ln for ln in result.links if ln.key == "lesion:lung_nodule:1")
    assert link.label == 10 and link.kind == "lesion"
    assert link.centroid_lps == pytest.approx((85.1, 0.0, -45.0))
    assert link.axial_slice == 41
    lung = check_sentence("The right lung volume is 2170 mL.", FINDINGS, facts).links[0]
    assert lung.label == 2 and lung.centroid_lps is not None
    assert set(link.to_dict()) >= {"key", "kind", "name", "label", "centroid_lps", "centroid_index"}


def test_structures_named_in_the_notes_are_allowed() -> None:
    base = sample_inputs()
    with_liver = dataclasses.replace(base, notes=(ClinicalNote("DICOM AdditionalPatientHistory", "Known liver cyst."),))
    assert check_sentence("The liver was not assessed.", FINDINGS, collect_facts(with_liver)).ok


def test_a_whole_draft_is_checked_sentence_by_sentence(inputs: ReportInputs) -> None:
    draft = ReportDraft.from_text(
        "Clinical information: Follow-up right upper lobe nodule.\n"
        "Findings: The right lung volume is 2170 mL. The liver is normal.\n"
        "Impression:\n1. Four lung nodule candidates.\n2. Left lung volume 2170 mL.\n")
    report = check_draft(draft, inputs)
    assert [(s.section, s.index, s.ok) for s in report.sentences] == [
        (CLINICAL, 0, True), (FINDINGS, 0, True), (FINDINGS, 1, False), (IMPRESSION, 0, True),
        (IMPRESSION, 1, False)]
    assert not report.ok and len(report.flagged) == 2
    as_dict = report.to_dict()
    assert as_dict["ok"] is False and as_dict["sentences"][2]["status"] == "flagged"


def test_template_report_passes_its_own_check_on_sample_findings(inputs: ReportInputs) -> None:
    draft = TemplateDrafter().draft(inputs)
    report = check_draft(draft, inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]
    linked = {ln.key for s in report.sentences for ln in s.links}
    assert {"lesion:lung_nodule:1", "lesion:lung_nodule:4", "measurement:%LAA-950:lung_right"} <= linked


# ---------------------------------------------------------------- the demo study, analysed for real


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> ReportInputs:
    from inference.contract import AnalysisRequest
    from inference.engine import Engine
    from workstation.demo import generate_demo_study
    from workstation.dicomio.headers import read_header_path
    from workstation.dicomio.volume_builder import load_series

    folder = tmp_path_factory.mktemp("demo") / "study"
    generate_demo_study(folder)
    headers = [read_header_path(p) for p in sorted(folder.glob("*.dcm"))]
    volume = load_series(headers).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    notes = [(f"DICOM {k}", v) for k, v in headers[0].texts.items() if k != "SeriesDescription"]
    notes.append((str(Path(folder) / "notes.txt"), (folder / "notes.txt").read_text(encoding="utf-8")))
    return ReportInputs.from_analysis(result, notes, study_description=headers[0].texts.get("StudyDescription", ""))


@pytest.mark.slow
def test_template_report_on_the_demo_study_is_fully_grounded(demo_inputs: ReportInputs) -> None:
    draft = TemplateDrafter().draft(demo_inputs)
    report = check_draft(draft, demo_inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]
    text = draft.text()
    assert "left lung" in text and "right lung" in text and "Fleischner" in text
    for caution in demo_inputs.cautions():
        assert caution in text
    assert draft.metadata["ai_generated"] is True and draft.metadata["drafter"] == "template"
    assert draft.metadata["analysis"].startswith("builtin.ct")


@pytest.mark.slow
def test_wrong_claims_about_the_demo_study_are_flagged(demo_inputs: ReportInputs) -> None:
    facts = collect_facts(demo_inputs)
    nodule = max(demo_inputs.findings.lesions, key=lambda x: x.long_axis_mm)
    other = "right" if nodule.location.startswith("left") else "left"
    size = f"{format_value(nodule.long_axis_mm, 0)} x {format_value(nodule.short_axis_mm, 0)} mm"
    assert check_sentence(f"A {size} nodule in the {nodule.location}.", FINDINGS, facts).ok
    assert not check_sentence(f"A {size} nodule in the {other} lung.", FINDINGS, facts).ok
    assert not check_sentence("The spleen is unremarkable.", FINDINGS, facts).ok
