"""The report document: provenance, grounding flags, sign-off and lock, addenda, JSON, autosave and recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from workstation.document import (
    AutosaveStore,
    DraftSource,
    ReportDocument,
    ReportError,
    ReportLockedError,
    SentenceOrigin,
    SignOffError,
    split_sentences,
)
from workstation.settings import get_settings

SOURCE = DraftSource("template", "1", "builtin.ct", "1.0.0")
DRAFT = {
    "Clinical information": "Former smoker. Follow-up of a right upper lobe nodule.",
    "Findings": "A 12 mm nodule in the left upper lobe. No pleural effusion.",
    "Impression": ["1. Left upper lobe nodule, 12 mm.", "2. No effusion."],
}
SIGNED_AT = datetime(2024, 3, 15, 11, 30, tzinfo=timezone(timedelta(hours=1)))


def make_doc(key: str = "1.2.3.4") -> ReportDocument:
    return ReportDocument.from_draft(key, DRAFT, SOURCE, study_description="CT CHEST")


def ids(doc: ReportDocument) -> list[str]:
    return [s.id for _, s in doc.sentences()]


def test_split_sentences_keeps_decimals_abbreviations_and_list_items() -> None:
    text = "Nodule of 3.5 mm, e.g. stable. Dr. Smith was told! 1. Nodule. 2. Emphysema.\nNo effusion."
    assert split_sentences(text) == ["Nodule of 3.5 mm, e.g. stable.", "Dr. Smith was told!", "1. Nodule.",
                                     "2. Emphysema.", "No effusion."]


@pytest.mark.parametrize(("text", "expected"), [
    ("Seen by J. Smith. Next.", ["Seen by J. Smith.", "Next."]),
    ('He said "Stable." Next one.', ['He said "Stable."', "Next one."]),
    ("Mr. Jones. St. Mary's clinic. Stable.", ["Mr. Jones.", "St. Mary's clinic.", "Stable."]),
    ("No. 3 lesion, approx. 2.5 mm. Next.", ["No. 3 lesion, approx. 2.5 mm.", "Next."]),
    ("Cough. 2. Fever.", ["Cough.", "2. Fever."]),
])
def test_editor_and_grounding_split_sentences_alike(text: str, expected: list[str]) -> None:
    """The editor once had its own splitter; these are the cases where it and the engine's disagreed."""
    from inference.drafting.sentences import split_sentences as engine_split

    assert split_sentences(text) == expected
    assert engine_split(text) == expected


def test_editor_split_ends_sentences_at_line_breaks() -> None:
    assert split_sentences("Findings\nNo effusion\n\n- Nodule.") == ["Findings", "No effusion", "- Nodule."]


def test_draft_sentences_start_as_unreviewed_ai() -> None:
    doc = make_doc()
    assert [sec.title for sec in doc.sections] == list(DRAFT)
    assert len(ids(doc)) == 6
    assert {s.provenance for _, s in doc.sentences()} == {SentenceOrigin.AI}
    assert doc.section("impression").text() == "1. Left upper lobe nodule, 12 mm.\n2. No effusion."
    assert "FINDINGS:\nA 12 mm nodule in the left upper lobe.\nNo pleural effusion." in doc.text()
    assert "CLINICAL INFORMATION:\nFormer smoker. Follow-up of a right upper lobe nodule." in doc.text()
    assert doc.sentence_at("Findings", 1).text == "No pleural effusion."


def test_drafter_output_and_its_metadata_fit() -> None:
    """The drafter gives sections of sentences (Impression items unnumbered) and metadata."""
    sections = {"Findings": ["A nodule.", "No effusion."], "Impression": ["Left lung nodule.", "No effusion."]}
    source = DraftSource.from_metadata({"drafter": "transformers", "model": "tiny-lm", "model_version": "abc"},
                                       "builtin.ct", "1.0.0")
    doc = ReportDocument.from_draft("k", sections, source)
    assert source.describe() == "analysis builtin.ct 1.0.0; text drafted by transformers tiny-lm abc"
    assert doc.section("Impression").text() == "1. Left lung nodule.\n2. No effusion."
    assert DraftSource.from_metadata({"drafter": "template", "template_version": "2"}).drafter_version == "2"


