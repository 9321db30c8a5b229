"""The comparison with a prior in the findings panel: alignment, each lesion's change, the guideline.

Shown under the findings once a follow-up comparison is there
(``workstation.services.followup_jobs``): which prior, how well it was aligned
(a registration that failed its quality check is shown in red and its lesions
are not compared), then one row per lesion: status (a lesion outside the other
study's field of view: "not in prior field" / "not in current field", in grey,
the reason as its tooltip), mean diameter then and
now, volume then and now, volume change and volume doubling time. The numbers
are the comparison record's (``inference.followup.model``), formatted only.
Selecting a row emits ``lesionSelected`` with its ``LesionChange``.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from inference.findings import lesion_volume_text
from inference.followup.model import ChangeStatus, Comparison, LesionChange, RegistrationResult
from workstation.qt.panels.findings import TABLE_STYLE, fmt_number

logger = logging.getLogger(__name__)

COLUMNS = ("Lesion", "Status", "Diameter\nthen → now", "VDT\n(days)", "Volume\nthen → now", "Volume\nchange")
STATUS_COLOURS = {ChangeStatus.NEW: "#ff8a80", ChangeStatus.GROWN: "#ffb74d", ChangeStatus.STABLE: "#a5d6a7",
                  ChangeStatus.SHRUNK: "#81d4fa", ChangeStatus.RESOLVED: "#b0bec5",
                  ChangeStatus.NOT_COVERED: "#9e9e9e"}
"""The one place statuses get colours (the status cell's text); "not covered" is a neutral grey: no change known."""
PASSED_STYLE = "QLabel { color: #a5d6a7; }"
FAILED_STYLE = "QLabel { color: #ffffff; background: #8b1e1e; padding: 3px 6px; border-radius: 3px; }"
DASH = "\u2014"


def registration_text(reg: RegistrationResult) -> str:
    """The alignment in one line: kind, quality figure against its threshold, and the verdict."""
    figure = f"{reg.quality_name} {reg.quality_value:.2f} (threshold {reg.quality_threshold:.2f})"
    moved = f"{reg.rotation_deg:.1f}° / {reg.translation_mm:.0f} mm"
    if reg.passed:
        return f"Aligned ({reg.kind}, {moved}): {figure}, passed"
    return (f"Alignment FAILED its quality check: {reg.reason or figure}. "
            "The views are not linked by position and lesions are not compared.")


def _diameters(change: LesionChange) -> str:
    """Mean diameters then and now, one unit for both: "6.4 → 9.0 mm"."""
    then, now = change.diameter_then_mm, change.diameter_now_mm
    return (f"{fmt_number(then, 1) if then is not None else DASH} → "
            f"{fmt_number(now, 1) if now is not None else DASH} mm")


def _volumes(change: LesionChange) -> str:
    """Volumes then and now in nodule volumetry's unit, written once: "124 → 394 mm³"."""
    then = lesion_volume_text(change.prior.volume_ml) if change.prior else DASH
    now = lesion_volume_text(change.current.volume_ml) if change.current else DASH
    unit = next((t.rsplit(" ", 1)[1] for t in (now, then) if " " in t), "")
    return f"{then.removesuffix(' ' + unit)} → {now}" if unit else f"{then} → {now}"


def _name(change: LesionChange) -> str:
    snap = change.current or change.prior
    if snap is None:
        return DASH
    where = f"Se {snap.series_number} Im {snap.instance_number}" if snap.instance_number is not None else ""
    who = f"{snap.number}" if change.current else f"prior {snap.number}"
    return f"{who} · {where}" if where else who


class ComparisonPanel(QWidget):
    """The comparison with one prior (hidden until there is one); see the module docstring."""

    lesionSelected = Signal(object)  # noqa: N815 - Qt signal naming; carries a LesionChange

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._changes: list[LesionChange] = []
        self.comparison: Comparison | None = None
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setStyleSheet("QLabel { font-weight: bold; }")
        self.alignment = QLabel()
        self.alignment.setWordWrap(True)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setStyleSheet(TABLE_STYLE)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.recommendation = QLabel()
        self.recommendation.setWordWrap(True)
        self.recommendation.setTextFormat(Qt.TextFormat.PlainText)
        self.notes = QLabel()
        self.notes.setWordWrap(True)
        self.notes.setTextFormat(Qt.TextFormat.PlainText)
        self.notes.setStyleSheet("QLabel { color: #f0c674; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        for widget in (self.title, self.alignment, self.table, self.recommendation, self.notes):
            layout.addWidget(widget)
        self.setVisible(False)

    def clear(self) -> None:
        """No comparison: hide."""
        self.comparison = None
        self._changes = []
        self.model.removeRows(0, self.model.rowCount())
        self.setVisible(False)

    def set_alignment_only(self, prior: str, reg: RegistrationResult) -> None:
        """The prior was aligned but the current series has no analysis: say so, no lesion table."""
        self.clear()
        self.title.setText(f"Prior: {prior}")
        self._show_alignment(reg)
        self.table.setVisible(False)
        self.recommendation.setText("Run AI on the current series, then Compare with prior, to compare lesions.")
        self.notes.setVisible(False)
        self.setVisible(True)

    def set_comparison(self, comparison: Comparison | None) -> None:
        """Show a comparison (None: hide)."""
        self.clear()
        if comparison is None:
            return
        c = comparison
        self.comparison = c
        series = f", series {c.prior_series_number}" if c.prior_series_number is not None else ""
        self.title.setText(f"Compared with the prior of {c.prior_study_date.isoformat()}{series} "
                           f"({c.interval_days} days earlier)")
        self._show_alignment(c.registration)
        self._changes = list(c.changes)
        for change in self._changes:
            self.model.appendRow(self._row(change))
        self.table.setVisible(bool(self._changes))
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height()
                                  + 22 * max(1, len(self._changes)) + 2 * self.table.frameWidth()
                                  + self.table.horizontalScrollBar().sizeHint().height())
        if c.recommendation is not None:
            self.recommendation.setText(f"{c.recommendation.text} ({c.recommendation.rule})")
        else:
            self.recommendation.setText(f"No follow-up recommendation: {c.recommendation_reason}"
                                        if c.recommendation_reason else "")
        lines = [*c.cautions, f"Criteria: {c.criteria.describe()}"]
        self.notes.setText("\n".join(f"⚠ {x}" if x in c.cautions else x for x in lines))
        self.notes.setVisible(True)
        self.setVisible(True)
        logger.debug("comparison panel: %d lesions", len(self._changes))

    def changes(self) -> list[LesionChange]:
        """The rows, in table order."""
        return list(self._changes)

    def cell_text(self, row: int, column: int) -> str:
        """What a cell shows (for tests and screen readers)."""
        item = self.model.item(row, column)
        return item.text() if item is not None else ""

    def _show_alignment(self, reg: RegistrationResult) -> None:
        self.alignment.setText(registration_text(reg))
        self.alignment.setStyleSheet(PASSED_STYLE if reg.passed else FAILED_STYLE)

    @staticmethod
    def _row(change: LesionChange) -> list[QStandardItem]:
        vdt = fmt_number(change.doubling_time_days) if change.doubling_time_days is not None else DASH
        percent = change.volume_change_percent
        cells = [_name(change), change.status_label, _diameters(change), vdt, _volumes(change),
                 f"{'+' if percent and percent > 0 else ''}{fmt_number(percent)} %" if percent is not None else DASH]
        items = [QStandardItem(text) for text in cells]
        items[1].setForeground(QColor(STATUS_COLOURS[change.status]))
        for item in items[2:]:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if change.doubling_time_reason:
            items[3].setToolTip(change.doubling_time_reason)
        if change.status is ChangeStatus.NOT_COVERED:
            items[1].setToolTip(change.doubling_time_reason)
        return items

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        row = current.row() if current.isValid() else -1
        if 0 <= row < len(self._changes):
            self.lesionSelected.emit(self._changes[row])
