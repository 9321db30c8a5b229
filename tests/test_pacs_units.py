"""PACS pieces that need no PACS: node settings, query building, multipart, file layout, a cut WADO-RS stream."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from pydicom.uid import generate_uid

from tests.dicom_factory import ct_slice
from workstation.pacs.errors import NodeConfigError, TransferInterruptedError
from workstation.pacs.multipart import MultipartError, build_body, content_type_params, iter_parts
from workstation.pacs.nodes import LocalAE, PacsConfig, PacsNode
from workstation.pacs.query import StudyQuery, StudyResult, json_values
from workstation.pacs.storage import InstanceWriter, instance_path


def test_node_validation_and_secrets() -> None:
    node = PacsNode(name="main", ae_title=" PACS1 ", host="10.0.0.5", port=11112,
                    dicomweb_url="https://pacs/dicom-web/", username="u", password="s3cret")  # type: ignore[arg-type]
    assert (node.ae_title, node.dicomweb_url, node.has_dimse, node.has_dicomweb) == (
        "PACS1", "https://pacs/dicom-web", True, True)
    assert "s3cret" not in repr(node) and "s3cret" not in node.describe()
    config = PacsConfig(nodes=[node])
    saved = config.to_settings_value()
    assert saved["nodes"][0]["password"] == "s3cret"  # written to settings.json in clear, never logged
    assert PacsConfig.from_value(saved).node().password.get_secret_value() == "s3cret"  # type: ignore[union-attr]
    for bad in ({"ae_title": "A" * 17}, {"ae_title": "A\\B"}, {"dicomweb_url": "ftp://x"}, {"port": 0}):
        with pytest.raises(ValueError):
            PacsNode.model_validate({"name": "x", **bad})
    with pytest.raises(ValueError):
        LocalAE(ae_title="")


def test_config_node_lookup() -> None:
    assert PacsConfig.from_settings(SimpleNamespace()).nodes == []
    with pytest.raises(NodeConfigError, match="no PACS node is configured"):
        PacsConfig().node()
    a, b = PacsNode(name="a", ae_title="A", host="h"), PacsNode(name="b", ae_title="B", host="h")
    assert PacsConfig(nodes=[a]).node() == a
    with pytest.raises(NodeConfigError, match="several PACS nodes"):
        PacsConfig(nodes=[a, b]).node()
    assert PacsConfig(nodes=[a, b], default_node="b").node() == b
    with pytest.raises(NodeConfigError, match="no PACS node named 'c'"):
        PacsConfig(nodes=[a, b]).node("c")
    with pytest.raises(NodeConfigError, match=r"PACS settings are invalid: nodes\.0\.port"):
        PacsConfig.from_value({"nodes": [{"name": "a", "port": "x"}]})
    assert PacsConfig(nodes=[a, b]).known_callers() == ["A", "B"]
    assert PacsConfig().storage_path(Path("/d")) == Path("/d/pacs")


def test_study_query_matching() -> None:
    q = StudyQuery(patient_name="Doe^J", date_from="2024-01-02", date_to="20240131", modality="ct")
    assert q.matching() == {"PatientName": "Doe^J*", "StudyDate": "20240102-20240131", "ModalitiesInStudy": "CT"}
    assert StudyQuery(patient_name="D?e*").name_pattern == "D?e*"
    assert StudyQuery(date_from="20240102").date_range == "20240102-"
    assert StudyQuery(date_to="20240102").date_range == "-20240102"
    assert StudyQuery(date_from="20240102", date_to="20240102").date_range == "20240102"
    with pytest.raises(ValueError, match="not a date"):
        StudyQuery(date_from="yesterday")


def test_dicom_json_values() -> None:
    item = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
            "00080061": {"vr": "CS", "Value": ["CT", "SR"]}, "00201208": {"vr": "IS", "Value": [42]},
            "0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "00081030": {"vr": "LO"}}
    st = StudyResult.from_values(json_values(item, ("PatientName", "ModalitiesInStudy",
                                                    "NumberOfStudyRelatedInstances", "StudyInstanceUID",
                                                    "StudyDescription")))
    assert (st.patient_name, st.modalities, st.instance_count, st.study_uid, st.description) == (
        "Doe^Jane", ("CT", "SR"), 42, "1.2.3", "")


def test_multipart_round_trip_in_small_chunks() -> None:
    parts = [b"first", b"", b"\r\n--not-a-boundary\r\n" * 3, bytes(range(256)) * 10]
    body, content_type = build_body(parts)
    media, params = content_type_params(content_type)
    assert media == "multipart/related" and params["type"] == "application/dicom"
    got = list(iter_parts(BytesIO(body), params["boundary"], chunk=7))
    assert [b for _, b in got] == parts
    assert all(h["content-type"] == "application/dicom" for h, _ in got)
    with pytest.raises(MultipartError, match="ends in the middle of a part"):
        list(iter_parts(BytesIO(body[: len(body) // 2]), params["boundary"], chunk=7))


def test_instance_files_are_safe_and_atomic(tmp_path: Path) -> None:
    assert instance_path(tmp_path, "1.2", "3.4", "5.6") == tmp_path / "1.2" / "3.4" / "5.6.dcm"
    odd = instance_path(tmp_path, "../../etc", "", "a/b")
    assert odd.is_relative_to(tmp_path) and ".." not in odd.parts and odd.parent.name == "unknown-series"
    writer = InstanceWriter(tmp_path, skip={"9.9"})
    assert writer.write(b"data", "9.9", "1", "2") is None and writer.skipped == 1
    path = writer.write(b"data", "1.1", "1", "2")
    assert path is not None and path.read_bytes() == b"data"
    writer.write(b"newer", "1.1", "1", "2")  # same instance again: skipped (already written)
    assert path.read_bytes() == b"data" and [p.name for p in tmp_path.rglob("*")] == ["1", "2", "1.1.dcm"]


class _CutWado(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a multipart body of two parts and a third one cut short."""

    files: ClassVar[list[bytes]] = []
    seen_auth: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        body, content_type = build_body(self.files)
        cut = body[: body.rindex(self.files[-1]) + 100]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(cut)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cut_wado(tmp_path: Path) -> Iterator[str]:
    study, series = generate_uid(), generate_uid()
    _CutWado.files = [ct_slice(tmp_path / f"{i}.dcm", study_uid=study, series_uid=series, z=i).read_bytes()
                      for i in range(3)]
    _CutWado.seen_auth = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _CutWado)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