def test_provenance_follows_accept_edit_type_and_delete() -> None:
    doc = make_doc()
    first, second, third = ids(doc)[:3]
    assert doc.accept(first).provenance is SentenceOrigin.AI_ACCEPTED
    edited = doc.edit(second, "Follow-up of a left upper lobe nodule.")
    assert edited is not None and edited.provenance is SentenceOrigin.EDITED
    assert edited.ai_text == "Follow-up of a right upper lobe nodule."
    restored = doc.edit(second, "Follow-up of a right upper lobe nodule.")
    assert restored is not None and restored.provenance is SentenceOrigin.AI_ACCEPTED
    typed = doc.add("Findings", "Mild centrilobular emphysema.", after=third)
    assert typed.provenance is SentenceOrigin.TYPED
    assert [s.id for s in doc.section("Findings").sentences][1] == typed.id
    assert doc.edit(typed.id, "Moderate emphysema.").provenance is SentenceOrigin.TYPED  # type: ignore[union-attr]
    assert doc.edit(third, "  ") is None
    assert third not in ids(doc)
    with pytest.raises(ReportError):
        doc.sentence(third)
    assert doc.revision >= 6


def test_sign_off_needs_a_name() -> None:
    doc = make_doc()
    for name in ("", "   "):
        with pytest.raises(SignOffError, match="name"):
            doc.sign(name)
    assert not doc.signed


def test_sign_off_refuses_unresolved_flags_until_rechecked_or_acknowledged() -> None:
    doc = make_doc()
    findings = doc.section("Findings").sentences[0]
    impression = doc.section("Impression").sentences[0]
    doc.apply_grounding(findings.id, ["12 mm: no finding measures 12 mm (nodule 1: 20.6 mm)"])
    doc.apply_grounding(impression.id, ["12 mm: no finding measures 12 mm"], links=["lesion:1"])
    with pytest.raises(SignOffError, match="2 flagged"):
        doc.sign("Jane Smith")
    doc.edit(findings.id, "A 21 mm nodule in the left upper lobe.")
    assert findings.unresolved  # flags stay until the caller re-checks the new text
    doc.apply_grounding(findings.id, [], links=["lesion:1"])
    assert doc.unresolved() == [impression] and findings.links == ["lesion:1"]
    with pytest.raises(ReportError, match="why"):
        doc.acknowledge(impression.id, " ")
    doc.acknowledge(impression.id, "size checked on the images")
    assert doc.unresolved() == []
    sign = doc.sign("Jane Smith", now=SIGNED_AT)
    assert sign.acknowledged_flags[0].note == "size checked on the images"
    assert sign.acknowledged_flags[0].reasons == ("12 mm: no finding measures 12 mm",)


def test_sign_off_records_who_when_models_and_diff_then_locks() -> None:
    doc = make_doc()
    first = ids(doc)[0]
    doc.accept(first)
    findings = doc.section("Findings").sentences[0]
    doc.edit(findings.id, "A 21 mm nodule in the left upper lobe.")
    doc.add("Impression", "3. Mild emphysema.")
    sign = doc.sign("  Jane   Smith ", now=SIGNED_AT)
    assert sign.radiologist == "Jane Smith"
    assert sign.signed_at == "2024-03-15T10:30:00+00:00"
    assert datetime.fromisoformat(sign.signed_at).tzinfo == UTC
    assert sign.source == SOURCE
    assert sign.accepted_at_signing == 4  # the unreviewed AI sentences, accepted by signing
    assert {s.provenance for _, s in doc.sentences()} == {SentenceOrigin.AI_ACCEPTED, SentenceOrigin.EDITED,
                                                          SentenceOrigin.TYPED}
    assert "-A 12 mm nodule in the left upper lobe.\n" in sign.diff
    assert "+A 21 mm nodule in the left upper lobe.\n" in sign.diff
    assert "+3. Mild emphysema.\n" in sign.diff
    assert sign.diff.startswith("--- AI draft\n+++ signed by Jane Smith\n")
    sid = ids(doc)[0]
    for action in (lambda: doc.accept(sid), lambda: doc.edit(sid, "x"), lambda: doc.add("Findings", "x"),
                   lambda: doc.delete(sid), lambda: doc.apply_grounding(sid, ["r"]), lambda: doc.accept_all(),
                   lambda: doc.sign("Someone Else")):
        with pytest.raises(ReportLockedError):
            action()


def test_empty_report_cannot_be_signed() -> None:
    doc = ReportDocument.blank("k", ["Findings", "Impression"])
    with pytest.raises(SignOffError, match="empty"):
        doc.sign("Jane Smith")


def test_addendum_only_after_sign_off() -> None:
    doc = make_doc()
    with pytest.raises(ReportError, match="after sign-off"):
        doc.add_addendum("Late note.", "Jane Smith")
    doc.sign("Jane Smith", now=SIGNED_AT)
    with pytest.raises(ReportError, match="author"):
        doc.add_addendum("Late note.", " ")
    add = doc.add_addendum("Comparison with the 2022 CT: the nodule is new.", "John Roe",
                           now=SIGNED_AT + timedelta(days=1))
    assert add.added_at == "2024-03-16T10:30:00+00:00"
    assert doc.text().endswith("ADDENDUM (2024-03-16T10:30:00+00:00, John Roe):\n"
                               "Comparison with the 2022 CT: the nodule is new.\n")
    with pytest.raises(ReportLockedError):
        doc.edit(ids(doc)[0], "changed")


