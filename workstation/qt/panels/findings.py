"""The findings panel: what the analysis measured, as a sortable table a radiologist can act on.

Lesions (e.g. lung nodule candidates) come first, one row each, then the
labelled structures; the model's measurements (lung volumes, %LAA-950, body
composition) follow in their own table and its cautions below, because they go
into the report with the numbers. A lesion's Image column names the source image
through its centre as a radiologist looks it up (``Se 2 Im 78``: SeriesNumber and
InstanceNumber, ``inference.image_refs``), never a grid index. Everything is
marked as an unverified AI draft. Selecting a row emits ``findingSelected`` with
a ``FindingTarget``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inference.contract import AnalysisResult
from inference.findings import Lesion, StructureFinding, lesion_volume_text, unit_text
from inference.image_refs import lesion_text
from inference.volume import Volume
from workstation.qt.frame_steps import FrameSteps
from workstation.qt.panels.targets import FindingTarget, display_name, lesion_target, structure_target
from workstation.qt.viewer.overlay_panel import swatch

logger = logging.getLogger(__name__)

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2
COLUMNS = ("Finding", "Volume", "Mean ± SD", "Size\n(mm)", "Location", "Image\n(Se / Im)")
TABLE_STYLE = ("QTableView { background: #141517; alternate-background-color: #1a1c1f; gridline-color: #2a2c30;"
               " selection-background-color: #2f5d8a; selection-color: #ffffff; }")
DRAFT_TEXT = "AI DRAFT – not verified by a radiologist"
DRAFT_STYLE = ("QLabel { background: #6b4a00; color: #ffe9b0; font-weight: bold; padding: 4px 8px;"
               " border-radius: 3px; }")
MINUS = "\u2212"


def fmt_number(value: float, decimals: int = 0) -> str:
    """A number with a real minus sign (readable at a glance on a dark background)."""
    text = f"{value:.{decimals}f}"
    if text.startswith("-"):
        text = text[1:] if float(text) == 0 else MINUS + text[1:]
    return text


def fmt_volume(ml: float) -> str:
    """Volumes from whole lungs (2170) down to small nodules (0.27), with sensible precision."""
    if ml >= 100:
        return f"{ml:.0f}"
    if ml >= 10:
        return f"{ml:.1f}"
    if ml >= 0.01:
        return f"{ml:.2f}"
    return "<0.01"


def fmt_mean(mean: float | None, std: float | None, units: str, with_unit: bool = True) -> str:
    """``−856 ± 45 HU`` (``—`` when not measured); without the unit when the column header names it."""
    if mean is None:
        return "—"
    unit = f" {units}" if units and with_unit else ""
    decimals = 0 if units == "HU" or abs(mean) >= 100 else 1
    if std is None:
        return f"{fmt_number(mean, decimals)}{unit}"
    return f"{fmt_number(mean, decimals)} ± {std:.{decimals}f}{unit}"


@dataclass(frozen=True)
class _Row:
    """One table row: the finding it shows and the values its cells sort by."""

    finding: StructureFinding | Lesion
    cells: tuple[str, str, str, str, str, str]
    keys: tuple[Any, Any, Any, Any, Any, Any]
    tooltip: str


def _lesion_row(les: Lesion, volume: Volume | None = None) -> _Row:
    """One lesion; its Image cell names the source image through its centre (``Se 2 Im 78``, "" if unknown)."""
    name = f"{display_name(les.name)} {les.number}"
    size = f"{les.long_axis_mm:.1f} × {les.short_axis_mm:.1f}"
    where = les.zone or les.location or les.side
    image = lesion_text(les, "short", volume)
    seen = f"; centre on {lesion_text(les, 'long', volume)}" if image else ""
    tip = (f"{name}: axial long × short axis {les.long_axis_mm:.1f} × {les.short_axis_mm:.1f} mm; "
           f"3-D {les.long_axis_3d_mm:.1f} × {les.short_axis_3d_mm:.1f} mm; {les.voxels} voxels; "
           f"centre (x, y, z) {', '.join(fmt_number(v, 1) for v in les.centroid_lps)} mm{seen}")
    order = les.instance_number if les.instance_number is not None else -1
    return _Row(les, (name, lesion_volume_text(les.volume_ml), fmt_mean(les.mean, None, les.units, False), size, where,
                      image),
                (name.lower(), les.volume_ml, les.mean if les.mean is not None else float("-inf"),
                 les.long_axis_mm, where, order), tip)


def _structure_row(st: StructureFinding) -> _Row:
    name = display_name(st.name)
    sided = st.side in ("left", "right") and st.side in st.name.lower()
    where = st.side if sided else ""
    tip = f"{name}: {st.voxels} voxels; centre (x, y, z) {', '.join(fmt_number(v, 1) for v in st.centroid_lps)} mm"
    return _Row(st, (name, f"{fmt_volume(st.volume_ml)} mL", fmt_mean(st.mean, st.std, st.units, False), "", where, ""),
                (name.lower(), st.volume_ml, st.mean if st.mean is not None else float("-inf"), -1.0, where,
                 -1), tip)


class FindingsPanel(QWidget):
    """A sortable table of the findings of one ``AnalysisResult``, with measurements and cautions."""

    findingSelected = Signal(object)  # noqa: N815 - Qt signal naming; carries a FindingTarget

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._result: AnalysisResult | None = None
        self._rows: list[_Row] = []
        self._filler = FrameSteps(self)  # fills the tables a frame's budget at a time
        self.banner = QLabel(DRAFT_TEXT)
        self.banner.setStyleSheet(DRAFT_STYLE)
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.source = QLabel()
        self.source.setWordWrap(True)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = self._make_view(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.measure_model = QStandardItemModel(0, 2, self)
        self.measure_model.setHorizontalHeaderLabels(["Measurement", "Value"])
        self.measurements = self._make_view(self.measure_model)
        self.cautions = QLabel()
        self.cautions.setWordWrap(True)
        self.cautions.setTextFormat(Qt.TextFormat.PlainText)
        self.cautions.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.cautions.setStyleSheet("QLabel { color: #f0c674; }")
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.measurements)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.source)
        layout.addWidget(split, 1)
        from workstation.qt.panels.comparison import ComparisonPanel  # it formats with this module's helpers

        self.comparison = ComparisonPanel()  # the comparison with a prior, once there is one (hidden until then)
        layout.addWidget(self.comparison)
        layout.addWidget(self.cautions)
        self.clear()

    @staticmethod
    def _make_view(model: Any) -> QTableView:
        view = QTableView()
        view.setModel(model)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        view.setAlternatingRowColors(True)
        view.setStyleSheet(TABLE_STYLE)
        view.setWordWrap(False)
        view.verticalHeader().setVisible(False)
        view.verticalHeader().setDefaultSectionSize(22)
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        return view

    # --- filling ---------------------------------------------------------------------
    def clear(self) -> None:
        """Show the empty state: no analysis yet."""
        self._filler.cancel()
        self._result = None
        self._rows = []
        self.model.removeRows(0, self.model.rowCount())
        self.measure_model.removeRows(0, self.measure_model.rowCount())
        self.banner.setVisible(False)
        self.source.setText("No AI analysis for this series yet. Choose a model and press Run AI.")
        self.cautions.setText("")
        self.cautions.setVisible(False)

    def set_result(self, result: AnalysisResult | None) -> None:
        """Show the findings of ``result`` (or the empty state for None).

        The table fills over the next event-loop turns (``FrameSteps``), each within
        a frame's budget, so a result arriving never stalls the viewer beside it;
        ``row_count``/``target_at`` (and ``finish``) complete the fill first.
        """
        self.clear()
        if result is None:
            return
        self._result = result
        findings = result.findings
        lesion_labels = {les.label for les in findings.lesions}
        self._rows = [_lesion_row(les, result.request.volume) for les in findings.lesions]
        self._rows += [_structure_row(st) for st in findings.structures if st.label not in lesion_labels]
        self.table.setSortingEnabled(False)
        # from the next turn on: the result's arrival already draws the overlay and the legend in this one
        self._filler.start([*(partial(self._add_row, i, row) for i, row in enumerate(self._rows)),
                            self._add_measurements, self._show_texts, self._fit_and_sort], now=False)

    @property
    def filling(self) -> bool:
        """True while the rows and texts of the shown result are still being filled in."""
        return self._filler.busy

    def finish(self) -> None:
        """Fill in at once whatever of the shown result is still pending."""
        self._filler.finish()

    def _add_row(self, i: int, row: _Row) -> None:
        assert self._result is not None
        label = self._result.label_table.by_value(row.finding.label)
        items = []
        for text, key in zip(row.cells, row.keys, strict=True):
            item = QStandardItem(text)
            item.setData(key, SORT_ROLE)
            item.setToolTip(row.tooltip)
            items.append(item)
        for item in items[1:4]:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        items[0].setData(i, ROW_ROLE)
        if label is not None:
            items[0].setIcon(swatch(label.color, 12))
        self.model.appendRow(items)

    def _add_measurements(self) -> None:
        assert self._result is not None
        measurements = self._result.findings.measurements
        for m in measurements:
            name = f"{m.name}, {m.side}" if m.side else m.name
            name = name[:1].upper() + name[1:]
            unit = unit_text(m.unit)
            decimals = 0 if unit == "HU" or abs(m.value) >= 1000 else 1
            value = QStandardItem(f"{fmt_number(m.value, decimals)} {unit}".strip())
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            first = QStandardItem(("⚠ " if m.caution else "") + name)
            tip = "; ".join(t for t in (m.method, m.caution) if t)
            first.setToolTip(tip)
            value.setToolTip(tip)
            self.measure_model.appendRow([first, value])
        self.measurements.setVisible(bool(measurements))

    def _show_texts(self) -> None:
        assert self._result is not None
        findings, prov = self._result.findings, self._result.provenance
        seconds = prov.timings_s.get("total")
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        self.source.setText(f"{prov.model_id} {prov.model_version} on {prov.device_name}{took} · "
                            f"{len(findings.lesions)} lesion candidate(s), {len(findings.structures)} structures")
        lines = [*findings.cautions, *prov.notes]
        self.cautions.setText("\n".join(f"⚠ {c}" for c in lines))
        self.cautions.setVisible(bool(lines))
        self.banner.setVisible(True)

    def _fit_and_sort(self) -> None:
        self.table.setSortingEnabled(True)
        units = {r.finding.units for r in self._rows if r.finding.units}
        self.model.setHeaderData(2, Qt.Orientation.Horizontal,
                                 f"Mean ± SD\n({units.pop()})" if len(units) == 1 else "Mean ± SD")
        self._fit_columns(self.table)
        self._fit_columns(self.measurements)
        self._share_height()
        logger.debug("findings panel: %d rows, %d measurements", len(self._rows), self.measure_model.rowCount())

    @staticmethod
    def _fit_columns(view: QTableView) -> None:
        """Columns as wide as their cells and header text (not the space Qt keeps for a sort arrow)."""
        header = view.horizontalHeader()
        metrics = header.fontMetrics()
        model = view.model()
        for col in range(model.columnCount() - 1):
            title = str(model.headerData(col, Qt.Orientation.Horizontal) or "")
            text = max((metrics.horizontalAdvance(line) for line in title.split("\n")), default=0)
            header.resizeSection(col, max(view.sizeHintForColumn(col), text + 14))

    def _share_height(self) -> None:
        """Give each table the height its rows need (the findings table first), within the splitter."""
        def need(view: QTableView) -> int:
            rows = view.model().rowCount()
            bar = view.horizontalScrollBar().sizeHint().height()
            return view.horizontalHeader().sizeHint().height() + rows * view.verticalHeader().defaultSectionSize() \
                + 2 * view.frameWidth() + bar

        layout = self.layout()
        if layout is not None:
            layout.activate()  # the cautions' height is known before the tables share the rest
        total = max(self.split.height(), 200)
        first = min(need(self.table), max(total - 120, total // 2))
        self.split.setSizes([first, max(total - first, 80)])

    # --- selection -------------------------------------------------------------------
    @property
    def result(self) -> AnalysisResult | None:
        """The result shown (None in the empty state)."""
        return self._result

    def row_count(self) -> int:
        """Rows in the findings table (of the whole result: a fill still in progress is completed)."""
        self.finish()
        return self.model.rowCount()

    def target_at(self, view_row: int) -> FindingTarget | None:
        """The navigation target of the table row ``view_row`` as currently sorted."""
        self.finish()
        if self._result is None or not 0 <= view_row < self.proxy.rowCount():
            return None
        source = self.proxy.mapToSource(self.proxy.index(view_row, 0))
        row = self._rows[int(self.model.item(source.row(), 0).data(ROW_ROLE))]
        shape = self._result.labelmap.shape
        if isinstance(row.finding, Lesion):
            return lesion_target(row.finding, self._result.labelmap, self._result.request.volume.spacing)
        return structure_target(row.finding, shape)

    @Slot(QModelIndex, QModelIndex)
    def _row_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        target = self.target_at(current.row()) if current.isValid() else None
        if target is not None:
            self.findingSelected.emit(target)
