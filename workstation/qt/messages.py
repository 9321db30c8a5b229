"""Qt's own messages (qDebug/qWarning/...) go to Python logging instead of straight to stderr.

Without this, Qt prints e.g. "This plugin does not support propagateSizeHints()" (offscreen platform)
to the terminal three times during the self-test, among the output a user is meant to read. Routed
through logging, such messages follow the application's log level and handlers like every other record.
Installed once, by the application factory (``workstation.qt.app.ensure_app``).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler

logger = logging.getLogger(__name__)

LEVELS: dict[QtMsgType, int] = {
    QtMsgType.QtDebugMsg: logging.DEBUG,
    QtMsgType.QtInfoMsg: logging.INFO,
    QtMsgType.QtWarningMsg: logging.WARNING,
    QtMsgType.QtCriticalMsg: logging.ERROR,
    QtMsgType.QtFatalMsg: logging.CRITICAL,
}

#: Warnings that say nothing a user can act on; logged at DEBUG so they appear only with ``-vv``.
HARMLESS = (
    "does not support propagateSizeHints",  # offscreen/minimal platforms: no window manager to tell
)

_installed = False


def _handler(mode: QtMsgType, context: QMessageLogContext, message: str) -> None:
    level = LEVELS.get(mode, logging.WARNING)
    if level == logging.WARNING and any(text in message for text in HARMLESS):
        level = logging.DEBUG
    category = getattr(context, "category", None) or "default"
    logger.log(level, "[%s] %s", category, message)


def install_qt_message_handler() -> None:
    """Route Qt's messages into logging (idempotent: later calls do nothing)."""
    global _installed
    if _installed:
        return
    qInstallMessageHandler(_handler)
    _installed = True
