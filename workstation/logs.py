"""Where log records go, and what happens to an exception nobody caught.

Modules log with ``logging.getLogger(__name__)``; this module only decides where records go:

- stderr, when there is one (a frozen windowed app has none): warnings by default, more with ``-v``/``-vv``;
- a rotating file ``<data_dir>/logs/workstation.log`` (5 MB x 5 backups) at INFO, DEBUG with ``-vv``, so
  a user of the windowed app, who sees no console, still has a log to send with a problem report.

``install_excepthook`` routes uncaught exceptions (main thread and ``threading`` threads) to that log with
their traceback, then to the notifiers registered with it: the CLI prints one line, the window shows one
error dialog (``workstation.qt.errors``). A hook installed before ours that is not Python's default (a
debugger, pytest-qt) is still called, so nothing that watched for exceptions goes blind.

Patient names and IDs are never logged anywhere: code logs index keys and UIDs, never names.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

LOG_NAME = "workstation.log"
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 5
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"

#: Set on the record of an uncaught exception: its traceback goes to the file, not to the console.
UNCAUGHT = "uncaught"
#: Records logged before the file is known (e.g. settings warnings) wait here, then go to the file.
_PENDING_MAX = 500


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest swaps it per test; a frozen app has None)."""

    def __init__(self, level: int) -> None:
        super().__init__(sys.stderr)
        self.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        if sys.stderr is None or getattr(record, UNCAUGHT, False):  # the notifiers say those in one line
            return
        self.stream = sys.stderr  # under the handler's lock (Handler.handle holds it)
        super().emit(record)


class _Pending(logging.Handler):
    """Keeps the first records logged before the log file exists, to write them there once it does."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < _PENDING_MAX:
            self.records.append(record)


_handlers: list[logging.Handler] = []
_log_file: Path | None = None


def log_file() -> Path | None:
    """The log file records go to now (None before ``configure_logging`` was given a data dir)."""
    return _log_file


def log_path(data_dir: Path) -> Path:
    """Where the log file lives for a data dir: ``<data_dir>/logs/workstation.log``."""
    return data_dir / "logs" / LOG_NAME


def _levels(verbosity: int) -> tuple[int, int]:
    """(stderr level, file level) for a ``-v`` count."""
    if verbosity >= 2:
        return logging.DEBUG, logging.DEBUG
    return (logging.INFO if verbosity == 1 else logging.WARNING), logging.INFO


_verbosity = 0


def move_log_file(data_dir: Path) -> Path | None:
    """Keep logging as configured, but into ``<data_dir>/logs`` (the self-test's own folder)."""
    return configure_logging(_verbosity, data_dir)


def configure_logging(verbosity: int = 0, data_dir: Path | None = None) -> Path | None:
    """Send records to stderr and, given the data dir, to the rotating log file; return the file's path.

    Call it again to change the level or the folder: the handlers it installed before are replaced (and
    the file closed), never stacked. Without a data dir, records are held until a later call names one,
    so warnings logged while the settings (which name the data dir) load still reach the file.
    """
    global _log_file, _verbosity
    _verbosity = verbosity
    stderr_level, file_level = _levels(verbosity)
    pending = [r for h in _handlers if isinstance(h, _Pending) for r in h.records]
    shutdown_logging()
    root = logging.getLogger()
    new: list[logging.Handler] = [_StderrHandler(stderr_level)]
    path: Path | None = None
    if data_dir is None:
        new.append(_Pending())
    else:
        path = log_path(data_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True)
        except OSError as exc:  # a read-only data dir must not stop the app
            logger.warning("cannot write the log file %s: %s", path, exc)
            path = None
        else:
            file_handler.setLevel(file_level)
            new.append(file_handler)
    formatter = logging.Formatter(FORMAT)
    for handler in new:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    _handlers.extend(new)
    root.setLevel(min(stderr_level, file_level))
    _log_file = path
    if path is not None:
        for record in pending:
            if record.levelno >= file_level:
                new[-1].handle(record)
    return path


def shutdown_logging() -> None:
    """Remove (and close) the handlers ``configure_logging`` installed; tests call it between runs."""
    global _log_file
    root = logging.getLogger()
    while _handlers:
        handler = _handlers.pop()
        root.removeHandler(handler)
        handler.close()
    _log_file = None


# -- uncaught exceptions -------------------------------------------------------------------------------

Notifier = Callable[[str], None]
_notifiers: dict[str, Notifier] = {}
_previous_sys: Callable[[type[BaseException], BaseException, TracebackType | None], object] | None = None
_previous_thread: Callable[[threading.ExceptHookArgs], object] | None = None


def summary(exc: BaseException) -> str:
    """One line for a person: the exception's type and message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _notify(line: str) -> None:
    for name, notify in list(_notifiers.items()):
        try:
            notify(line)
        except Exception:  # a broken notifier must not hide the original error
            logger.exception("error notifier %s failed", name)


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    logger.critical("uncaught exception: %s", summary(exc), exc_info=(exc_type, exc, tb), extra={UNCAUGHT: True})
    _notify(summary(exc))
    if _previous_sys is not None:
        _previous_sys(exc_type, exc, tb)


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as the default hook: a thread that exits is no error
        return
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    name = args.thread.name if args.thread is not None else "?"
    logger.critical("uncaught exception in thread %s: %s", name, summary(exc),
                    exc_info=(args.exc_type, exc, args.exc_traceback), extra={UNCAUGHT: True})
    _notify(summary(exc))
    if _previous_thread is not None:
        _previous_thread(args)


def install_excepthook(name: str | None = None, notify: Notifier | None = None) -> None:
    """Route uncaught exceptions to the log, then to ``notify`` (registered under ``name``, once).

    Idempotent: the hooks are set once; a notifier registered again under the same name replaces the
    earlier one. A previous hook that is not Python's default keeps being called after ours.
    """
    global _previous_sys, _previous_thread
    if sys.excepthook is not _sys_hook:
        current = sys.excepthook
        _previous_sys = None if current is sys.__excepthook__ else current
        sys.excepthook = _sys_hook
    if threading.excepthook is not _thread_hook:
        current_thread = threading.excepthook
        _previous_thread = None if current_thread is threading.__excepthook__ else current_thread
        threading.excepthook = _thread_hook
    if name is not None and notify is not None:
        _notifiers[name] = notify


def uninstall_excepthook() -> None:
    """Put back the hooks ``install_excepthook`` replaced and forget every notifier (tests, shutdown)."""
    global _previous_sys, _previous_thread
    if sys.excepthook is _sys_hook:
        sys.excepthook = _previous_sys if _previous_sys is not None else sys.__excepthook__
    if threading.excepthook is _thread_hook:
        threading.excepthook = _previous_thread if _previous_thread is not None else threading.__excepthook__
    _previous_sys = _previous_thread = None
    _notifiers.clear()


def remove_notifier(name: str) -> None:
    """Stop telling ``name`` about uncaught exceptions (the window's dialog, when the app goes)."""
    _notifiers.pop(name, None)


def print_error_line(line: str) -> None:
    """The CLI's notifier: one clear line and where the details are, on stderr (if there is one)."""
    if sys.stderr is None:
        return
    where = f"; details in the log file: {_log_file}" if _log_file is not None else ""
    print(f"workstation: unexpected error: {line}{where}", file=sys.stderr, flush=True)
