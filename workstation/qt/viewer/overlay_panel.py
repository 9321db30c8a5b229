"""The overlay panel: show/hide, opacity, fill or outline, and the legend with per-label checkboxes.

It only talks to an ``MprViewer`` through its public overlay API and follows its
``overlayChanged`` signal, so keyboard toggles in the viewer and clicks here
never disagree.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from inference.labels import readable_name
from workstation.qt.viewer.mpr import MprViewer

logger = logging.getLogger(__name__)

VALUE_ROLE = Qt.ItemDataRole.UserRole + 1


def swatch(colour: tuple[int, int, int], size: int = 14) -> QIcon:
    """A filled colour square for the legend."""
    pix = QPixmap(size, size)
    pix.fill(QColor(*colour))
    return QIcon(pix)


class OverlayPanel(QWidget):
    """Controls and legend for the viewer's label overlay."""

    def __init__(self, viewer: MprViewer | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer: MprViewer | None = None
        self._syncing = False
        self._table_key: tuple[tuple[int, str, tuple[int, int, int]], ...] = ()
        self.show_check = QCheckBox("Show overlay (O)")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity_label = QLabel()
        self.opacity_label.setMinimumWidth(40)
        self.auto_button = QRadioButton("Outline organs, fill lesions")
        self.fill_button = QRadioButton("Fill")
        self.outline_button = QRadioButton("Outline")
        self._mode_group = QButtonGroup(self)
        self._mode_buttons: dict[str, QRadioButton] = {
            "auto": self.auto_button, "fill": self.fill_button, "outline": self.outline_button}
        for mode, button in self._mode_buttons.items():
            self._mode_group.addButton(button)
            button.toggled.connect(lambda checked, m=mode: self._on_mode(m, checked))
        self.labels = QListWidget()
        self.labels.setObjectName("overlayLegend")
        self.all_button = QPushButton("All")
        self.none_button = QPushButton("None")

        row_opacity = QHBoxLayout()
        row_opacity.addWidget(QLabel("Opacity"))
        row_opacity.addWidget(self.opacity, 1)
        row_opacity.addWidget(self.opacity_label)
        row_mode = QHBoxLayout()
        row_mode.addWidget(self.auto_button)
        row_mode.addWidget(self.fill_button)
        row_mode.addWidget(self.outline_button)
        row_mode.addStretch(1)
        row_all = QHBoxLayout()
        row_all.addWidget(self.all_button)
        row_all.addWidget(self.none_button)
        row_all.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.show_check)
        layout.addLayout(row_opacity)
        layout.addLayout(row_mode)
        layout.addWidget(self.labels, 1)
        layout.addLayout(row_all)

        self.show_check.toggled.connect(self._on_show)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.labels.itemChanged.connect(self._on_item)
        self.all_button.clicked.connect(lambda: self._set_all(True))
        self.none_button.clicked.connect(lambda: self._set_all(False))
        self.set_viewer(viewer)

    def set_viewer(self, viewer: MprViewer | None) -> None:
        """Control ``viewer``'s overlay (``None``: control nothing)."""
        if self.viewer is not None:
            self.viewer.overlayChanged.disconnect(self.sync)
        self.viewer = viewer
        if viewer is not None:
            viewer.overlayChanged.connect(self.sync)
        self.sync()

    def sync(self) -> None:
        """Show the viewer's current overlay settings and labels."""
        v = self.viewer
        ov = v.overlay() if v is not None else None
        self._syncing = True
        try:
            self.setEnabled(ov is not None)
            self.show_check.setChecked(ov is not None and ov.visible)
            opacity = v.overlay_opacity() if v is not None else 0.5
            self.opacity.setValue(round(opacity * 100))
            self.opacity_label.setText(f"{round(opacity * 100)} %")
            self._mode_buttons[v.overlay_mode() if v is not None else "auto"].setChecked(True)
            key = tuple((lab.value, lab.name, lab.color) for lab in ov.table) if ov is not None else ()
            if key != self._table_key:
                self.labels.clear()
                for lab in ov.table if ov is not None else ():
                    item = QListWidgetItem(swatch(lab.color), readable_name(lab.name, capitalize=True))
                    item.setData(VALUE_ROLE, lab.value)
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    item.setToolTip(f"label {lab.value}" + (" (lesion)" if lab.lesion else ""))
                    self.labels.addItem(item)
                self._table_key = key
            for n in range(self.labels.count()):
                item = self.labels.item(n)
                visible = v is not None and v.label_visible(int(item.data(VALUE_ROLE)))
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
        finally:
            self._syncing = False

    def label_item(self, value: int) -> QListWidgetItem | None:
        """The legend row of a label value."""
        for n in range(self.labels.count()):
            item = self.labels.item(n)
            if int(item.data(VALUE_ROLE)) == value:
                return item
        return None

    def _on_show(self, checked: bool) -> None:
        if not self._syncing and self.viewer is not None:
            self.viewer.set_overlay_visible(checked)

    def _on_opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value} %")
        if not self._syncing and self.viewer is not None:
            self.viewer.set_overlay_opacity(value / 100.0)

    def _on_mode(self, mode: str, checked: bool) -> None:
        if checked and not self._syncing and self.viewer is not None:
            self.viewer.set_overlay_mode(mode)

    def _on_item(self, item: QListWidgetItem) -> None:
        if not self._syncing and self.viewer is not None:
            self.viewer.set_label_visible(int(item.data(VALUE_ROLE)), item.checkState() == Qt.CheckState.Checked)

    def _set_all(self, visible: bool) -> None:
        if self.viewer is None:
            return
        for n in range(self.labels.count()):
            self.viewer.set_label_visible(int(self.labels.item(n).data(VALUE_ROLE)), visible)
