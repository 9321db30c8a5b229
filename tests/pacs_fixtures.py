"""Real peers for the PACS tests and the retrieve benchmark: Orthanc, misbehaving SCPs, a private network.

- ``private_network()`` moves the calling thread (pytest's main thread) into a new,
  empty network namespace with only ``lo`` up, and back afterwards. Processes and
  threads started inside inherit it, so Orthanc (which listens on all interfaces
  and has no bind-address option in 1.10), dcmtk and our own sockets can reach
  each other on 127.0.0.1 and nothing else can reach them. Needs CAP_SYS_ADMIN;
  without it the tests fall back to 127.0.0.1 with Orthanc locked down (see
  ``Orthanc.config``).
- ``Orthanc``: a throw-away Orthanc (Debian packages ``orthanc``,
  ``orthanc-dicomweb``) with a temporary config and storage, stopped by PID.
- ``pacs_ready_copy``: the shared real CT has empty Study/Series/SOP Instance
  UIDs (a PACS cannot store that); the copy fills them (SOP Instance UID from the
  file meta, study/series UIDs derived from the folder) and keeps every other
  byte, pixels included.
- ``AbortingGetSCP``: a pynetdicom Q/R SCP that serves a folder by C-GET and
  aborts the association after N instances (first association only).
- ``SilentServer``: accepts TCP connections and never answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                              "/usr/lib/orthanc/libOrthancDicomWeb.so")
CLONE_NEWNET = 0x40000000
ORTHANC_USER, ORTHANC_PASSWORD = "pacstest", "pacstest-secret"


def dicomweb_plugin() -> str | None:
    """Path of the Orthanc DICOMweb plugin, or None."""
    for p in DICOMWEB_PLUGIN_CANDIDATES:
        if Path(p).exists():
            return p
    found = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False)
    return next((line for line in found.stdout.splitlines() if line.endswith(".so")), None)


def have_orthanc() -> bool:
    """Orthanc and its DICOMweb plugin are installed."""
    return Path(ORTHANC).exists() and dicomweb_plugin() is not None


def free_port() -> int:
    """A TCP port nothing listens on right now (bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_network() -> Iterator[bool]:
    """Run the calling thread in a new network namespace with only loopback; yields False if not permitted.

    ``PACS_TESTS_NO_NETNS=1`` skips the namespace (to exercise the 127.0.0.1 fallback).
    """
    if os.environ.get("PACS_TESTS_NO_NETNS") == "1":
        yield False
        return
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            yield False
            return
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            # Without `ip`, loopback stays down: go back rather than test against nothing.
            libc.setns(original, CLONE_NEWNET)
            yield False
            return
        try:
            yield True
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
    finally:
        os.close(original)


def pacs_ready_copy(src: Path, dst: Path, *, patient_name: str = "Pacs^Test", patient_id: str = "PACSTEST01",
                    accession: str = "ACC0001") -> list[Path]:
    """Copy a folder of DICOM files, filling empty UIDs and the patient/accession fields a query needs."""
    dst.mkdir(parents=True, exist_ok=True)
    study = generate_uid(entropy_srcs=[str(src), "study"])
    series = generate_uid(entropy_srcs=[str(src), "series"])
    out = []
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        fm = ds.file_meta
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or fm.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.get("SOPClassUID") or fm.MediaStorageSOPClassUID
        ds.StudyInstanceUID = ds.get("StudyInstanceUID") or study
        ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or series
        ds.PatientName, ds.PatientID, ds.AccessionNumber = patient_name, patient_id, accession
        ds.SeriesNumber = ds.get("SeriesNumber") or 1
        target = dst / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


class Orthanc:
    """A private Orthanc: temporary config and storage, HTTP + DICOM on free ports, stopped by PID."""

    def __init__(self, workdir: Path, *, aet: str = "ORTHANCTEST", modalities: dict[str, tuple[str, int]] | None = None,
                 locked_down: bool = False) -> None:
        self.workdir = workdir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = modalities or {}
        self.locked_down = locked_down
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """REST API base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb base URL."""
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        """Orthanc's configuration. Locked down (no namespace): only known AEs from 127.0.0.1, no open store."""
        storage = self.workdir / "storage"
        return {
            "Name": "pacs-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "DicomCheckCalledAet": True, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True, "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
            "Plugins": [dicomweb_plugin()], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name.lower(): {"AET": name, "Host": host, "Port": port}
                                for name, (host, port) in self.modalities.items()},
            "DicomAlwaysAllowStore": not self.locked_down, "DicomCheckModalityHost": self.locked_down,
            "DicomAssociationCloseDelay": 0, "DicomScuTimeout": 10, "DicomScpTimeout": 30,
            "SynchronousCMove": True, "StableAge": 1, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
            "SaveJobs": False, "HttpThreadsCount": 8, "MaximumPduLength": 131072, "DeidentifyLogs": True,
            "ConcurrentJobs": 1, "LuaScripts": [],
        }

    def start(self, timeout_s: float = 20.0) -> Orthanc:
        """Write the config, start Orthanc, wait until ``/system`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1), encoding="utf-8")
        log = (self.workdir / "orthanc.log").open("wb")
        self.process = subprocess.Popen([ORTHANC, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.process.returncode}): {self.log_tail()}")
            try:
                self.rest("GET", "/system")
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s: {self.log_tail()}")

    def stop(self) -> None:
        """Stop Orthanc by PID (SIGTERM, then SIGKILL after 10 s)."""
        p = self.process
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def kill(self) -> None:
        """Kill Orthanc at once (a server dropping mid-transfer)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_tail(self, n: int = 3000) -> str:
        """The end of Orthanc's log."""
        path = self.workdir / "orthanc.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def rest(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Any:
        """Call the REST API (basic auth); JSON answers are decoded."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        token = b64encode(f"{ORTHANC_USER}:{ORTHANC_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        if content_type:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=30) as rsp:
            data = rsp.read()
            if rsp.headers.get_content_type() == "application/json":
                return json.loads(data)
            return data

    def upload(self, paths: list[Path]) -> list[str]:
        """POST each file to ``/instances``; returns Orthanc's instance ids."""
        return [self.rest("POST", "/instances", p.read_bytes(), "application/dicom")["ID"] for p in paths]

    def sop_uids(self) -> set[str]:
        """SOP Instance UIDs of every stored instance."""
        found = self.rest("POST", "/tools/find", json.dumps(
            {"Level": "Instance", "Query": {}, "Expand": True}).encode(), "application/json")
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}

    def clear(self) -> None:
        """Delete every patient."""
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (an association that times out)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.sock.close()
        for c in self.conns:
            c.close()
        self._thread.join(2)


