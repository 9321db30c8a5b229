"""A draft that answers the request: the demo study's follow-up nodule and emphysema first, by zone and image;
a real abdomen CT without lungs leads with the anatomy analysed; places and images are grounded."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pydicom
import pytest

from inference.drafting import ClinicalNote, ReportInputs, TechniqueFacts, TemplateDrafter, check_draft, check_sentence
from inference.drafting.draft import FINDINGS, IMPRESSION
from inference.drafting.facts import collect_facts
from inference.drafting.prompt import user_prompt
from inference.drafting.quantities import format_value
from inference.findings import Findings, Lesion, Measurement, StructureFinding, coverage_caution
from inference.labels import Label, LabelTable
from workstation.demo import DemoTruth, NoduleTruth

pytestmark = pytest.mark.slow

CT_ABDOMEN = "ct_abdomen_totalseg/example_ct_dicom"


def _analyse(files: list[Path], extra_notes: list[tuple[str, str]]) -> ReportInputs:
    from inference.contract import AnalysisRequest
    from inference.engine import Engine
    from workstation.dicomio.headers import read_header_path
    from workstation.dicomio.volume_builder import load_series

    headers = [read_header_path(p) for p in files]
    volume = load_series(headers).volumes[0]
    result = Engine(None).run(AnalysisRequest(volume, "builtin.ct"))
    notes = [(f"DICOM {k}", v) for k, v in headers[0].texts.items() if k != "SeriesDescription"] + extra_notes
    return ReportInputs.from_analysis(result, notes, study_description=headers[0].texts.get("StudyDescription", ""))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoTruth, ReportInputs]:
    from workstation.demo import generate_demo_study

    folder = tmp_path_factory.mktemp("demo") / "study"
    truth = generate_demo_study(folder)
    inputs = _analyse(sorted(folder.glob("*.dcm")), [("notes.txt", (folder / "notes.txt").read_text("utf-8"))])
    return folder, truth, inputs


def _lesion_at(inputs: ReportInputs, nodule: NoduleTruth) -> Lesion:
    les = min(inputs.findings.lesions, key=lambda x: sum((a - b) ** 2 for a, b in zip(
        x.centroid_lps, nodule.center_lps_mm, strict=True)))
    assert sum((a - b) ** 2 for a, b in zip(les.centroid_lps, nodule.center_lps_mm, strict=True)) < 9.0
    return les


def _image_z(folder: Path) -> dict[tuple[int, int], float]:
    """(SeriesNumber, InstanceNumber) -> z of each image, read from the DICOM files themselves."""
    out = {}
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[(int(ds.SeriesNumber), int(ds.InstanceNumber))] = float(ds.ImagePositionPatient[2])
    return out


def _dims(les: Lesion) -> str:
    return f"{format_value(les.long_axis_mm, 0)} x {format_value(les.short_axis_mm, 0)} mm"


def test_demo_impression_answers_the_follow_up_nodule_first_with_size_and_image(
        demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    folder, truth, inputs = demo
    draft = TemplateDrafter().draft(inputs)
    first = draft["Impression"][0]
    asked = next(n for n in truth.nodules if (n.side, n.lobe) == ("right", "upper"))
    les = _lesion_at(inputs, asked)
    assert first.startswith('Request "Follow-up right upper lobe nodule"'), first
    assert f"nodule {les.number} in the right upper zone" in first and _dims(les) in first
    # the image named is the one through the nodule's centre (within half the 2.5 mm spacing)
    series, image = les.series_number, les.instance_number
    assert series is not None and image is not None
    assert f"(series {series}, image {image})" in first
    assert abs(_image_z(folder)[(series, image)] - asked.center_lps_mm[2]) <= 1.25 + 1e-6
    # the largest nodule (22 mm, left lower) is not what was asked: it comes after the answers
    largest = _lesion_at(inputs, max(truth.nodules, key=lambda n: n.diameter_mm))
    assert f"nodule {largest.number} " not in first


def test_demo_impression_answers_emphysema_second(demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    _, truth, inputs = demo
    second = TemplateDrafter().draft(inputs)["Impression"][1]
    right = next(m for m in inputs.findings.measurements if m.name == "%LAA-950" and m.side == "right")
    assert second.startswith('Request "evaluate emphysema"') and "%LAA-950" in second
    assert f"right lung {format_value(right.value, 1)}%" in second
    assert right.value == pytest.approx(truth.lung("right").laa950_percent, abs=1.0)


def test_demo_lesions_are_named_by_zone_and_image_never_by_grid_index(
        demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    _, truth, inputs = demo
    draft = TemplateDrafter().draft(inputs)
    lines = [s for s in draft["Findings"] if s.startswith("Nodule ")]
    assert len(lines) == len(truth.nodules)
    for nodule in truth.nodules:
        les = _lesion_at(inputs, nodule)
        assert les.zone.startswith(f"{nodule.side} {nodule.lobe} zone"), (nodule, les.zone)
        line = next(s for s in lines if s.startswith(f"Nodule {les.number} "))
        assert f"({les.zone})" in line and f"series {les.series_number}, image {les.instance_number}" in line
    assert re.search(r"slice \d", draft.text()) is None  # no zero-based grid index
    others = draft["Impression"][2]
    assert others.startswith("Other lung nodule candidates:") and " in the left lower zone" in others


def test_demo_draft_passes_its_grounding_check(demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    _, _, inputs = demo
    report = check_draft(TemplateDrafter().draft(inputs), inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]
    first = next(s for s in report.sentences if s.section == IMPRESSION)
    assert {ln.kind for ln in first.links} >= {"lesion", "notes"}  # the nodule, and the request it answers


def test_wrong_zones_and_images_are_flagged(demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    _, truth, inputs = demo
    facts = collect_facts(inputs)
    les = _lesion_at(inputs, next(n for n in truth.nodules if (n.side, n.lobe) == ("right", "upper")))
    n, series, image = les.number, les.series_number, les.instance_number
    assert image is not None

    def check(text: str) -> list[str]:
        return check_sentence(text, FINDINGS, facts).reasons

    assert check(f"Nodule {n} (right upper zone, peripheral): {_dims(les)}; series {series}, image {image}.") == []
    assert any(f"places nodule {n} in the left lower zone" in r for r in check(f"Nodule {n} (left lower zone)."))
    assert any("it is in the right upper zone" in r for r in check(f"Nodule {n} in the right lower zone."))
    assert any(f"which is on series {series}, image {image}" in r
               for r in check(f"Nodule {n} is on series {series}, image {image + 3}."))
    assert any("says no lesion in the right upper zone" in r
               for r in check("No nodule candidate was found in the right upper zone."))
    assert check("No nodule candidate was found in the right middle zone.") == []
    assert any("none was found there" in r for r in check("A nodule in the left middle zone."))
    assert check("A nodule in the left lower zone.") == []


def test_demo_prompt_asks_the_request_first_with_images(demo: tuple[Path, DemoTruth, ReportInputs]) -> None:
    _, _, inputs = demo
    prompt = user_prompt(inputs)
    request = prompt.split("\n\n")[0]
    assert request.startswith("REQUEST")
    assert request.index("Follow-up right upper lobe nodule") < request.index("evaluate emphysema")
    assert "right upper zone" in request and "series 2, image" in request
    assert re.search(r"slice \d", prompt) is None


# ----------------------------------------------------------------------------- a real abdomen CT, no lungs


@pytest.fixture(scope="module")
def abdomen(shared_data: Path) -> ReportInputs:
    return _analyse(sorted((shared_data / CT_ABDOMEN).iterdir()), [])


def test_abdomen_draft_leads_with_the_anatomy_analysed_not_the_lungs(abdomen: ReportInputs) -> None:
    draft = TemplateDrafter().draft(abdomen)
    lead = draft["Impression"][0]
    assert lead.startswith("Analysed anatomy (partial body):")
    assert "skeletal muscle" in lead and "bone" in lead
    assert "lung" not in lead.lower() and "nodule" not in lead.lower()
    assert "No nodule candidates were detected." not in draft.text()
    assert any("no lung is in the scan range" in s.lower() for s in draft["Impression"][1:])
    assert check_draft(draft, abdomen).ok


def test_abdomen_technique_writes_header_codes_as_words(abdomen: ReportInputs) -> None:
    technique = TemplateDrafter().draft(abdomen)["Technique"]
    assert technique[0] == "CT of the partial body with intravenous contrast."
    text = " ".join(technique)
    assert "the Br38f kernel" in text
    assert "partialbody" not in text.lower() and "\\" not in text


def test_abdomen_request_about_the_lungs_is_not_assessable(abdomen: ReportInputs) -> None:
    inputs = dataclasses.replace(abdomen, notes=(
        ClinicalNote("DICOM ReasonForTheRequestedProcedure", "Follow-up right upper lobe nodule; ?PE"),))
    draft = TemplateDrafter().draft(inputs)
    lead, nodule, pe = draft["Impression"][:3]
    assert lead.startswith("Analysed anatomy")
    assert nodule == 'Request "Follow-up right upper lobe nodule": not assessable, since no lung is in the scan range.'
    assert pe == 'Request "?PE": not assessed by the automated analysis.'
    assert check_draft(draft, inputs).ok


# ----------------------------------------------------------------------------- lobes and cut lungs, by hand


def _structure(label: int, name: str, x: float) -> StructureFinding:
    return StructureFinding(label, name, 1000, 500.0, -850.0, 30.0, "HU", (0, 0, 0), (9, 9, 9), (5.0, 5.0, 5.0),
                            (x, 0.0, 0.0), "right" if x < 0 else "left")


def _lesion(number: int, zone: str, x: float, image: int, long_mm: float = 12.0) -> Lesion:
    return Lesion(1, "lung_nodule", number, 20, 0.5, 30.0, "HU", (5.0, 5.0, 5.0), (x, 0.0, 10.0), long_mm, 9.0,
                  long_mm, 8.0, 5, "right" if x < 0 else "left", "", 3, image, zone)


def _inputs(structures: list[StructureFinding], lesions: list[Lesion], table: LabelTable, request: str,
            cautions: list[str] | None = None) -> ReportInputs:
    findings = Findings(structures=structures, lesions=lesions, cautions=cautions or [],
                        measurements=[Measurement("%LAA-950", 4.0, "%", "lung_right", "right")])
    return ReportInputs(findings, TechniqueFacts(modality="CT", body_part="CHEST"),
                        (ClinicalNote("DICOM ReasonForTheRequestedProcedure", request),), label_table=table)


LOBES = [(2, "lung_upper_lobe_right", -60.0), (3, "lung_middle_lobe_right", -60.0),
         (4, "lung_lower_lobe_right", -60.0), (5, "lung_upper_lobe_left", 60.0), (6, "lung_lower_lobe_left", 60.0)]
LOBE_TABLE = LabelTable((Label(1, "lung_nodule", (1, 1, 1), lesion=True),
                         *(Label(v, n, (1, 1, 1)) for v, n, _ in LOBES)))


def test_with_a_lobe_model_the_lobe_asked_about_is_answered_by_lobe() -> None:
    inputs = _inputs([_structure(v, n, x) for v, n, x in LOBES],
                     [_lesion(1, "right lower lobe, peripheral", -70.0, 40), _lesion(2, "left upper lobe, central",
                                                                                     40.0, 20, 7.0)],
                     LOBE_TABLE, "Follow-up right upper lobe nodule")
    draft = TemplateDrafter().draft(inputs)
    first = draft["Impression"][0]
    assert first.startswith('Request "Follow-up right upper lobe nodule": no nodule candidate was found in the '
                            "right upper lobe")
    assert "nodule 1 in the right lower lobe, peripheral, measures 12 x 9 mm (series 3, image 40)" in \
        draft["Impression"][1]
    assert check_draft(draft, inputs).ok
    facts = collect_facts(inputs)
    assert not check_sentence("Nodule 1 lies in the right upper lobe.", FINDINGS, facts).ok
    assert check_sentence("Nodule 1 lies in the right lower lobe.", FINDINGS, facts).ok
    without_upper = _inputs([_structure(v, n, x) for v, n, x in LOBES if v != 2], inputs.findings.lesions,
                            LOBE_TABLE, "Follow-up right upper lobe nodule")
    assert "the right upper lobe is not in the scan range" in TemplateDrafter().draft(without_upper)["Impression"][0]


def test_a_zone_cut_off_by_the_scan_range_is_said_so() -> None:
    table = LabelTable((Label(1, "lung_nodule", (1, 1, 1), lesion=True), Label(2, "lung_right", (1, 1, 1)),
                        Label(3, "lung_left", (1, 1, 1))))
    inputs = _inputs([_structure(2, "lung_right", -60.0), _structure(3, "lung_left", 60.0)],
                     [_lesion(1, "right lung, peripheral", -70.0, 12)], table, "Follow-up right upper lobe nodule",
                     [coverage_caution("right", ("top",))])
    draft = TemplateDrafter().draft(inputs)
    first = draft["Impression"][0]
    assert "nodule 1 in the right lung, peripheral, measures 12 x 9 mm (series 3, image 12)" in first
    assert "the right lung extends beyond the top of the scan range, so its upper zone is not wholly imaged" in first
    assert check_draft(draft, inputs).ok


def test_a_quotation_not_in_the_notes_is_judged_as_a_claim() -> None:
    inputs = _inputs([_structure(v, n, x) for v, n, x in LOBES], [_lesion(1, "right lower lobe", -70.0, 40)],
                     LOBE_TABLE, "Follow-up right upper lobe nodule")
    facts = collect_facts(inputs)
    quoted = check_sentence('Request "Follow-up right upper lobe nodule": see below.', IMPRESSION, facts)
    assert quoted.ok and any(ln.kind == "notes" for ln in quoted.links)
    invented = check_sentence('Request "follow-up of the right upper lobe nodule": see below.', IMPRESSION, facts)
    assert any("right upper lobe" in r for r in invented.reasons)