def test_wado_stream_cut_short_keeps_whole_instances(cut_wado: str, tmp_path: Path) -> None:
    from workstation.pacs.dicomweb import DicomWebClient

    node = PacsNode(name="web", dicomweb_url=cut_wado, token="tok-123")  # type: ignore[arg-type]
    writer = InstanceWriter(tmp_path / "out")
    with pytest.raises(TransferInterruptedError, match="ends in the middle of a part"):
        DicomWebClient(node, timeout_s=5).retrieve(writer, "1.2", "3.4")
    assert len(writer.received) == 2 and not list((tmp_path / "out").rglob("*.part"))
    assert _CutWado.seen_auth == ["Bearer tok-123"]


def test_file_header_and_commands_read_back() -> None:
    import pydicom
    from pynetdicom.dsutils import encode

    from workstation.pacs.fastget import command, parse_command
    from workstation.pacs.storage import file_header

    ds = pydicom.Dataset()
    ds.SOPInstanceUID, ds.PatientID = "1.2.3", "X"
    body = encode(ds, False, True)
    assert body is not None
    data = file_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1", "PACS") + body
    back = pydicom.dcmread(BytesIO(data))
    meta = back.file_meta
    assert (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID,
            meta.SourceApplicationEntityTitle) == ("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1", "PACS")
    assert back.SOPInstanceUID == "1.2.3" and meta.FileMetaInformationGroupLength == len(data) - 132 - 12 - len(body)
    cmd = command({0x0100: b"\x01\x80", 0x1000: b"1.2.3\x00", 0x0002: b"1.2\x00"})
    parsed = pydicom.dcmread(BytesIO(cmd), force=True)  # implicit VR little endian, as pydicom reads it
    assert parsed.CommandField == 0x8001 and parsed.AffectedSOPInstanceUID == "1.2.3"
    fields = parse_command(cmd)
    assert fields[0x0100] == b"\x01\x80" and fields[0x0000] == (len(cmd) - 12).to_bytes(4, "little")


def test_listener_analyses_arrivals_in_process_and_goes_on_after_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import queue

    import workstation.services.analysis as analysis
    from workstation.cli_pacs import _analysis_worker

    calls: list[tuple[str, Path, object]] = []

    def analyze_target(target: str, out_dir: Path, settings: object) -> SimpleNamespace:
        calls.append((target, out_dir, settings))
        if target == "study:1":
            raise ValueError("no series to analyse")
        return SimpleNamespace(store_error="")

    monkeypatch.setattr(analysis, "analyze_target", analyze_target)
    jobs: queue.Queue[int | None] = queue.Queue()
    for sid in (1, 2, None):
        jobs.put(sid)
    settings = SimpleNamespace(db_path=tmp_path / "index.sqlite")
    _analysis_worker(jobs, tmp_path / "out", settings)
    assert calls == [("study:1", tmp_path / "out" / "study-1", settings),
                     ("study:2", tmp_path / "out" / "study-2", settings)]
    out = capsys.readouterr().out
    assert "analysis of index study 1 failed: no series to analyse" in out
    assert f"analysis of index study 2 written to {tmp_path / 'out' / 'study-2'}" in out
