"""DICOM TLS and HTTPS against a real Orthanc, dcmtk and our listener, with certificates made by ``openssl``.

The fixture makes a test CA (server and client certificates for 127.0.0.1 and
localhost), a second CA with a "rogue" server certificate, and an expired
server certificate; Orthanc's DICOM port speaks TLS only and requires our
client certificate, and calls our TLS listener for C-MOVE; its DICOMweb is
served over HTTPS (through a TLS front: Orthanc 1.10.1's own HTTPS crashes
with OpenSSL 3, see ``tests.pacs_fixtures.TlsProxy``), which also requires a
client certificate. Every operation (C-ECHO, C-FIND, C-GET both ways, C-MOVE,
C-STORE, QIDO, WADO, STOW) works over TLS; every way TLS can fail gives a
``PacsTlsError`` naming the node and the reason, and a TLS node never sends a
byte in plain text.
"""

from __future__ import annotations

import ast
import logging
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.pacs_fixtures import (
    STORESCU_AET,
    Pki,
    TlsPacsEnv,
    TlsProxy,
    have_orthanc,
    make_pki,
    orthanc_tls_env,
)
from tests.requirements import PACS_TOOLS_FIX, requires, requires_program
from workstation.pacs import tls
from workstation.pacs.dicomweb import DicomWebClient
from workstation.pacs.dimse import DimseClient
from workstation.pacs.errors import NodeConfigError, PacsTlsError
from workstation.pacs.listener import Arrival, StorageListener
from workstation.pacs.nodes import LocalAE, PacsConfig, PacsNode
from workstation.pacs.query import StudyQuery
from workstation.pacs.retrieve import retrieve_study
from workstation.pacs.storage import InstanceWriter

REPO = Path(__file__).resolve().parents[1]
N_FILES = 6
CT = ["1.2.840.10008.5.1.4.1.1.2"]
OPENSSL = requires_program("openssl", "apt-get install openssl")
ORTHANC = [pytest.mark.needs_tool, OPENSSL,
           requires(have_orthanc(), "Orthanc + DICOMweb plugin not installed", PACS_TOOLS_FIX)]
DCMTK = requires_program("storescu", PACS_TOOLS_FIX)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def env(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPacsEnv]:
    with orthanc_tls_env(shared_data, tmp_path_factory.mktemp("pacs-tls"), n_files=N_FILES) as e:
        yield e


def tls_node(pki: Pki, port: int, **changes: Any) -> PacsNode:
    """A DICOM TLS node on 127.0.0.1 trusting the test CA, with our client certificate."""
    fields: dict[str, Any] = {"name": "tlspeer", "ae_title": "WSTEST", "host": "127.0.0.1", "port": port,
                              "timeout_s": 5, "tls": True, "tls_ca_file": pki.ca, "tls_cert_file": pki.client_cert,
                              "tls_key_file": pki.client_key}
    return PacsNode.model_validate({**fields, **changes})


def tls_local(pki: Pki, **changes: Any) -> LocalAE:
    """Our AE as a TLS listener on a free port of 127.0.0.1, requiring client certificates from the test CA."""
    fields: dict[str, Any] = {"ae_title": "WSTEST", "port": 0, "bind_address": "127.0.0.1", "tls": True,
                              "tls_cert_file": pki.server_cert, "tls_key_file": pki.server_key,
                              "tls_ca_file": pki.ca, "tls_require_client_cert": True}
    return LocalAE.model_validate({**fields, **changes})


def caller() -> LocalAE:
    """The calling side of a client test (its own listener settings do not matter)."""
    return LocalAE(ae_title=STORESCU_AET, port=0, bind_address="127.0.0.1")


def assert_tls_error(info: pytest.ExceptionInfo[PacsTlsError], node: PacsNode, *needles: str) -> None:
    message = str(info.value)
    assert node.name in message, message
    for needle in needles:
        assert needle in message, message


