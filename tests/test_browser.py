"""The study browser: tree from the index, thumbnails, AI status, filter, drop to import, activation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QTreeWidgetItem
from pytestqt.qtbot import QtBot

from workstation.index import StudyIndex, import_paths
from workstation.qt.browser import (
    AI_LOOK,
    COL_AI,
    COL_MODALITY,
    COL_NAME,
    AiStatus,
    StudyBrowser,
)
from workstation.services.catalog import Catalog
from workstation.services.study_labels import age_at, display_name
from workstation.services.thumbnails import thumbnail_pixels
from workstation.settings import Settings, get_settings

CT_ABDOMEN = "ct_abdomen_totalseg/example_ct_dicom"


def import_into(settings: Settings, *paths: Path) -> list[int]:
    with StudyIndex(settings.db_path) as index:
        ids: list[int] = []
        for path in paths:
            ids += import_paths([path], index).series_ids
    return ids


@pytest.fixture
def browser(qtbot: QtBot) -> Iterator[StudyBrowser]:
    widget = StudyBrowser(Catalog.for_settings(get_settings()))
    qtbot.addWidget(widget)
    widget.resize(700, 480)
    widget.show()
    yield widget
    widget.shutdown()


def rows(widget: StudyBrowser) -> list[QTreeWidgetItem]:
    """Every row of the tree, depth first."""
    out: list[QTreeWidgetItem] = []

    def walk(item: QTreeWidgetItem) -> None:
        out.append(item)
        for i in range(item.childCount()):
            walk(item.child(i))

    for i in range(widget.tree.topLevelItemCount()):
        walk(widget.tree.topLevelItem(i))
    return out


def wait_for_thumbnails(qtbot: QtBot, widget: StudyBrowser, ids: list[int]) -> None:
    qtbot.waitUntil(lambda: all(widget.has_thumbnail(i) for i in ids), timeout=30_000)


def test_descriptions_are_read_whole_at_the_default_dock_width(qtbot: QtBot, demo_folder: Path,
                                                               shared_data: Path) -> None:
    """The window gives the Studies dock 450 px: no study or series description may be cut to "…"."""
    settings = get_settings()
    import_into(settings, demo_folder, shared_data / CT_ABDOMEN)
    widget = StudyBrowser(Catalog.for_settings(settings))
    qtbot.addWidget(widget)
    widget.resize(450, 600)
    widget.show()
    qtbot.waitExposed(widget)
    metrics = widget.tree.fontMetrics()
    for item in rows(widget)[1:]:
        if item.parent() is None:  # patient rows span every column
            continue
        start = widget.tree.visualItemRect(item).x()  # where the row's content starts, right of the branches
        icon = 0 if item.icon(COL_NAME).isNull() else widget.tree.iconSize().width() + 6
        room = widget.tree.header().sectionSize(COL_NAME) - start - icon - 8
        widest = max(metrics.horizontalAdvance(line) for line in item.text(COL_NAME).split("\n"))
        assert widest <= room, f"{item.text(COL_NAME)!r} needs {widest} px, has {room}"
    widget.shutdown()


def test_empty_index_shows_how_to_get_started(browser: StudyBrowser) -> None:
    assert browser.tree.topLevelItemCount() == 0
    assert browser.empty.isVisible() and "Drop a folder" in browser.empty.text()


def test_demo_and_real_ct_are_listed_with_thumbnails(qtbot: QtBot, browser: StudyBrowser, demo_folder: Path,
                                                     shared_data: Path) -> None:
    settings = get_settings()
    demo_id, ct_id = import_into(settings, demo_folder, shared_data / CT_ABDOMEN)
    browser.refresh()
    assert not browser.empty.isVisible()
    patients = [browser.tree.topLevelItem(i).text(COL_NAME) for i in range(browser.tree.topLevelItemCount())]
    assert patients == ["Anonymous — no ID", "DEMO, Phantom — ID DEMO0001 · M · 68 y · born 1956-02-10"]
    demo = browser.series_item(demo_id)
    assert demo is not None
    assert demo.text(COL_NAME) == "#2  Thorax 2.5 B30f\n40 images · 3-D volume"
    assert demo.text(COL_MODALITY) == "CT"
    assert demo.parent().text(COL_NAME) == "CT CHEST WITHOUT CONTRAST\n2024-03-15 · 1 series · 40 images"
    ct = browser.series_item(ct_id)
    assert ct is not None and ct.text(COL_NAME) == "CT Body 3.0\n20 images · 3-D volume"
    assert ct.parent().text(COL_NAME) == "(no study description)\n2022-12-08 · 1 series · 20 images"
    assert "Grid 20 × 512 × 512" in ct.toolTip(COL_NAME)
    wait_for_thumbnails(qtbot, browser, [demo_id, ct_id])
    for item in (demo, ct):
        image = item.icon(COL_NAME).pixmap(64, 64).toImage().convertToFormat(QImage.Format.Format_Grayscale8)
        assert not image.isNull()
        values = np.array([[image.pixelColor(x, y).value() for x in range(0, 64, 4)] for y in range(0, 64, 4)])
        assert values.std() > 20, "the icon shows an image, not the grey placeholder"
    cached = list((settings.data_dir / "thumbnails").glob("*.png"))
    assert len(cached) == 2
    again = StudyBrowser(Catalog.for_settings(settings))  # a new browser (or a restart) takes them from the disk cache
    qtbot.addWidget(again)
    wait_for_thumbnails(qtbot, again, [demo_id, ct_id])
    again.shutdown()
    browser.grab().save(str(settings.data_dir / "browser.png"))


def test_thumbnail_is_the_windowed_middle_slice(demo_folder: Path) -> None:
    from workstation.dicomio.headers import read_header_path

    headers = [read_header_path(p) for p in sorted(demo_folder.glob("*.dcm"))]
    pixels = thumbnail_pixels(headers, 64)
    assert pixels.shape == (64, 64) and pixels.dtype == np.uint8
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 0, "air outside the body is black in a soft-tissue window"
    assert pixels[24:40, 24:40].max() == 255, "mediastinum/spine are bright"
    assert 0.05 < (pixels > 0).mean() < 0.9


def test_ai_status_is_shown_and_survives_refresh(browser: StudyBrowser, demo_folder: Path) -> None:
    (sid,) = import_into(get_settings(), demo_folder)
    browser.refresh()
    item = browser.series_item(sid)
    assert item is not None and item.text(COL_AI) == "—" and browser.ai_status(sid) is AiStatus.NONE
    for status in ("queued", "running", "done", "failed"):
        browser.set_ai_status(sid, status)
        text, colour = AI_LOOK[AiStatus(status)]
        assert item.text(COL_AI) == text and text != "—"
        assert item.foreground(COL_AI).color() == QColor(colour)
        assert not item.icon(COL_AI).isNull()
    browser.refresh()
    fresh = browser.series_item(sid)
    assert fresh is not None and fresh.text(COL_AI) == "Failed"
    with pytest.raises(ValueError):
        browser.set_ai_status(sid, "finished")


def test_filter_narrows_the_tree(browser: StudyBrowser, demo_folder: Path, shared_data: Path) -> None:
    demo_id, ct_id = import_into(get_settings(), demo_folder, shared_data / CT_ABDOMEN)
    browser.refresh()
    demo, ct = browser.series_item(demo_id), browser.series_item(ct_id)
    assert demo is not None and ct is not None
    browser.search.setText("thorax")
    assert not demo.isHidden() and ct.isHidden() and ct.parent().parent().isHidden()
    browser.search.setText("DEMO0001")  # a patient match shows everything of the patient
    assert not demo.isHidden() and ct.isHidden()
    browser.search.setText("")
    assert not demo.isHidden() and not ct.isHidden()


def _drop_event(urls: list[QUrl]) -> tuple[QDragEnterEvent, QDropEvent, QMimeData]:
    mime = QMimeData()
    mime.setUrls(urls)
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    return enter, drop, mime


def test_dropping_a_folder_or_zip_requests_an_import(qtbot: QtBot, browser: StudyBrowser, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QApplication

    folder = tmp_path / "cd"
    folder.mkdir()
    archive = tmp_path / "study.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    enter, drop, _mime = _drop_event([QUrl.fromLocalFile(str(folder)), QUrl.fromLocalFile(str(archive))])
    QApplication.sendEvent(browser, enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(browser.importRequested, timeout=2_000) as blocker:
        QApplication.sendEvent(browser, drop)
    assert blocker.args == [[folder, archive]]
    assert drop.isAccepted()


def test_remote_urls_are_refused(qtbot: QtBot, browser: StudyBrowser) -> None:
    from PySide6.QtWidgets import QApplication

    enter, drop, _mime = _drop_event([QUrl("https://example.org/study.zip")])
    QApplication.sendEvent(browser, enter)
    assert not enter.isAccepted()
    with qtbot.assertNotEmitted(browser.importRequested):
        QApplication.sendEvent(browser, drop)


def test_double_click_and_enter_activate_the_series(qtbot: QtBot, browser: StudyBrowser,
                                                    demo_folder: Path) -> None:
    (sid,) = import_into(get_settings(), demo_folder)
    browser.refresh()
    item = browser.series_item(sid)
    assert item is not None
    browser.tree.scrollToItem(item)
    centre = browser.tree.visualItemRect(item).center()
    with qtbot.waitSignal(browser.seriesSelected, timeout=2_000) as selected:
        qtbot.mouseClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert selected.args == [sid] and browser.current_series() == sid
    with qtbot.waitSignal(browser.seriesActivated, timeout=2_000) as activated:
        qtbot.mouseDClick(browser.tree.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert activated.args == [sid]
    browser.tree.setFocus()
    with qtbot.waitSignal(browser.seriesActivated, timeout=2_000) as by_key:
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)
    assert by_key.args == [sid]
    study = item.parent()
    browser.tree.setCurrentItem(study)
    with qtbot.assertNotEmitted(browser.seriesActivated):
        qtbot.keyClick(browser.tree, Qt.Key.Key_Return)


def test_refresh_keeps_selection_and_collapsed_rows(browser: StudyBrowser, demo_folder: Path) -> None:
    (sid,) = import_into(get_settings(), demo_folder)
    browser.refresh()
    browser.select_series(sid)
    item = browser.series_item(sid)
    assert item is not None
    item.parent().setExpanded(False)
    browser.refresh()
    fresh = browser.series_item(sid)
    assert fresh is not None and fresh is not item
    assert browser.current_series() == sid and not fresh.parent().isExpanded()


@pytest.mark.parametrize(("pn", "shown"), [
    ("Demo^Phantom", "DEMO, Phantom"), ("DOE^JANE^M^^", "DOE, JANE M"), ("", "Anonymous"),
    ("Anonymous", "Anonymous"), ("^Cher", "Cher"), ("Yamada^Tarou=山田^太郎", "YAMADA, Tarou"),
])
def test_person_names_read_like_a_worklist(pn: str, shown: str) -> None:
    assert display_name(pn) == shown


def test_ages_use_days_and_months_for_infants() -> None:
    assert age_at("19560210", "20240315") == "68 y"
    assert age_at("19560316", "20240315") == "67 y"
    assert age_at("20240301", "20240315") == "14 d"
    assert age_at("20230101", "20240315") == "14 mo"
    assert age_at("", "20240315") == "" and age_at("20250101", "20240315") == ""