class AbortingGetSCP:
    """A C-GET (Study Root) SCP serving a list of files, aborting its first C-GET after N instances."""

    def __init__(self, files: list[Path], abort_after: int, aet: str = "FLAKYPACS") -> None:
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
        )

        self.files = files
        self.abort_after = abort_after
        self.gets = 0
        self.aet = aet
        ae = AE(ae_title=aet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1",
                                                          "1.2.840.10008.1.2"], scu_role=True, scp_role=True)
        self.port = free_port()
        handlers = [(evt.EVT_C_GET, self._on_get), (evt.EVT_C_FIND, self._on_find)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        self.ae = ae

    def _matching(self, ident: Any) -> list[pydicom.Dataset]:
        wanted = ident.get("SOPInstanceUID")
        wanted_set = set(wanted) if isinstance(wanted, list | pydicom.multival.MultiValue) else (
            {wanted} if wanted else set())
        out = []
        for f in self.files:
            ds = pydicom.dcmread(f)
            if not wanted_set or ds.SOPInstanceUID in wanted_set:
                out.append(ds)
        return out

    def _on_find(self, event: Any) -> Iterator[Any]:
        ident = event.identifier
        for ds in self._matching(ident):
            rsp = pydicom.Dataset()
            rsp.QueryRetrieveLevel = ident.QueryRetrieveLevel
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                        "InstanceNumber", "Modality", "SeriesNumber"):
                if key in ident:
                    setattr(rsp, key, ds.get(key, ""))
            rsp.NumberOfSeriesRelatedInstances = len(self.files)
            yield 0xFF00, rsp
            if ident.QueryRetrieveLevel == "SERIES":
                break

    def _on_get(self, event: Any) -> Iterator[Any]:
        self.gets += 1
        matches = self._matching(event.identifier)
        yield len(matches)
        for n, ds in enumerate(matches):
            if self.gets == 1 and n == self.abort_after:
                event.assoc.abort()
                return
            yield 0xFF00, ds

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()


# --- the shared pytest fixture ------------------------------------------------------------
CT_FOLDER = "ct_abdomen_totalseg/example_ct_dicom"
OUR_AET, STORESCU_AET = "WSTEST", "STORESCU"


