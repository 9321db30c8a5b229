"""The request parser: what the notes ask the report to answer, in order, with side and lobe or zone."""

from __future__ import annotations

import pytest

from inference.drafting.indication import Target, parse_indication, targets_of
from inference.drafting.inputs import ClinicalNote

T = Target


def _short(targets: list[Target]) -> list[tuple[str, str, str, str, str]]:
    return [(t.kind, t.action, t.side, t.part, t.region) for t in targets]


@pytest.mark.parametrize(("text", "expected"), [
    ("Follow-up right upper lobe nodule; evaluate emphysema",
     [("nodule", "follow-up", "right", "upper", "lobe"), ("emphysema", "evaluate", "", "", "")]),
    ("f/u LLL nodule", [("nodule", "follow-up", "left", "lower", "lobe")]),
    ("Nodule in the right middle lobe, follow-up requested.", [("nodule", "follow-up", "right", "middle", "lobe")]),
    ("nodule, left upper lobe, please reassess", [("nodule", "follow-up", "left", "upper", "lobe")]),
    ("?PE", [("pulmonary embolism", "rule out", "", "", "")]),
    ("Rule out pulmonary embolism.", [("pulmonary embolism", "rule out", "", "", "")]),
    ("Lung cancer screening.", [("nodule", "screening", "", "", "")]),
    ("Evaluate emphysema and right basal nodule",
     [("emphysema", "evaluate", "", "", ""), ("nodule", "evaluate", "right", "lower", "zone")]),
    ("Follow-up of nodule in the left lower lobe and RUL mass",
     [("nodule", "follow-up", "left", "lower", "lobe"), ("mass", "follow-up", "right", "upper", "lobe")]),
    ("Query metastases; bilateral nodules on the prior scan", [("metastases", "evaluate", "", "", "")]),
    ("Evaluate bilateral nodules", [("nodule", "evaluate", "both", "", "")]),
    ("Indication: lingular nodule", [("nodule", "evaluate", "left", "lingula", "lobe")]),
])
def test_requests_become_targets_in_order(text: str, expected: list[tuple[str, ...]]) -> None:
    assert _short(parse_indication(text)) == expected


@pytest.mark.parametrize("text", [
    "No nodule. No history of pulmonary embolism.",
    "Progressive dyspnoea on exertion; no haemoptysis, no weight loss.",
    "Prior CT: right upper lobe nodule of 16 mm.",  # history, not a request
    "Negative for PE on the previous study.",
    "68-year-old former smoker, 40 pack-years, stopped 2015.",
    "query pe",  # "pe" in lower case is not the abbreviation
])
def test_history_and_negations_ask_nothing(text: str) -> None:
    assert parse_indication(text) == []


def test_negation_after_the_cue_drops_only_its_own_term() -> None:
    assert _short(parse_indication("Evaluate emphysema, no nodule follow-up needed")) == [
        ("emphysema", "evaluate", "", "", "")]
    assert _short(parse_indication("No known malignancy; rule out metastases")) == [
        ("metastases", "rule out", "", "", "")]


def test_a_request_field_asks_without_a_cue() -> None:
    assert _short(parse_indication("Right upper lobe nodule", is_request=True)) == [
        ("nodule", "evaluate", "right", "upper", "lobe")]
    assert parse_indication("Right upper lobe nodule") == []


def test_the_text_is_the_request_as_written() -> None:
    first, second = parse_indication("Follow-up right upper lobe nodule; evaluate emphysema")
    assert (first.text, second.text) == ("Follow-up right upper lobe nodule", "evaluate emphysema")
    assert first.where == "right upper lobe" and second.where == ""
    assert first.is_lesion and not second.is_lesion


def test_notes_merge_repeats_and_keep_the_request_field_first() -> None:
    """The demo study's notes: the reason field, the history and the notes file ask the same two things."""
    notes = [
        ClinicalNote("note 1", "Prior chest CT reported a right upper lobe nodule; follow-up CT requested to assess "
                               "interval change in nodule size.\n\nRequest: CT chest without contrast. Follow-up "
                               "of right upper lobe nodule.\nEvaluate for emphysema (extent and distribution)."),
        ClinicalNote("DICOM AdditionalPatientHistory", "Right upper lobe nodule on prior chest CT, follow-up "
                                                       "requested."),
        ClinicalNote("DICOM ReasonForTheRequestedProcedure", "Follow-up right upper lobe nodule; evaluate emphysema"),
    ]
    targets = targets_of(notes)
    assert _short(targets) == [("nodule", "follow-up", "right", "upper", "lobe"),
                               ("emphysema", "evaluate", "", "", "")]
    assert targets[0].text == "Follow-up right upper lobe nodule"


def test_a_vaguer_request_is_replaced_by_a_precise_one_in_its_place() -> None:
    notes = [ClinicalNote("note 1", "Follow-up nodule. Evaluate emphysema. Follow-up of the left lower lobe nodule.")]
    assert _short(targets_of(notes)) == [("nodule", "follow-up", "left", "lower", "lobe"),
                                         ("emphysema", "evaluate", "", "", "")]
