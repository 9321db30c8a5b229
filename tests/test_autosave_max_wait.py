"""The report autosave has a maximum wait: continuous editing still saves at least every ``max_wait_s``.

Before, every change restarted the one-second debounce, so a radiologist typing
without a one-second pause was never saved (a crash lost everything typed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from workstation.document.autosave import AUTOSAVE_MAX_WAIT_S, AutosaveStore, SaveSchedule
from workstation.document.editing import ReportDocument


def test_schedule_debounces_but_never_waits_longer_than_the_maximum() -> None:
    schedule = SaveSchedule(debounce_s=1.0, max_wait_s=10.0)
    assert schedule.changed(100.0) == pytest.approx(1.0)  # first change: the debounce
    delays = [schedule.changed(100.0 + 0.5 * i) for i in range(1, 20)]  # a change every 0.5 s for 9.5 s
    assert delays[0] == pytest.approx(1.0)
    assert delays[-1] == pytest.approx(0.5)  # 100 + 9.5 + 0.5 = the 10 s deadline
    due = [100.0 + 0.5 * i + d for i, d in enumerate(delays, start=1)]
    assert max(due) <= 110.0 + 1e-9  # a save is due by the deadline, however the edits go on
    assert schedule.changed(111.0) == 0.0  # past the deadline: save now
    schedule.saved()
    assert schedule.changed(200.0) == pytest.approx(1.0)  # a new burst of edits starts a new window
    assert AUTOSAVE_MAX_WAIT_S == 10.0


def test_panel_saves_during_continuous_edits(qtbot: object, tmp_path: Path) -> None:
    from PySide6.QtCore import QCoreApplication

    from workstation.qt.report_panel.panel import ReportPanel

    store = AutosaveStore(tmp_path / "drafts")
    panel = ReportPanel(store, autosave_ms=300, autosave_max_wait_ms=800)
    qtbot.addWidget(panel)  # type: ignore[attr-defined]
    panel.show_document(ReportDocument.from_draft("1.2.3", {"Findings": "The lungs are clear."}))
    sentence = next(s for _sec, s in panel.document.sentences())  # type: ignore[union-attr]
    saved: list[float] = []
    panel.saved.connect(lambda _p: saved.append(time.monotonic()))
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.0:  # an edit every 100 ms: the 300 ms debounce never expires
        n += 1
        panel.edit_sentence(sentence.id, f"The lungs are clear, edit {n}.")
        sentence = next(s for _sec, s in panel.document.sentences())  # type: ignore[union-attr]
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.01)
    assert saved, "no autosave during 2 s of continuous editing"
    assert saved[0] - t0 < 1.2  # within the 800 ms maximum wait (plus event-loop slack)
    panel.shutdown()
