"""The comparison with a prior study wherever a radiologist reads or signs it: draft, grounding, prompt.

The comparison records come from the follow-up engine's own matching and
guidelines (``tests.comparison_factory``) over the demo-shaped findings of
``tests.llm_factory.sample_inputs``; every expected number is read from the
record, never typed in. Tampered sentences take the template's own sentence
and change one number of it.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from inference.drafting import ReportInputs, TemplateDrafter, check_draft, check_sentence
from inference.drafting.comparison import NO_PRIOR, interval_text
from inference.drafting.draft import COMPARISON, IMPRESSION, ReportDraft
from inference.drafting.facts import collect_facts
from inference.drafting.prompt import SYSTEM_PROMPT, build_messages, user_prompt
from inference.drafting.quantities import format_value
from inference.findings import lesion_volume_text
from inference.followup.model import ChangeStatus, Comparison, LesionChange
from tests.comparison_factory import PRIOR_DATE, sample_comparison
from tests.llm_factory import sample_inputs


def _inputs(**kwargs: object) -> ReportInputs:
    base = sample_inputs()
    return dataclasses.replace(base, comparison=sample_comparison(base.findings.lesions, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return _inputs()


@pytest.fixture(scope="module")
def draft(inputs: ReportInputs) -> ReportDraft:
    return TemplateDrafter().draft(inputs)


def _record(inputs: ReportInputs) -> Comparison:
    assert inputs.comparison is not None
    return inputs.comparison


def _only(c: Comparison, status: ChangeStatus) -> LesionChange:
    (change,) = c.by_status(status)
    return change


def _line_of(draft: ReportDraft, head: str) -> str:
    return next(s for s in draft[COMPARISON] if s.startswith(head))


def test_the_record_has_every_kind_of_change(inputs: ReportInputs) -> None:
    statuses = {ch.status for ch in _record(inputs).changes}
    assert {ChangeStatus.GROWN, ChangeStatus.STABLE, ChangeStatus.NEW, ChangeStatus.RESOLVED} <= statuses


def test_comparison_section_names_the_prior_and_each_change(inputs: ReportInputs, draft: ReportDraft) -> None:
    c = _record(inputs)
    first = draft[COMPARISON][0]
    assert c.prior_study_date.isoformat() in first and f"series {c.prior_series_number}" in first
    assert c.prior_study_description in first and interval_text(c) in first
    grown = _only(c, ChangeStatus.GROWN)
    assert grown.current is not None and grown.prior is not None and grown.doubling_time_days is not None
    line = _line_of(draft, f"Nodule {grown.current.number} (prior nodule {grown.prior.number}")
    assert ": grown;" in line
    assert f"mean diameter prior {format_value(grown.prior.mean_diameter_mm, 1)} mm, now " \
           f"{format_value(grown.current.mean_diameter_mm, 1)} mm" in line
    assert f"volume prior {lesion_volume_text(grown.prior.volume_ml)}, now " \
           f"{lesion_volume_text(grown.current.volume_ml)}" in line
    assert f"volume doubling time {format_value(grown.doubling_time_days, 0)} days" in line
    assert f"prior series {grown.prior.series_number}, image {grown.prior.instance_number}" in line
    resolved = _only(c, ChangeStatus.RESOLVED)
    assert resolved.prior is not None
    line = _line_of(draft, f"Prior nodule {resolved.prior.number}")
    assert "resolved" in line and "now" not in line and "doubling" not in line
    for new in c.by_status(ChangeStatus.NEW):
        assert new.current is not None
        line = _line_of(draft, f"Nodule {new.current.number}:")
        assert ": new;" in line and "prior" not in line


def test_template_draft_with_a_comparison_passes_its_grounding(draft: ReportDraft, inputs: ReportInputs) -> None:
    report = check_draft(draft, inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]
    comparison_links = {ln.key for s in report.sentences if s.section == COMPARISON for ln in s.links}
    assert {f"comparison:lesion:{i}" for i in range(len(_record(inputs).changes))} <= comparison_links


@pytest.mark.parametrize("kwargs", [{"passed": False}, {"screening": True}])
def test_other_comparisons_pass_grounding_too(kwargs: dict[str, bool]) -> None:
    inputs = _inputs(**kwargs)
    report = check_draft(TemplateDrafter().draft(inputs), inputs)
    assert report.ok, [(s.text, s.reasons) for s in report.flagged]


def test_impression_answers_the_follow_up_first_with_the_change(inputs: ReportInputs, draft: ReportDraft) -> None:
    c = _record(inputs)
    first = draft[IMPRESSION][0]
    assert first.startswith('Request "Follow-up right upper lobe nodule"')
    since = f"since {PRIOR_DATE.isoformat()}"
    for ch in c.changes:  # the right lung's nodules (the ones asked about) each say how they changed
        if ch.current is not None and inputs.findings.lesions[ch.current.number - 1].side == "right":
            assert f"nodule {ch.current.number} in the right lung measures" in first
            assert f"{ch.status.value} {since}" in first[first.index(f"nodule {ch.current.number} "):]


def test_recommendation_is_the_records_with_its_rule(inputs: ReportInputs, draft: ReportDraft) -> None:
    rec = _record(inputs).recommendation
    assert rec is not None
    (item,) = [s for s in draft[IMPRESSION] if s.startswith("Follow-up recommendation")]
    assert f"({rec.rule})" in item and rec.text in item
    assert not any("Fleischner Society 2017 category" in s for s in draft[IMPRESSION])  # the record's, not generic


def test_no_recommendation_without_one_in_the_record(inputs: ReportInputs) -> None:
    why = "not every nodule is solid"
    bare = dataclasses.replace(inputs, comparison=dataclasses.replace(_record(inputs), recommendation=None,
                                                                      recommendation_reason=why))
    impression = TemplateDrafter().draft(bare)[IMPRESSION]
    assert not any("Follow-up recommendation" in s for s in impression)
    assert not any(re.search(r"\d+\s*(?:-\s*\d+\s*)?months", s) for s in impression)
    assert f"No guideline follow-up recommendation is given: {why}." in impression


def test_failed_registration_is_stated_and_no_change_numbers_are_written() -> None:
    inputs = _inputs(passed=False)
    reason = _record(inputs).registration.reason
    draft = TemplateDrafter().draft(inputs)
    text = draft.text()
    assert f"Comparison not made: registration failed: {reason}" in " ".join(draft[COMPARISON])
    for word in ("doubling", "mean diameter prior", "grown", "stable since", "new since", "resolved"):
        assert word not in text, word
    assert sum("registration failed" in s for s in draft[IMPRESSION]) == 1  # said once, in the answer


def test_without_a_prior_the_wording_stays() -> None:
    inputs = sample_inputs()
    draft = TemplateDrafter().draft(inputs)
    assert draft[COMPARISON] == [NO_PRIOR]
    assert "no prior images were available, so interval change was not assessed" in draft[IMPRESSION][0]
    assert "COMPARISON:\n- no prior imaging available" in user_prompt(inputs)


def _tamper(sentence: str, old: str, new: str) -> str:
    assert old in sentence, (old, sentence)
    return sentence.replace(old, new, 1)


def test_tampered_comparison_sentences_are_flagged(inputs: ReportInputs, draft: ReportDraft) -> None:
    c = _record(inputs)
    facts = collect_facts(inputs)
    grown = _only(c, ChangeStatus.GROWN)
    assert grown.current is not None and grown.prior is not None and grown.doubling_time_days is not None
    assert grown.prior.instance_number is not None
    line = _line_of(draft, f"Nodule {grown.current.number} (prior")
    vdt = format_value(grown.doubling_time_days, 0)
    prior_mean = format_value(grown.prior.mean_diameter_mm, 1)
    tampered = {
        "doubling time": _tamper(line, f"doubling time {vdt} days", f"doubling time {int(vdt) + 60} days"),
        "prior size": _tamper(line, f"prior {prior_mean} mm", f"prior {float(prior_mean) - 3:.1f} mm"),
        "prior volume": _tamper(line, f"prior {lesion_volume_text(grown.prior.volume_ml)}",
                                f"prior {lesion_volume_text(grown.prior.volume_ml * 0.5)}"),
        "volume change": re.sub(r"\(\+(\d+)%\)", lambda m: f"(+{int(m.group(1)) + 40}%)", line),
        "prior image": _tamper(line, f"prior series {grown.prior.series_number}, image {grown.prior.instance_number}",
                               f"prior series {grown.prior.series_number}, image {grown.prior.instance_number + 7}"),
    }
    assert check_sentence(line, COMPARISON, facts).ok
    for what, text in tampered.items():
        assert text != line, what
        verdict = check_sentence(text, COMPARISON, facts)
        assert not verdict.ok, what
    head = draft[COMPARISON][0]
    moved = _tamper(head, PRIOR_DATE.isoformat(), "2025-10-05")
    assert not check_sentence(moved, COMPARISON, facts).ok
    longer = _tamper(head, f"interval {c.interval_days} days", f"interval {c.interval_days + 30} days")
    assert not check_sentence(longer, COMPARISON, facts).ok


def test_tampered_impression_sentences_are_flagged(inputs: ReportInputs) -> None:
    c = _record(inputs)
    facts = collect_facts(inputs)
    grown = _only(c, ChangeStatus.GROWN)
    assert grown.current is not None and grown.prior is not None and grown.doubling_time_days is not None
    n, then, now = grown.current.number, grown.prior.mean_diameter_mm, grown.current.mean_diameter_mm
    vdt = grown.doubling_time_days
    good = f"Nodule {n} grew from {then:.0f} mm to {now:.0f} mm since the prior, volume doubling time {vdt:.0f} days."
    assert check_sentence(good, IMPRESSION, facts).ok
    for bad in (good.replace(f"from {then:.0f} mm", f"from {then - 4:.0f} mm"),
                good.replace(f"{vdt:.0f} days", f"{vdt / 2:.0f} days"),
                "Follow-up CT in 3 months is recommended.",
                f"{len(c.by_status(ChangeStatus.NEW)) + 1} new nodules since the prior.",
                "Prior nodule 9 has resolved.",
                "Lung-RADS category 4B."):
        assert not check_sentence(bad, IMPRESSION, facts).ok, bad
    assert check_sentence(f"{len(c.by_status(ChangeStatus.NEW))} new nodules since the prior.", IMPRESSION, facts).ok


def test_the_prompt_carries_the_comparison_facts(inputs: ReportInputs, draft: ReportDraft) -> None:
    prompt = user_prompt(inputs)
    rec = _record(inputs).recommendation
    assert rec is not None
    block = prompt.split("COMPARISON:\n", 1)[1].split("\n\n", 1)[0]
    for sentence in draft[COMPARISON]:
        assert f"- {sentence}" in block
    assert f"RECOMMENDATION:\n- Follow-up recommendation ({rec.rule})" in prompt
    system = build_messages(inputs)[0]["content"]
    assert system.startswith(SYSTEM_PROMPT) and "only as given under RECOMMENDATION" in system
    assert build_messages(sample_inputs())[0]["content"] == SYSTEM_PROMPT  # no prior: the prompt stays short


def test_a_comparison_read_back_from_findings_json_drafts_the_same(inputs: ReportInputs, draft: ReportDraft) -> None:
    again = dataclasses.replace(inputs, comparison=Comparison.from_dict(_record(inputs).to_dict()))
    assert TemplateDrafter().draft(again).text() == draft.text()
