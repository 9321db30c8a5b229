"""The query/retrieve dialog against a real Orthanc: search, series, retrieve with progress, cancel, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.pacs_fixtures import PacsEnv, have_orthanc, orthanc_env
from tests.requirements import PACS_TOOLS_FIX, requires
from workstation.index import StudyIndex
from workstation.pacs.nodes import PacsConfig
from workstation.qt.pacs_dialog import PacsDialog

pytestmark = [
    pytest.mark.needs_tool,
    requires(have_orthanc(), "Orthanc + DICOMweb plugin not installed", PACS_TOOLS_FIX),
]


@pytest.fixture(scope="module")
def env(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsEnv]:
    with orthanc_env(shared_data, tmp_path_factory.mktemp("pacs")) as e:
        yield e


@pytest.fixture
def dialog(env: PacsEnv, qtbot: QtBot, tmp_path: Path) -> Iterator[PacsDialog]:
    wrong = env.node_with(name="wrong AE", ae_title="NOTORTHANC", dicomweb_url="")
    config = PacsConfig(nodes=[env.node, wrong], default_node=env.node.name, local=env.local)
    d = PacsDialog(config, tmp_path / "index.sqlite", tmp_path / "pacs")
    qtbot.addWidget(d)
    d.show()
    yield d
    d.shutdown()


def search(qtbot: QtBot, d: PacsDialog) -> None:
    d.patient_name.setText("pacs")
    d.modality.setCurrentText("CT")
    d.search_button.click()
    qtbot.waitUntil(lambda: d.search_button.isEnabled() and "found" in d.status.text(), timeout=20_000)


def test_search_select_and_retrieve(env: PacsEnv, dialog: PacsDialog, qtbot: QtBot) -> None:
    search(qtbot, dialog)
    assert dialog.study_table.rowCount() == 1
    row = [dialog.study_table.item(0, c).text() for c in range(dialog.study_table.columnCount())]
    assert row[:5] == ["2022-12-08", "Pacs, Test", "PACSTEST01", "ACC0001", "CT"] and row[-1] == "20"
    dialog.study_table.selectRow(0)
    qtbot.waitUntil(lambda: dialog.series_table.rowCount() == 1, timeout=20_000)
    assert dialog.series_table.item(0, 2).text() == "CT Body 3.0"
    seen: list[int] = []
    dialog.progress.valueChanged.connect(seen.append)
    with qtbot.waitSignal(dialog.studyRetrieved, timeout=60_000) as blocker:
        dialog.retrieve_button.click()
    assert blocker.args[0] == env.study_uid and len(blocker.args[1]) == 1
    assert "20 image(s) retrieved" in dialog.status.text() and max(seen) == 20
    with StudyIndex(dialog.db_path) as index:
        assert index.counts()["instances"] == 20
    with qtbot.waitSignal(dialog.studyRetrieved, timeout=60_000):
        dialog.retrieve_button.click()
    assert "0 image(s) retrieved, 20 already here" in dialog.status.text()


def test_cancel_then_retry(env: PacsEnv, dialog: PacsDialog, qtbot: QtBot) -> None:
    search(qtbot, dialog)
    dialog.study_table.selectRow(0)
    dialog.retrieve_button.click()
    assert dialog.cancel_button.isEnabled()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: "cancelled" in dialog.status.text().lower(), timeout=20_000)
    qtbot.waitUntil(dialog.retrieve_button.isEnabled, timeout=5_000)
    assert not dialog.cancel_button.isEnabled() and not dialog.progress.isVisible()
    with qtbot.waitSignal(dialog.studyRetrieved, timeout=60_000):
        dialog.retrieve_button.click()
    with StudyIndex(dialog.db_path) as index:
        assert index.counts()["instances"] == 20


def test_errors_are_shown(dialog: PacsDialog, qtbot: QtBot) -> None:
    dialog.node_box.setCurrentIndex(dialog.node_box.findData("wrong AE"))
    assert dialog.method_box.currentData() == "get"
    dialog.search_button.click()
    qtbot.waitUntil(lambda: "does not answer to the AE title 'NOTORTHANC'" in dialog.status.text(), timeout=20_000)
    assert dialog.search_button.isEnabled()
    dialog.date_from.setText("last week")
    dialog.search_button.click()
    assert "not a date" in dialog.status.text()
