"""A bundle's config code never runs unannounced: install lists it and refuses code outside the allow-list
unless trusted; a bundle copied in by hand is refused at load time; the window asks first.

The evil bundle is the TorchScript threshold bundle whose inferer's ``sw_batch_size``
is ``$__import__('os').system('touch MARKER') + 3``: MONAI evaluates it while
loading, so the marker file appears exactly when that code runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.bundles import UntrustedCodeError, audit_config, discover_bundles
from inference.contract import AnalysisRequest
from inference.engine import Engine
from tests import bundle_factory as bf
from tests.dicom_factory import ct_series
from workstation.cli import main
from workstation.services.models import code_review, confirmation_text, install_bundle, list_models, trust_bundle


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def evil_bundle(root: Path, marker: Path, name: str = "evil") -> Path:
    folder = bf.make_threshold_bundle(root, name)
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text())
    config["inferer"]["sw_batch_size"] = f"$__import__('os').system('touch {marker}') + 3"
    config["post"] = "$os.system('rm -rf /')"  # never evaluated by the workstation, but listed
    config_path.write_text(json.dumps(config))
    return folder


def benign_bundle(root: Path, name: str = "benign") -> Path:
    folder = bf.make_threshold_bundle(root, name)
    config_path = folder / "configs" / "inference.json"
    config = json.loads(config_path.read_text())
    config["imports"] = ["$import numpy as np", "$from monai.transforms import Compose", "$import os"]
    config["roi"] = "$[int(np.ceil(x)) for x in (16.0, 16.0, 16.0)]"
    config["inferer"]["roi_size"] = "@roi"
    config["inferer"]["sw_batch_size"] = "$max(1, int(torch.tensor(3).item()))"
    config["inferer"]["mode"] = "$monai.utils.BlendMode.GAUSSIAN"
    config_path.write_text(json.dumps(config))
    return folder


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from workstation.settings import get_settings

    folder = tmp_path / "models"
    monkeypatch.setenv("WORKSTATION_MODELS_DIR", str(folder))
    get_settings.cache_clear()
    return folder


def test_install_refuses_code_outside_the_allow_list_and_lists_it(models: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "MARKER"
    zip_path = bf.zip_bundle(evil_bundle(tmp_path / "src", marker), tmp_path / "evil.zip")
    code, _out, err = _run(capsys, "models", "install", str(zip_path))
    assert code == 2
    assert f"$__import__('os').system('touch {marker}') + 3" in err
    assert "uses '__import__'" in err and "--trust-code" in err and "Nothing was installed" in err
    assert not (models / "evil").exists() and not marker.exists()


def test_trusted_install_is_recorded_and_runs_the_code_only_at_analysis(
        models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "MARKER"
    zip_path = bf.zip_bundle(evil_bundle(tmp_path / "src", marker), tmp_path / "evil.zip")
    code, out, err = _run(capsys, "models", "install", str(zip_path), "--trust-code")
    assert code == 0, err
    assert f"refused  expression inferer::sw_batch_size: $__import__('os').system('touch {marker}') + 3" in out
    assert "not run  expression post: $os.system('rm -rf /')" in out  # listed, never evaluated
    assert "trusted by you" in out
    assert not marker.exists()  # installing never runs config code
    record = json.loads((models / "evil" / ".install.json").read_text())
    assert record["trust_code"] is True and record["code_passed_audit"] is False
    rows = {r["id"]: r for r in json.loads(_run(capsys, "models", "list", "--json")[1])}
    assert rows["bundle.evil"]["code"] == "trusted"

    series = tmp_path / "series"
    ct_series(series, n=6)
    code, out, err = _run(capsys, "analyze", str(series), "--model", "bundle.evil", "--device", "cpu",
                          "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert marker.exists()  # the trusted code ran, at analysis time
    notes = json.loads((tmp_path / "out" / "findings.json").read_text())["provenance"]["notes"]
    assert any("ran code outside the allow-list" in n and "models install --trust-code" in n for n in notes)


def test_benign_expressions_install_without_trust_and_run(models: Path, tmp_path: Path) -> None:
    audit = audit_config(json.loads((benign_bundle(tmp_path / "probe") / "configs" / "inference.json").read_text()))
    assert audit.passed, audit.lines()
    entry = install_bundle(bf.zip_bundle(benign_bundle(tmp_path / "src"), tmp_path / "benign.zip"), models)
    assert entry["trusted_code"] is False and entry["code"] == "allowed" and entry["code_audit"]["passed"]
    texts = {i["text"]: i for i in entry["code_audit"]["items"]}
    assert texts["$import os"]["evaluated"] is False  # skipped: not imported without trust
    out = Engine(models).run(AnalysisRequest(bf.axial_volume(), "bundle.benign", "cpu"))
    assert out.labelmap.shape == bf.axial_volume().shape
    assert not any("allow-list" in n for n in out.provenance.notes)


def test_a_bundle_copied_in_by_hand_is_refused_at_load_even_with_a_forged_record(models: Path,
                                                                               tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    folder = evil_bundle(models, marker)
    (folder / ".install.json").write_text(json.dumps({"trust_code": True}))  # trust lives elsewhere
    with pytest.raises(UntrustedCodeError, match=r"outside the allow-list") as info:
        Engine(models).run(AnalysisRequest(bf.axial_volume(), "bundle.evil", "cpu"))
    assert "__import__('os').system" in str(info.value) and "--trust-code" in str(info.value)
    assert not marker.exists()
    assert [r["code"] for r in list_models(models, include_builtin=False)] == ["needs trust"]

    # what the window asks before a first run, and what "Yes" does
    review = code_review("bundle.evil", models)
    assert review is not None and [i.where for i in review.refused] == ["inferer::sw_batch_size"]
    assert "__import__('os').system" in confirmation_text("bundle.evil", review)
    assert code_review("builtin.ct", models) is None
    trust_bundle("bundle.evil", models, how="test confirmation")
    assert code_review("bundle.evil", models) is None
    Engine(models).run(AnalysisRequest(bf.axial_volume(), "bundle.evil", "cpu"))
    assert marker.exists()

    # editing the config after trusting it needs trust again
    marker.unlink()
    config = folder / "configs" / "inference.json"
    config.write_text(config.read_text().replace("+ 3", "+ 2"))
    with pytest.raises(UntrustedCodeError):
        Engine(models).run(AnalysisRequest(bf.axial_volume(), "bundle.evil", "cpu"))
    assert not marker.exists()


@pytest.mark.parametrize("expression", [
    "$__import__('os').system('id')",
    "$os.system('id')",
    "$eval('1')",
    "$exec('x=1')",
    "$open('/etc/passwd').read()",
    "$getattr(torch, 'lo' + 'ad')('x.pt')",
    "$torch.load('x.pt', weights_only=False)",
    "$np.load('x.npy', allow_pickle=True)",
    "$torch.nn.Module.__subclasses__()",
    "$(lambda: 0).__globals__",
    "$monai.utils.optional_import('os')[0].system('id')",
    "$monai.bundle.ConfigParser({'x': 1})",
    "$[open for open in [1]] and open('/tmp/x', 'w')",
    "$import subprocess",
    "$from os import system",
])
def test_dangerous_forms_are_refused(expression: str) -> None:
    config = {"inferer": {"_target_": "SlidingWindowInferer", "roi_size": [8, 8, 8], "sw_batch_size": expression}}
    assert not audit_config(config).passed


@pytest.mark.parametrize(("target", "passes"), [
    ("SlidingWindowInferer", True), ("monai.inferers.SlidingWindowInferer", True), ("torch.nn.Identity", True),
    ("open", False), ("os.system", False), ("subprocess.Popen", False), ("monai.utils.optional_import", False),
    ("scripts.net.Net", False), ("antigravity", False),
])
def test_targets_must_be_monai_components_or_allowed_modules(target: str, passes: bool) -> None:
    assert audit_config({"network_def": {"_target_": target}}).passed is passes


def test_only_what_the_workstation_evaluates_counts(tmp_path: Path) -> None:
    folder = bf.make_unet_bundle(tmp_path)  # Model Zoo style: imports glob and os, a glob datalist
    model = next(iter(discover_bundles(tmp_path)))
    audit = model.code_audit()
    assert audit.passed, audit.lines()
    datalist = next(i for i in audit.items if i.where == "datalist")
    assert not datalist.allowed and not datalist.evaluated
    assert folder.name == "tiny_unet"
