"""PACS node configuration: the peers we query and send to, and our own AE.

Settings keep this as plain data (``Settings.pacs``, a dict) and this module
validates it on use, so ``workstation.settings`` stays at the bottom of the
layers and loading settings never imports the PACS stack. Secrets (password,
bearer token) are ``SecretStr``: they never show in a ``repr`` or a log line,
and ``to_settings_value`` writes them back in clear only for ``settings.json``.

TLS (``tls_*`` keys) is configured per node (DICOM TLS with ``tls: true``;
HTTPS with an ``https://`` DICOMweb URL; both use the node's CA bundle and
client certificate) and for our listener (``LocalAE``); ``workstation.pacs.tls``
turns these settings into SSL contexts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

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


def _expand(value: Path | None) -> Path | None:
    """``~`` in a certificate or key path means the user's home folder."""
    return value.expanduser() if value is not None else None


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
    tls: bool = Field(default=False, description="DICOM TLS for every DIMSE operation; never falls back to plain text")
    tls_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle the peer's certificate must chain to (DICOM TLS and https://); "
                                  "default: the system's trust store")
    tls_cert_file: Path | None = Field(default=None, description="our client certificate (PEM), if the peer asks")
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM); default: in tls_cert_file")
    tls_verify_hostname: bool = Field(
        default=True, description="the peer's certificate must name host (or the URL's host); turn off only for a "
                                  "peer whose certificate names another host")

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _check_ae_title(v) if v.strip() else ""

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _path(cls, v: Path | None) -> Path | None:
        return _expand(v)

    @model_validator(mode="after")
    def _tls(self) -> PacsNode:
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file is set without tls_cert_file")
        if self.tls and self.dicomweb_url.startswith("http://"):
            raise ValueError(f"node {self.name!r} requires TLS (tls: true) but its DICOMweb URL is plain http://; "
                             "use https://")
        return self

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

    @property
    def uses_https(self) -> bool:
        """True when the DICOMweb base URL is ``https://``."""
        return self.dicomweb_url.startswith("https://")

    def describe(self) -> str:
        """``name (AE@host:port, url)`` for messages (no credentials); DICOM TLS says so."""
        parts = []
        if self.has_dimse:
            parts.append(f"{self.ae_title}@{self.host}:{self.port}" + (" DICOM TLS" if self.tls else ""))
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
    tls: bool = Field(default=False, description="the listener speaks DICOM TLS only (plain-text callers fail)")
    tls_cert_file: Path | None = Field(default=None, description="the listener's certificate (PEM); needed with tls")
    tls_key_file: Path | None = Field(default=None, description="its private key (PEM); default: in tls_cert_file")
    tls_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that callers' client certificates must chain to (checked when a "
                                  "caller presents one)")
    tls_require_client_cert: bool = Field(
        default=False, description="refuse callers without a client certificate signed by tls_ca_file")

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _check_ae_title(v)

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _path(cls, v: Path | None) -> Path | None:
        return _expand(v)

    @model_validator(mode="after")
    def _tls(self) -> LocalAE:
        if self.tls and self.tls_cert_file is None:
            raise ValueError("the listener has tls: true but no tls_cert_file (its certificate)")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file is set without tls_cert_file")
        if self.tls_require_client_cert and self.tls_ca_file is None:
            raise ValueError("tls_require_client_cert needs tls_ca_file (the CA that signs callers' certificates)")
        return self


class PacsConfig(BaseModel):
    """Everything PACS-related in the settings (``Settings.pacs``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    local: LocalAE = Field(default_factory=LocalAE)
    nodes: list[PacsNode] = Field(default_factory=list)
    default_node: str = ""
    storage_dir: Path | None = Field(default=None, description="where received files go (default: data dir/pacs)")
    listen_on_start: bool = False
    analyze_on_arrival: bool = False
    query_priors: bool = Field(
        default=False, description="workstation report without --prior also asks the nodes for the patient's "
                                   "earlier studies and retrieves the newest when it is newer than the index's")

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