@dataclass
class PacsEnv:
    """A running Orthanc holding the real CT, and our side's configuration for it."""

    isolated: bool
    orthanc: Orthanc
    original: Path
    files: list[Path]
    study_uid: str
    series_uid: str
    node: Any
    local: Any

    def node_with(self, **changes: Any) -> Any:
        """The node with some fields changed (validated)."""
        return type(self.node).model_validate({**self.node.model_dump(), **changes})

    def local_with(self, **changes: Any) -> Any:
        """Our AE with some fields changed (validated)."""
        return type(self.local).model_validate({**self.local.model_dump(), **changes})


@contextlib.contextmanager
def orthanc_env(shared_data: Path, work: Path) -> Iterator[PacsEnv]:
    """Private network (when permitted) + Orthanc with the real CT uploaded over REST."""
    from workstation.pacs.nodes import LocalAE, PacsNode

    with private_network() as isolated:
        original = shared_data / CT_FOLDER
        files = pacs_ready_copy(original, work / "ready")
        listener_port = free_port()
        orthanc = Orthanc(work / "orthanc", modalities={OUR_AET: ("127.0.0.1", listener_port),
                                                        STORESCU_AET: ("127.0.0.1", free_port())},
                          locked_down=not isolated)
        orthanc.start()
        try:
            orthanc.upload(files)
            head = pydicom.dcmread(files[0], stop_before_pixels=True)
            node = PacsNode(name="orthanc", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                            dicomweb_url=orthanc.dicomweb_url, username=ORTHANC_USER,
                            password=ORTHANC_PASSWORD, timeout_s=10)  # type: ignore[arg-type]
            local = LocalAE(ae_title=OUR_AET, port=listener_port, bind_address="127.0.0.1")
            yield PacsEnv(isolated, orthanc, original, files, str(head.StudyInstanceUID),
                          str(head.SeriesInstanceUID), node, local)
        finally:
            orthanc.stop()


# --- TLS: a throw-away PKI, and an Orthanc speaking DICOM TLS and HTTPS --------------------------
@dataclass
class Pki:
    """Certificates the TLS tests make with the ``openssl`` command (RSA 2048, PEM, valid two days).

    ``server_*`` names localhost and 127.0.0.1 and is signed by ``ca`` (Orthanc's DICOM TLS and HTTPS,
    and our listener); ``client_*`` is our client certificate, also from ``ca``; ``rogue_*`` names the
    same hosts but comes from ``other_ca``; ``expired_cert`` is ``server_key``'s certificate, expired.
    """

    folder: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server_pem: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    rogue_cert: Path
    rogue_key: Path
    expired_cert: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN=Workstation test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _make_leaf(folder: Path, name: str, ca: tuple[Path, Path], *, key: Path | None = None, days: int = 2,
               serial: int = 1) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 signed by ``ca``; ``days`` < 0 makes an expired one."""
    cert = folder / f"{name}.crt"
    csr = folder / f"{name}.csr"
    if key is None:
        key = folder / f"{name}.key"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    else:
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    ext = folder / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", str(serial),
             "-days", str(days), "-sha256", "-extfile", ext, "-out", cert)
    return cert, key


def make_pki(folder: Path) -> Pki:
    """A test CA with server and client certificates, another CA with a rogue server certificate, an expired one."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(folder, "ca")
    other = _make_ca(folder, "other-ca")
    server = _make_leaf(folder, "localhost", ca, serial=2)
    client = _make_leaf(folder, "client", ca, serial=3)
    rogue = _make_leaf(folder, "rogue", other, serial=4)
    expired, _ = _make_leaf(folder, "expired", ca, key=server[1], days=-1, serial=5)
    pem = folder / "localhost-with-key.pem"
    pem.write_bytes(server[1].read_bytes() + server[0].read_bytes())
    return Pki(folder, ca[0], ca[1], server[0], server[1], pem, client[0], client[1], other[0], rogue[0], rogue[1],
               expired)


