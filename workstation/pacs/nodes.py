"""PACS node configuration: the peers we query and send to, and our own AE.

Settings keep this as plain data (``Settings.pacs``, a dict) and this module
validates it on use, so ``workstation.settings`` stays at the bottom of the
layers and loading settings never imports the PACS stack. Secrets (password,
bearer token) are ``SecretStr``: they never show in a ``repr`` or a log line,
and ``to_settings_value`` writes them back in clear only for ``settings.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer, field_validator

from workstation.pacs.errors import NodeConfigError

logger = logging.getLogger(__name__)

RetrieveMethod = Literal["get", "move", "wado"]


def _check_ae_title(value: str) -> str:
    """An AE title: 1-16 characters of the default repertoire, no backslash, not only spaces."""
    value = value.strip()
    if not value:
        raise ValueError("an AE title cannot be empty")
    if len(value) > 16:
        raise ValueError(f"AE title {value!r} is longer than 16 characters")
    if "\\" in value or any(ord(c) < 32 or ord(c) > 126 for c in value):
        raise ValueError(f"AE title {value!r} holds a backslash or a non-printable character")
    return value


class PacsNode(BaseModel):
    """One remote PACS: its DIMSE address and/or its DICOMweb base URL."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, description="label shown in the window and used by --node")
    ae_title: str = Field(default="", description="called AE title (DIMSE)")
    host: str = ""
    port: int = Field(default=104, ge=1, le=65535)
    dicomweb_url: str = Field(default="", description="DICOMweb base, e.g. http://pacs:8042/dicom-web")
    username: str = Field(default="", description="HTTP basic auth user (DICOMweb)")
    password: SecretStr | None = None
    token: SecretStr | None = Field(default=None, description="HTTP bearer token (DICOMweb)")
    timeout_s: float = Field(default=30.0, gt=0, description="connect/answer timeout in seconds")
    retrieve_method: RetrieveMethod = "get"

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _check_ae_title(v) if v.strip() else ""

    @field_validator("dicomweb_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"DICOMweb URL {v!r} must start with http:// or https://")
        return v

    @field_serializer("password", "token", when_used="json")
    def _reveal(self, v: SecretStr | None) -> str | None:
        return v.get_secret_value() if v is not None else None

    @property
    def has_dimse(self) -> bool:
        """True when AE title, host and port are set."""
        return bool(self.ae_title and self.host)

    @property
    def has_dicomweb(self) -> bool:
        """True when a DICOMweb base URL is set."""
        return bool(self.dicomweb_url)

    def describe(self) -> str:
        """``name (AE@host:port, url)`` for messages (no credentials)."""
        parts = []
        if self.has_dimse:
            parts.append(f"{self.ae_title}@{self.host}:{self.port}")
        if self.has_dicomweb:
            parts.append(self.dicomweb_url)
        return f"{self.name} ({', '.join(parts) or 'no address'})"


class LocalAE(BaseModel):
    """Our own application entity: the AE title we call with and the storage listener's port."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ae_title: str = "RADWORKSTATION"
    port: int = Field(default=11112, ge=0, le=65535, description="storage listener port (0: any free port)")
    bind_address: str = Field(default="0.0.0.0",
                              description="interface the listener binds; 127.0.0.1 keeps it local to this machine")
    require_known_callers: bool = Field(
        default=True, description="accept pushes only from the AE titles of configured nodes")
    max_pdu: int = Field(default=1048576, ge=0, description="largest PDU we receive (0: no limit)")

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _check_ae_title(v)


class PacsConfig(BaseModel):
    """Everything PACS-related in the settings (``Settings.pacs``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    local: LocalAE = Field(default_factory=LocalAE)
    nodes: list[PacsNode] = Field(default_factory=list)
    default_node: str = ""
    storage_dir: Path | None = Field(default=None, description="where received files go (default: data dir/pacs)")
    listen_on_start: bool = False
    analyze_on_arrival: bool = False

    @classmethod
    def from_value(cls, value: Any) -> PacsConfig:
        """Validate ``Settings.pacs`` (a dict, or already a ``PacsConfig``); clear error when invalid."""
        if isinstance(value, PacsConfig):
            return value
        try:
            return cls.model_validate(value or {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise NodeConfigError(f"PACS settings are invalid: {problems}") from None

    @classmethod
    def from_settings(cls, settings: Any) -> PacsConfig:
        """The PACS configuration of a ``Settings`` object (empty when it has no ``pacs`` field)."""
        return cls.from_value(getattr(settings, "pacs", None))

    def to_settings_value(self) -> dict[str, Any]:
        """A JSON-ready dict for ``Settings.pacs`` (secrets included: it is written to settings.json)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def node(self, name: str | None = None) -> PacsNode:
        """A node by name; ``None`` means the default node (or the only one)."""
        if not self.nodes:
            raise NodeConfigError("no PACS node is configured (add one to the 'pacs' section of settings.json, "
                                  "or give --host/--port/--aet or --url)")
        wanted = name or self.default_node
        if not wanted:
            if len(self.nodes) == 1:
                return self.nodes[0]
            raise NodeConfigError(f"several PACS nodes are configured ({', '.join(n.name for n in self.nodes)}); "
                                  "pick one by name")
        for n in self.nodes:
            if n.name == wanted:
                return n
        raise NodeConfigError(f"no PACS node named {wanted!r} (configured: {', '.join(n.name for n in self.nodes)})")

    def known_callers(self) -> list[str]:
        """The AE titles the listener accepts pushes from (those of the configured nodes)."""
        return sorted({n.ae_title for n in self.nodes if n.ae_title})

    def storage_path(self, data_dir: Path) -> Path:
        """Folder that received and retrieved files are written to."""
        return self.storage_dir if self.storage_dir is not None else data_dir / "pacs"
