"""Crash recovery with a real killed process: a report panel edits, autosaves, is killed with SIGKILL;
the next start offers the draft back with the edit.

The child process is the real panel (offscreen Qt) with the real debounced
autosave; nothing in it knows it is about to be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from inference.drafting import SECTIONS, TemplateDrafter
from tests.llm_factory import sample_inputs
from workstation.document import AutosaveStore, DraftSource, ReportDocument, SentenceOrigin
from workstation.qt.report_panel import RecoveryDialog, ReportPanel, offer_recovery

REPO = Path(__file__).resolve().parents[1]
KEY = "1.2.826.0.1.3680043.10.99.1"
EDIT = "Edited before the crash: lung volumes as measured, no effusion."

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from inference.drafting import SECTIONS, TemplateDrafter
    from tests.llm_factory import sample_inputs
    from workstation.qt.report_panel import ReportPanel
    from workstation.document import AutosaveStore, DraftSource, ReportDocument

    store = AutosaveStore(Path(sys.argv[1]))
    draft = TemplateDrafter().draft(sample_inputs())
    doc = ReportDocument.from_draft(sys.argv[2], [(s, draft[s]) for s in SECTIONS],
                                    DraftSource("template", "1", "builtin.ct", "1"), study_description="CT CHEST")
    panel = ReportPanel(store, autosave_ms=1000)
    panel.resize(500, 800)
    panel.show()
    panel.show_document(doc)
    sid = doc.sentence_at("Findings", 0).id
    panel.saved.connect(lambda path: print("SAVED", path, flush=True))
    heavy = [m for m in ("torch", "transformers") if m in sys.modules]
    print("HEAVY", ",".join(heavy) or "-", flush=True)
    print("EXISTS", store.path_for(doc.study_key).exists(), flush=True)
    panel.edit_sentence(sid, sys.argv[3])
    print("EDITED", sid, flush=True)
    app.exec()
""")


def _read_until(proc: subprocess.Popen[str], prefix: str, timeout: float) -> list[str]:
    """Lines of the child's output up to and including the first starting with ``prefix``."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"child never printed {prefix!r}; output: {lines}")


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[AutosaveStore, str]:
    """A child process that edited a report and autosaved it, killed with SIGKILL; its store and the edited id."""
    folder = tmp_path / "drafts"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), KEY, EDIT], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = _read_until(proc, "SAVED", 60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert "HEAVY -" in lines, f"the report panel imported torch/transformers on the GUI thread: {lines}"
    assert "EXISTS False" in lines  # the file on disk is what the debounced autosave wrote
    edited = next(line.split()[1] for line in lines if line.startswith("EDITED"))
    return AutosaveStore(folder), edited


def test_a_killed_session_offers_its_draft_back_with_the_edit(qtbot: QtBot, crashed: tuple[AutosaveStore, str]
                                                               ) -> None:
    store, sid = crashed
    (info,) = store.drafts()
    assert info.study_key == KEY and not info.signed
    dialog = RecoveryDialog(store)
    qtbot.addWidget(dialog)
    dialog.open()
    assert dialog.list.count() == 1 and "CT CHEST" in dialog.list.item(0).text()
    assert "unsigned draft" in dialog.list.item(0).text()
    dialog.restore_button.click()
    (doc,) = dialog.documents()
    assert doc.sentence(sid).text == EDIT
    assert doc.sentence(sid).provenance is SentenceOrigin.EDITED
    assert store.drafts(), "restoring keeps the crash copy until the report is exported"
    # and the restored draft carries on in a panel
    panel = ReportPanel(store)
    qtbot.addWidget(panel)
    panel.show_document(doc)
    assert panel.state == "editing" and panel.editor.rows[sid].text.text() == EDIT
    panel.shutdown()
    assert not panel.worker.is_running()


def test_offer_recovery_does_not_block_and_hands_back_the_restored_documents(
        qtbot: QtBot, crashed: tuple[AutosaveStore, str]) -> None:
    store, sid = crashed
    got: list[list[ReportDocument]] = []
    dialog = offer_recovery(None, store, got.append, lambda key: "DOE, Jane – CT CHEST – 2024-03-01")
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()  # the viewer stays usable
    assert "DOE, Jane – CT CHEST" in dialog.list.item(0).text()
    dialog.later_button.click()
    assert not got and store.drafts(), "'Keep for later' keeps the draft"
    dialog = offer_recovery(None, store, got.append)
    assert dialog is not None
    dialog.restore_button.click()
    assert [[d.sentence(sid).text for d in docs] for docs in got] == [[EDIT]]


def test_drafts_nobody_worked_on_are_not_offered(qtbot: QtBot, tmp_path: Path) -> None:
    """A headless ``workstation report`` run leaves an AI-only draft: it is reopened with its study, not
    offered as unfinished work; accepting, editing or typing one sentence makes it unfinished work."""
    store = AutosaveStore(tmp_path / "drafts")
    draft = TemplateDrafter().draft(sample_inputs())
    doc = ReportDocument.from_draft("1.2.3", [(s, draft[s]) for s in SECTIONS], DraftSource("template"))
    store.save(doc)
    assert offer_recovery(None, store, lambda _docs: None) is None
    doc.accept(doc.sentence_at("Findings", 0).id)
    store.save(doc)
    dialog = offer_recovery(None, store, lambda _docs: None)
    assert dialog is not None and dialog.list.count() == 1
    dialog.close()


def test_no_drafts_no_dialog_and_discard_removes_them(qtbot: QtBot, tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path / "drafts")
    assert offer_recovery(None, store, lambda _docs: None) is None  # returns at once: nothing to offer
    draft = TemplateDrafter().draft(sample_inputs())
    for key in ("1.2.3", "1.2.4"):
        edited = ReportDocument.from_draft(key, [(s, draft[s]) for s in SECTIONS], DraftSource("template"))
        edited.edit(edited.sentence_at("Findings", 0).id, "Typed by the reader.")
        store.save(edited)
    signed = ReportDocument.from_draft("1.2.5", {"Findings": ["No nodule."]}, DraftSource("template"))
    signed.sign("Dr. Ada Reader")
    store.save(signed)
    dialog = RecoveryDialog(store)
    qtbot.addWidget(dialog)
    dialog.open()
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert sum("signed, not yet exported" in t for t in texts) == 1
    from PySide6.QtCore import Qt

    from workstation.qt.report_panel.recovery import KEY_ROLE

    for i in range(dialog.list.count()):
        if dialog.list.item(i).data(KEY_ROLE) == "1.2.5":
            dialog.list.item(i).setCheckState(Qt.CheckState.Unchecked)
    assert dialog.discard_selected(confirm=False) == 2
    assert [d.study_key for d in store.drafts()] == ["1.2.5"]
    # a restored signed report is read-only in the panel
    doc = store.load("1.2.5")
    assert doc is not None
    panel = ReportPanel(store)
    qtbot.addWidget(panel)
    panel.show_document(doc)
    assert panel.state == "signed" and panel.editor.rows[doc.sentence_at("Findings", 0).id].edit_button.isHidden()
    panel.shutdown()
