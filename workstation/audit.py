"""The audit trail: who did what to which study, when, with what outcome; append-only JSON lines.

Hospital security officers ask "who opened, analysed, reported, exported or
sent this study, and when?". Every such action (``EVENTS``) appends one JSON
object per line to ``<data_dir>/audit.jsonl``, apart from the debug log:

    {"time": "2025-01-31T09:15:02.123456+00:00", "event": "model.run", "user": "jdoe",
     "study_uid": "1.2.3...", "outcome": "ok", "details": {"model_id": "builtin.ct", ...}}

- ``user`` is the operating-system user; a sign-off adds ``radiologist``, the
  name the radiologist signed with. ``time`` is ISO 8601 UTC.
- No patient name or ID ever goes in: a study is named by its Study Instance
  UID only, and ``details`` hold model ids, node names, counts, folders and
  file names the application chose, never DICOM patient attributes.
- Append-only: each record is one ``write`` on a descriptor opened with
  ``O_APPEND`` (so concurrent writers, the window and a command line, never
  interleave inside a line), then ``fsync``. Nothing here rewrites or truncates
  the file. A failure to write is logged and reported to the caller (``None``),
  never raised: an unwritable audit file must not stop a radiologist reading.

Called from the services layer (and the PACS layer for what arrives or leaves),
so the command line and the window record the same events;
``workstation audit [--since DATE] [--json]`` reads it back.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation.quick_settings import settings_now

if TYPE_CHECKING:
    from workstation.settings import Settings

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
EVENTS = (
    "study.opened", "model.run", "report.drafted", "report.signed", "report.amended", "export.written",
    "study.sent", "study.received", "model.installed", "model.trusted", "model.removed",
)
OUTCOMES = ("ok", "failed", "cancelled", "refused", "partial")
_PATIENT_KEYS = frozenset({"patient_name", "patient_id", "patientname", "patientid", "birth_date",
                           "patient_birth_date", "patient"})


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail."""

    time: str
    event: str
    user: str
    study_uid: str = ""
    outcome: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    radiologist: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``radiologist`` only when set)."""
        out: dict[str, Any] = {"time": self.time, "event": self.event, "user": self.user,
                               "study_uid": self.study_uid, "outcome": self.outcome, "details": dict(self.details)}
        if self.radiologist is not None:
            out["radiologist"] = self.radiologist
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """From a parsed line; ``ValueError`` if it is not an audit record."""
        if not isinstance(data.get("time"), str) or not isinstance(data.get("event"), str):
            raise ValueError("not an audit record")
        details = data.get("details")
        radiologist = data.get("radiologist")
        return cls(data["time"], data["event"], str(data.get("user", "")), str(data.get("study_uid", "")),
                   str(data.get("outcome", "")), dict(details) if isinstance(details, dict) else {},
                   str(radiologist) if radiologist is not None else None)

    @property
    def when(self) -> datetime:
        """``time`` as an aware datetime."""
        return datetime.fromisoformat(self.time)

    def line(self) -> str:
        """Human-readable: time, user, event, outcome, study and the details."""
        who = self.user + (f" (signed as {self.radiologist})" if self.radiologist else "")
        extra = ", ".join(f"{k}={_short(v)}" for k, v in self.details.items())
        study = f" study {self.study_uid}" if self.study_uid else ""
        return f"{self.time}  {who:<16} {self.event:<15} {self.outcome:<9}{study}{'  ' + extra if extra else ''}"


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def os_user() -> str:
    """The operating-system user running the application ("unknown" if the system cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def audit_path(settings: Settings | None = None) -> Path:
    """The audit trail file in the user data dir."""
    return (settings or settings_now()).data_dir / AUDIT_FILE


def _clean(details: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe details without anything keyed like a patient attribute (a guard against mistakes)."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if key.lower() in _PATIENT_KEYS:
            logger.warning("audit: dropped detail %r (patient data never goes in the audit trail)", key)
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[key] = value
    return out


def record(event: str, *, study_uid: str = "", outcome: str = "ok", radiologist: str | None = None,
           settings: Settings | None = None, **details: Any) -> AuditEvent | None:
    """Append one event to the audit trail; the event, or None if it could not be written (logged)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    entry = AuditEvent(datetime.now(UTC).isoformat(), event, os_user(), study_uid or "", outcome,
                       _clean(details), radiologist)
    data = (json.dumps(entry.to_dict(), default=str, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        path = audit_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, data)  # one write per record: O_APPEND keeps lines whole between processes
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        logger.error("could not write the audit trail (%s): %s", event, exc)
        return None
    logger.debug("audit: %s %s", event, outcome)
    return entry


def read_events(since: datetime | None = None, settings: Settings | None = None,
                path: Path | None = None) -> list[AuditEvent]:
    """The recorded events (oldest first), from ``since`` on; damaged lines are skipped with a warning."""
    file = path or audit_path(settings)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out: list[AuditEvent] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = AuditEvent.from_dict(json.loads(line))
            when = event.when
        except (ValueError, TypeError, AttributeError) as exc:
            logger.warning("audit trail line %d is damaged, skipped: %s", number, exc)
            continue
        if since is None or when >= since:
            out.append(event)
    return out


def parse_since(text: str) -> datetime:
    """``--since`` value: an ISO date or date-time; a naive one is taken as UTC. ``ValueError`` otherwise."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since {text!r} is not a date (YYYY-MM-DD) or ISO date-time") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