class RecordingServer:
    """A plain TCP server that records the first bytes of each connection, then hangs up (a plain-text peer
    that does not understand what it got): proves what a client sent before anything was answered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.first_bytes: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.first_bytes.append(conn.recv(1 << 16))
                except OSError:
                    self.first_bytes.append(b"")

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2)


# --- settings and contexts (no PACS) -----------------------------------------------------------
def test_tls_settings_are_validated() -> None:
    bad = [
        {"nodes": [{"name": "a", "tls_key_file": "/k.pem"}]},
        {"nodes": [{"name": "b", "tls": True, "dicomweb_url": "http://pacs/dicom-web"}]},
        {"local": {"tls": True}},
        {"local": {"tls": True, "tls_cert_file": "/c.pem", "tls_require_client_cert": True}},
    ]
    for value in bad:
        with pytest.raises(NodeConfigError, match="PACS settings are invalid"):
            PacsConfig.from_value(value)
    config = PacsConfig.from_value({"nodes": [{"name": "c", "ae_title": "C", "host": "h", "tls": True,
                                               "tls_ca_file": "~/ca.pem", "dicomweb_url": "https://h/dicom-web"}]})
    node = config.node()
    assert node.tls_ca_file == Path.home() / "ca.pem" and node.tls_verify_hostname and node.uses_https
    assert "DICOM TLS" in node.describe()
    assert PacsConfig.from_value(config.to_settings_value()) == config  # round trip through settings.json


@OPENSSL
def test_contexts_verify_by_default_and_need_tls_1_2(pki: Pki, tmp_path: Path) -> None:
    node = tls_node(pki, 104)
    context = tls.client_context(node)
    assert (context.verify_mode, context.check_hostname, context.minimum_version) == (
        ssl.CERT_REQUIRED, True, ssl.TLSVersion.TLSv1_2)
    assert tls.tls_args(node) == (context, "127.0.0.1") and tls.tls_args(node.model_copy(update={"tls": False})) is None
    loose = tls.client_context(tls_node(pki, 104, tls_verify_hostname=False))
    assert (loose.verify_mode, loose.check_hostname) == (ssl.CERT_REQUIRED, False)  # the chain is still checked
    server = tls.server_context(tls_local(pki))
    assert (server.verify_mode, server.minimum_version) == (ssl.CERT_REQUIRED, ssl.TLSVersion.TLSv1_2)
    assert tls.server_context(tls_local(pki, tls_require_client_cert=False)).verify_mode == ssl.CERT_OPTIONAL
    with pytest.raises(NodeConfigError, match=r"tlspeer.*tls_ca_file .*does not exist"):
        tls.client_context(tls_node(pki, 104, tls_ca_file=tmp_path / "missing.pem"))
    with pytest.raises(NodeConfigError, match=r"tlspeer.*does the key belong to the certificate"):
        tls.client_context(tls_node(pki, 104, tls_key_file=pki.rogue_key))
    with pytest.raises(NodeConfigError, match="storage listener"):
        StorageListener(tls_local(pki, tls_cert_file=tmp_path / "none.crt"), tmp_path, None).start()


def test_every_connection_goes_through_the_tls_factory() -> None:
    """Each place in workstation/pacs that opens an association, a socket to a peer, an HTTP request or a server
    is one of these, and the ones that carry data take the node's TLS: a new one must be added here, on purpose."""
    allowed = {
        ("association.py", "make_ae", "AE"),  # the only AE of a client; associate() passes tls_args
        ("association.py", "associate", "associate"),  # pynetdicom's AE.associate, with tls_args
        ("association.py", "_probe", "create_connection"),  # diagnosis only: no data sent
        ("association.py", "_still_listening", "create_connection"),
        ("fastget.py", "open", "create_connection"),  # wrapped by tls.wrap_client when node.tls
        ("tls.py", "handshake_problem", "create_connection"),
        ("tls.py", "speaks_tls", "create_connection"),
        ("listener.py", "start", "AE"),
        ("listener.py", "start", "start_server"),  # ssl_context from tls.server_context
        ("dicomweb.py", "__init__", "build_opener"),  # HTTPSHandler with tls.client_context
        ("dicomweb.py", "_open", "open"),
    }
    names = {"AE", "associate", "create_connection", "socket", "urlopen", "start_server", "build_opener",
             "HTTPSConnection", "HTTPConnection", "open"}
    found: set[tuple[str, str, str]] = set()
    keywords: dict[tuple[str, str, str], set[str]] = {}
    for path in sorted((REPO / "workstation" / "pacs").glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for call in ast.walk(func):
                if not isinstance(call, ast.Call):
                    continue
                name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
                if name not in names or (name == "open" and path.name != "dicomweb.py"):
                    continue
                if name == "socket" and not (isinstance(call.func, ast.Attribute) and
                                             getattr(call.func.value, "id", "") == "socket"):
                    continue
                if name == "associate" and not isinstance(call.func, ast.Attribute):
                    continue  # our factory, association.associate (dimse.py calls it for every operation)
                key = (path.name, func.name, name)
                found.add(key)
                keywords.setdefault(key, set()).update(k.arg or "" for k in call.keywords)
    assert found == allowed
    assert "tls_args" in keywords[("association.py", "associate", "associate")]
    assert "ssl_context" in keywords[("listener.py", "start", "start_server")]
    fastget = (REPO / "workstation" / "pacs" / "fastget.py").read_text()
    assert "tls.wrap_client(self.sock, self.node" in fastget


# --- every operation over TLS ------------------------------------------------------------------
class TestOverTls:
    pytestmark = ORTHANC

    def test_echo_find_and_qido(self, env: TlsPacsEnv) -> None:
        client = DimseClient(env.node, env.local)
        assert client.echo() < 5
        studies = client.find_studies(StudyQuery(patient_name="pacs"))
        assert [s.study_uid for s in studies] == [env.study_uid]
        assert len(client.find_instances(env.study_uid, env.series_uid)) == N_FILES
        web = DicomWebClient(env.node).search_studies(StudyQuery(patient_name="pacs"))
        assert [(s.study_uid, s.instance_count) for s in web] == [(s.study_uid, s.instance_count) for s in studies]

    def test_cget_lean_and_pynetdicom(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        client = DimseClient(env.node, env.local)
        lean, classic = InstanceWriter(tmp_path / "lean"), InstanceWriter(tmp_path / "classic")
        client.get(lean, env.study_uid, env.series_uid, sop_classes=CT)
        client.get(classic, env.study_uid, env.series_uid, sop_classes=CT, fast=False)
        assert len(lean.received) == len(classic.received) == N_FILES
        for a, b in zip(sorted(lean.paths), sorted(classic.paths), strict=True):
            assert a.name == b.name and a.read_bytes() == b.read_bytes()
            assert pydicom.dcmread(a).PixelData == pydicom.dcmread(env.files[0].parent / a.name).PixelData

    @pytest.mark.parametrize("method", ["get", "move", "wado"])
    def test_retrieve_into_the_index(self, env: TlsPacsEnv, tmp_path: Path, method: Any) -> None:
        """C-GET, WADO-RS over HTTPS, and C-MOVE: Orthanc calls our TLS listener with its certificate."""
        result = retrieve_study(env.node, env.local, env.study_uid, db_path=tmp_path / "index.sqlite",
                                storage_dir=tmp_path / "pacs", method=method)
        assert (result.on_pacs, result.received) == (N_FILES, N_FILES)

    def test_cstore_and_stow(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        sent = []
        for n in range(2):
            ds = pydicom.dcmread(env.files[n])
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
            sent.append((tmp_path / f"{n}.dcm", str(ds.SOPInstanceUID)))
        assert DimseClient(env.node, env.local).store([sent[0][0]]).stored == [sent[0][1]]
        web = DicomWebClient(env.node).store([sent[1][0]])
        assert web.stored == [sent[1][1]] and web.failed == []
        assert {sent[0][1], sent[1][1]} <= env.orthanc.sop_uids()

    # --- refusals, each with its reason --------------------------------------------------------
    def test_server_certificate_from_another_ca_is_refused(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        wrong_ca = env.node_with(tls_ca_file=env.pki.other_ca)
        for call in (lambda: DimseClient(wrong_ca, env.local).echo(),
                     lambda: DimseClient(wrong_ca, env.local).get(InstanceWriter(tmp_path / "a"), env.study_uid,
                                                                    env.series_uid),
                     lambda: DicomWebClient(wrong_ca).search_studies(StudyQuery())):
            with pytest.raises(PacsTlsError) as info:
                call()
            assert_tls_error(info, wrong_ca, "unknown CA", "not signed by a CA in tls_ca_file")
        # Peers whose certificates come from another CA: a listener, and an HTTPS front, both with the rogue one.
        rogue = tls_local(env.pki, tls_cert_file=env.pki.rogue_cert, tls_key_file=env.pki.rogue_key,
                          tls_require_client_cert=False)
        with StorageListener(rogue, tmp_path / "in", None, allowed_callers=None) as listener:
            node = tls_node(env.pki, listener.port)
            with pytest.raises(PacsTlsError) as info:
                DimseClient(node, caller()).echo()
            assert_tls_error(info, node, "unknown CA")
            assert listener.received == 0
        proxy = TlsProxy(env.orthanc.http_port, env.pki.rogue_cert, env.pki.rogue_key)
        try:
            node = env.node_with(dicomweb_url=f"https://127.0.0.1:{proxy.port}/dicom-web")
            with pytest.raises(PacsTlsError) as info:
                DicomWebClient(node).search_studies(StudyQuery())
            assert_tls_error(info, node, "HTTPS", "unknown CA")
        finally:
            proxy.close()

    def test_host_name_is_checked_unless_turned_off(self, env: TlsPacsEnv) -> None:
        other_name = env.node_with(host="127.0.0.2")  # the same Orthanc; its certificate names 127.0.0.1
        with pytest.raises(PacsTlsError) as info:
            DimseClient(other_name, env.local).echo()
        assert_tls_error(info, other_name, "host name mismatch", "tls_verify_hostname")
        assert DimseClient(env.node_with(host="127.0.0.2", tls_verify_hostname=False), env.local).echo() < 5

    def test_expired_certificate_is_refused(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        expired = tls_local(env.pki, tls_cert_file=env.pki.expired_cert, tls_require_client_cert=False)
        with StorageListener(expired, tmp_path / "in", None, allowed_callers=None) as listener:
            node = tls_node(env.pki, listener.port)
            with pytest.raises(PacsTlsError) as info:
                DimseClient(node, caller()).echo()
            assert_tls_error(info, node, "has expired")

    def test_client_certificate_required_by_the_pacs(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        anonymous = env.node_with(tls_cert_file=None, tls_key_file=None)
        for call in (lambda: DimseClient(anonymous, env.local).echo(),
                     lambda: DimseClient(anonymous, env.local).get(InstanceWriter(tmp_path / "a"), env.study_uid,
                                                                    env.series_uid),
                     lambda: DicomWebClient(anonymous).search_studies(StudyQuery())):
            with pytest.raises(PacsTlsError) as info:
                call()
            assert_tls_error(info, anonymous, "client certificate", "tls_cert_file")

    def test_plain_text_node_against_the_tls_ports(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        plain = env.node_with(tls=False, dicomweb_url=env.node.dicomweb_url.replace("https://", "http://"))
        for call in (lambda: DimseClient(plain, env.local).echo(),
                     lambda: DimseClient(plain, env.local).get(InstanceWriter(tmp_path / "a"), env.study_uid,
                                                                    env.series_uid)):
            with pytest.raises(PacsTlsError) as info:
                call()
            assert_tls_error(info, plain, "expects DICOM TLS", "set tls: true")
        with pytest.raises(PacsTlsError) as info:
            DicomWebClient(plain).search_studies(StudyQuery())
        assert_tls_error(info, plain, "expects HTTPS", "https://")

    def test_tls_node_against_plain_ports_never_falls_back(self, env: TlsPacsEnv, tmp_path: Path) -> None:
        # A plain pynetdicom listener (our own, without TLS), and Orthanc's plain HTTP port.
        with StorageListener(LocalAE(ae_title="WSTEST", port=0, bind_address="127.0.0.1"), tmp_path / "in", None,
                             allowed_callers=None) as listener:
            node = tls_node(env.pki, listener.port)
            with pytest.raises(PacsTlsError) as info:
                DimseClient(node, caller()).echo()
            assert_tls_error(info, node, "plain-text peer")
            assert listener.received == 0
        web = env.node_with(dicomweb_url=f"{env.orthanc.url.replace('http://', 'https://')}/dicom-web")
        with pytest.raises(PacsTlsError) as info:
            DicomWebClient(web).search_studies(StudyQuery())
        assert_tls_error(info, web, "answered in plain text, not TLS")
        # What a TLS node sends to a plain-text peer, byte for byte: TLS handshakes only, never DICOM.
        recorder = RecordingServer()
        try:
            node = tls_node(env.pki, recorder.port, ae_title="PLAINPEER")
            for call in (lambda: DimseClient(node, caller()).echo(),
                         lambda: DimseClient(node, caller()).get(InstanceWriter(tmp_path / "b"), "1.2.3", "1.2.4")):
                with pytest.raises(PacsTlsError) as info:
                    call()
                assert_tls_error(info, node, "does not speak TLS")
        finally:
            recorder.close()
        assert len(recorder.first_bytes) >= 2
        for data in recorder.first_bytes:
            assert data[:1] == b"\x16", data[:16]  # a TLS handshake record (ClientHello)
            assert b"PLAINPEER" not in data and STORESCU_AET.encode() not in data

    # --- our TLS listener ----------------------------------------------------------------------
    @DCMTK
    def test_listener_receives_storescu_and_pynetdicom_over_tls(self, env: TlsPacsEnv, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="workstation.pacs.tls")
        arrivals: list[Arrival] = []
        db = tmp_path / "index.sqlite"
        pki = env.pki
        with StorageListener(tls_local(pki), tmp_path / "in", db, allowed_callers=[STORESCU_AET],
                             on_arrival=arrivals.append) as listener:
            port = str(listener.port)
            common = ["-aet", STORESCU_AET, "-aec", "WSTEST", "127.0.0.1", port]
            tls_args = ["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)]
            echo = subprocess.run(["echoscu", *tls_args, *common], capture_output=True, text=True, timeout=30)
            assert echo.returncode == 0, echo.stderr
            stored = subprocess.run(["storescu", "-xv", *tls_args, *common, *map(str, env.files[:3])],
                                    capture_output=True, text=True, timeout=60)
            assert stored.returncode == 0, stored.stderr
            plain = subprocess.run(["storescu", "-xv", *common, str(env.files[3])], capture_output=True,
                                   text=True, timeout=30)
            rogue = subprocess.run(["storescu", "-xv", "+tls", str(pki.rogue_key), str(pki.rogue_cert),
                                    "+cf", str(pki.ca), *common, str(env.files[3])],
                                   capture_output=True, text=True, timeout=30)
            ours = DimseClient(tls_node(pki, listener.port), caller()).store(env.files[4:6])
            assert len(ours.stored) == 2 and ours.failed == []
            anonymous = tls_node(pki, listener.port, tls_cert_file=None, tls_key_file=None)
            with pytest.raises(PacsTlsError) as info:
                DimseClient(anonymous, caller()).echo()
            assert_tls_error(info, anonymous, "client certificate")
        assert plain.returncode != 0 and rogue.returncode != 0
        refusals = [r.getMessage() for r in caplog.records if "refused a DICOM TLS caller" in r.getMessage()]
        assert any("plain text" in m for m in refusals), refusals
        assert any("unknown CA: the caller's client certificate" in m for m in refusals), refusals
        assert any("no client certificate" in m for m in refusals), refusals
        assert [len(a.files) for a in arrivals] == [3, 2]
        assert sum(a.added for a in arrivals) == 5 and {a.calling_ae for a in arrivals} == {STORESCU_AET}
