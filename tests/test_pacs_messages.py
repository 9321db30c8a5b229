"""PACS messages that say what happened, and the PACS side of the audit trail, against real peers.

- A PACS that dies during a C-FIND is a PACS that went away, not one that refuses
  our AE title. The dying peer is a pynetdicom Q/R SCP in its own process that
  exits (``os._exit``) when the C-FIND arrives, before answering or after one
  match: the kernel closes its socket and its port, as when a PACS crashes.
  Orthanc refusing an unknown calling AE title is still reported as a refusal.
- Retrieving a study Orthanc does not hold fails (exit 2) with "study ... not found on NODE".
- ``pacs send`` and ``pacs retrieve`` are in ``workstation audit --json``, with the study UID and no patient data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.pacs_fixtures import PacsEnv, free_port, have_orthanc, orthanc_env
from workstation.cli import main
from workstation.pacs.dimse import DimseClient
from workstation.pacs.errors import PacsRequestError, StudyNotFoundError, TransferInterruptedError
from workstation.pacs.query import StudyQuery

pytestmark = [
    pytest.mark.needs_tool,
    pytest.mark.skipif(not have_orthanc(), reason="Orthanc + DICOMweb plugin not installed "
                                                  "(scripts/install_pacs_tools.sh)"),
]

DYING_SCP = textwrap.dedent('''
    import os, sys, time
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    port, answers = int(sys.argv[1]), int(sys.argv[2])

    def on_find(event):
        for n in range(answers):
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = f"1.2.3.{n}"
            yield 0xFF00, ds
        if answers:
            time.sleep(0.5)  # let the match leave before dying
        os._exit(3)  # the PACS process dies in the middle of the C-FIND

    ae = AE(ae_title="DYINGSCP")
    ae.add_supported_context(FIND)
    ae.add_supported_context("1.2.840.10008.1.1")
    print("ready", flush=True)
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_FIND, on_find)])
''')


@pytest.fixture(scope="module")
def env(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsEnv]:
    with orthanc_env(shared_data, tmp_path_factory.mktemp("pacs")) as e:
        yield e


def _dying_scp(answers: int) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", DYING_SCP, str(port), str(answers)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for _ in range(100):  # until the server accepts associations
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    return proc, port


@pytest.mark.parametrize("answers", [0, 1])
def test_pacs_dying_during_cfind_is_not_called_a_refusal(env: PacsEnv, answers: int) -> None:
    proc, port = _dying_scp(answers)
    try:
        node = env.node_with(name="dying", ae_title="DYINGSCP", port=port, dicomweb_url="")
        with pytest.raises(TransferInterruptedError) as info:
            DimseClient(node, env.local, timeout_s=10).find_studies(StudyQuery())
    finally:
        proc.wait(10)
    text = str(info.value)
    assert "not allow" not in text and "AE title" not in text
    if answers == 0:
        assert "went away during the C-FIND before answering" in text and "stopped or crashed" in text
    else:
        assert "dropped the association during the C-FIND (connection lost)" in text


def test_unknown_calling_ae_title_is_still_a_refusal(env: PacsEnv) -> None:
    with pytest.raises(PacsRequestError, match="not allow C-FIND from our AE title 'STRANGER'"):
        DimseClient(env.node, env.local_with(ae_title="STRANGER")).find_studies(StudyQuery())


def _pacs_cli(argv: list[str]) -> int:
    from workstation.cli_pacs import add_parser, run
    from workstation.settings import get_settings

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.verbose = 0
    return run(args, get_settings())


def _audit(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["audit", "--json"]) == 0
    events: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return events


def test_retrieving_a_study_the_pacs_does_not_hold_is_not_found(env: PacsEnv,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    missing = generate_uid()
    dimse = ["--host", "127.0.0.1", "--port", str(env.node.port), "--aet", env.node.ae_title,
             "--our-aet", env.local.ae_title]
    code = main(["pacs", "retrieve", *dimse, missing])
    err = capsys.readouterr().err
    assert code == 2
    assert f"study {missing} not found on" in err and env.node.ae_title in err
    with pytest.raises(StudyNotFoundError):
        _pacs_cli(["pacs", "retrieve", *dimse, missing, "--method", "move"])
    events = [e for e in _audit(capsys) if e["event"] == "study.received"]
    assert [(e["study_uid"], e["outcome"]) for e in events] == [(missing, "failed"), (missing, "failed")]


def test_send_and_retrieve_are_in_the_audit_trail(env: PacsEnv, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ds = pydicom.dcmread(env.files[3])
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "sent.dcm"
    ds.save_as(path, enforce_file_format=True)
    dimse = ["--host", "127.0.0.1", "--port", str(env.node.port), "--aet", env.node.ae_title,
             "--our-aet", env.local.ae_title]
    assert main(["pacs", "send", *dimse, str(path)]) == 0
    assert main(["pacs", "retrieve", *dimse, env.study_uid, "--json"]) == 0
    events = _audit(capsys)
    sent = [e for e in events if e["event"] == "study.sent"]
    assert len(sent) == 1 and sent[0]["study_uid"] == ds.StudyInstanceUID and sent[0]["outcome"] == "ok"
    assert sent[0]["details"] == {"node": "command line", "protocol": "C-STORE", "files": 1, "stored": 1,
                                  "failed": 0}
    received = [e for e in events if e["event"] == "study.received"]
    assert [(e["study_uid"], e["outcome"]) for e in received] == [(env.study_uid, "ok")]
    assert received[0]["details"]["received"] == 20  # type: ignore[index]
    for e in events:
        assert e["user"] and str(e["time"]).endswith("+00:00")
    text = json.dumps(events).lower()
    assert "pacs^test" not in text and "pacstest01" not in text  # no patient name or ID