class TlsProxy:
    """A TLS front for a plain TCP port on 127.0.0.1: the HTTPS server in front of Orthanc's DICOMweb.

    Orthanc 1.10.1's own HTTPS (civetweb built against OpenSSL 3, as Debian 12 ships it) crashes with
    SIGSEGV right after the first TLS handshake, so the tests terminate TLS here, as a site's reverse
    proxy would: a real TLS server (OpenSSL through ``ssl``, TLS 1.2+) with ``cert``/``key``, asking for
    a client certificate from ``client_ca`` when given, then bytes forwarded both ways to the port.
    """

    def __init__(self, target_port: int, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        import ssl

        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.context.load_verify_locations(cafile=str(client_ca))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.handshake_failures: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import select
        import ssl

        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.handshake_failures.append(str(exc))
            conn.close()
            return
        try:
            with tls, socket.create_connection(("127.0.0.1", self.target_port), timeout=10) as plain:
                tls.settimeout(60)
                plain.settimeout(60)
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, plain], [], [], 60)[0]
                    if not ready:
                        return
                    for src in ready:
                        data = src.recv(1 << 16)
                        if not data:
                            return
                        (plain if src is tls else tls).sendall(data)
        except OSError:
            return

    def close(self) -> None:
        """Stop accepting (connections in progress end with their peers)."""
        self.sock.close()
        self._thread.join(2)


class TlsOrthanc(Orthanc):
    """An Orthanc whose DICOM port speaks TLS only, requiring a client certificate from the test CA, and
    which calls ``tls_modalities`` (C-MOVE destinations) with DICOM TLS; its DICOMweb is reached over
    HTTPS through a ``TlsProxy`` that also requires a client certificate (REST for the fixture stays on
    the plain, local-only HTTP port)."""

    def __init__(self, workdir: Path, pki: Pki, *, tls_modalities: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.pki = pki
        self.tls_modalities = tls_modalities
        self.proxy: TlsProxy | None = None

    @property
    def https_port(self) -> int:
        """Port of the HTTPS front."""
        assert self.proxy is not None, "start() first"
        return self.proxy.port

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb base URL (HTTPS)."""
        return f"https://127.0.0.1:{self.https_port}/dicom-web"

    def config(self) -> dict[str, Any]:
        """The base configuration plus DICOM TLS with client certificates required."""
        cfg = super().config()
        cfg.update({
            "DicomTlsEnabled": True, "DicomTlsCertificate": str(self.pki.server_cert),
            "DicomTlsPrivateKey": str(self.pki.server_key), "DicomTlsTrustedCertificates": str(self.pki.ca),
            "DicomTlsRemoteCertificateRequired": True,
        })
        for name in self.tls_modalities:
            cfg["DicomModalities"][name.lower()]["UseDicomTls"] = True
        return cfg

    def start(self, timeout_s: float = 20.0) -> TlsOrthanc:
        """Start Orthanc, then its HTTPS front."""
        super().start(timeout_s)
        self.proxy = TlsProxy(self.http_port, self.pki.server_cert, self.pki.server_key, self.pki.ca)
        return self

    def stop(self) -> None:
        """Stop the HTTPS front and Orthanc."""
        if self.proxy is not None:
            self.proxy.close()
        super().stop()


@dataclass
class TlsPacsEnv(PacsEnv):
    """``PacsEnv`` for a ``TlsOrthanc``: ``node`` uses DICOM TLS and HTTPS, ``local`` is a TLS listener."""

    pki: Pki


@contextlib.contextmanager
def orthanc_tls_env(shared_data: Path, work: Path, *, n_files: int = 20) -> Iterator[TlsPacsEnv]:
    """Private network (when permitted) + a ``TlsOrthanc`` holding the real CT (its first ``n_files`` slices)."""
    from workstation.pacs.nodes import LocalAE, PacsNode

    with private_network() as isolated:
        original = shared_data / CT_FOLDER
        pki = make_pki(work / "pki")
        files = pacs_ready_copy(original, work / "ready")[:n_files]
        listener_port = free_port()
        orthanc = TlsOrthanc(work / "orthanc", pki, tls_modalities=(OUR_AET,),
                             modalities={OUR_AET: ("127.0.0.1", listener_port),
                                         STORESCU_AET: ("127.0.0.1", free_port())},
                             locked_down=not isolated)
        orthanc.start()
        try:
            orthanc.upload(files)
            head = pydicom.dcmread(files[0], stop_before_pixels=True)
            node = PacsNode(name="orthanc-tls", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                            dicomweb_url=orthanc.dicomweb_url, username=ORTHANC_USER,
                            password=ORTHANC_PASSWORD, timeout_s=10, tls=True,  # type: ignore[arg-type]
                            tls_ca_file=pki.ca, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key)
            local = LocalAE(ae_title=OUR_AET, port=listener_port, bind_address="127.0.0.1", tls=True,
                            tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_ca_file=pki.ca,
                            tls_require_client_cert=True)
            yield TlsPacsEnv(isolated, orthanc, original, files, str(head.StudyInstanceUID),
                             str(head.SeriesInstanceUID), node, local, pki)
        finally:
            orthanc.stop()