def test_json_round_trip_keeps_everything_and_the_lock() -> None:
    doc = make_doc()
    doc.apply_grounding(ids(doc)[2], ["laterality: nodule is on the right"], links=["lesion:2"])
    doc.acknowledge(ids(doc)[2], "checked")
    doc.edit(ids(doc)[3], "No effusion.")
    again = ReportDocument.from_json(doc.to_json())
    assert again.to_dict() == doc.to_dict()
    doc.sign("Jane Smith", now=SIGNED_AT)
    doc.add_addendum("Added later.", "Jane Smith", now=SIGNED_AT)
    signed = ReportDocument.from_json(doc.to_json())
    assert signed.to_dict() == doc.to_dict()
    assert signed.signed and signed.sign_off == doc.sign_off
    with pytest.raises(ReportLockedError):
        signed.edit(ids(signed)[0], "tampered")


def test_a_signed_report_altered_on_disk_is_refused() -> None:
    doc = make_doc()
    doc.sign("Jane Smith", now=SIGNED_AT)
    data = doc.to_dict()
    data["sections"][1]["sentences"][0]["text"] = "A 2 mm nodule."
    with pytest.raises(ReportError, match="altered"):
        ReportDocument.from_dict(data)
    data = doc.to_dict()
    data["schema"] = 99
    with pytest.raises(ReportError, match="newer"):
        ReportDocument.from_dict(data)


def test_autosave_writes_atomically_and_lists_drafts(tmp_path: Path) -> None:
    store = AutosaveStore()
    assert store.folder == get_settings().data_dir / "report_drafts"
    doc = make_doc("1.2.840.99.1")
    path = store.save(doc)
    assert path.parent == store.folder and path.suffix == ".json"
    assert json.loads(path.read_text(encoding="utf-8"))["study_key"] == "1.2.840.99.1"
    doc.accept(ids(doc)[0])
    store.save(doc)
    assert [p.name for p in store.folder.iterdir()] == [path.name]  # no temp files left
    loaded = store.load("1.2.840.99.1")
    assert loaded is not None and loaded.to_dict() == doc.to_dict()
    other = make_doc("nouid-abc")
    store.save(other)
    (store.folder / "garbage.json").write_text("{not json", encoding="utf-8")
    (store.folder / ".tmp-crashed.json").write_text("{half", encoding="utf-8")
    drafts = store.drafts()
    assert {d.study_key for d in drafts} == {"1.2.840.99.1", "nouid-abc"}
    assert not (store.folder / ".tmp-crashed.json").exists()
    info = next(d for d in drafts if d.study_key == "1.2.840.99.1")
    assert info.revision == doc.revision and not info.signed and info.sentences == 6
    assert not store.finished(doc)  # an unsigned draft is never deleted as "finished"
    doc.sign("Jane Smith")
    store.save(doc)
    assert store.finished(doc) and not store.discard("1.2.840.99.1")
    assert store.load("1.2.840.99.1") is None


def test_a_failed_save_keeps_the_previous_file(monkeypatch: pytest.MonkeyPatch) -> None:
    store = AutosaveStore()
    doc = make_doc()
    path = store.save(doc)
    before = path.read_bytes()
    doc.accept(ids(doc)[0])

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(doc)
    assert path.read_bytes() == before
    assert [p.name for p in store.folder.iterdir()] == [path.name]


CHILD = textwrap.dedent("""
    import sys
    from workstation.document import AutosaveStore, DraftSource, ReportDocument
    doc = ReportDocument.from_draft("1.2.840.77.1", {"Findings": "A nodule. No effusion. " * 200},
                                    DraftSource("template", "1"))
    store = AutosaveStore()
    n = 0
    while True:
        sid = list(doc.sentences())[n % 400][1].id
        doc.edit(sid, f"Edited sentence number {n}.")
        store.save(doc)
        n += 1
        if n == 1:
            print("saved", flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_draft_survives_kill_9_and_is_offered_on_next_start() -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saved"
        store = AutosaveStore()
        target = store.path_for("1.2.840.77.1")
        first = target.stat().st_mtime_ns
        for _ in range(200):  # let it save a few more times, then kill it in the middle of its loop
            if target.stat().st_mtime_ns != first:
                break
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    drafts = AutosaveStore().drafts()  # the "next start"
    assert [d.study_key for d in drafts] == ["1.2.840.77.1"]
    doc = AutosaveStore().load("1.2.840.77.1")
    assert doc is not None and doc.revision >= 1 and not doc.signed
    assert any(s.provenance is SentenceOrigin.EDITED for _, s in doc.sentences())
