"""The first window of a series follows its body region and kernel, as a radiologist would set it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from inference import Volume
from inference.acquisition import body_region, is_sharp_kernel
from workstation.qt.viewer import MprViewer, load_presets
from workstation.settings import resources_dir

REPO = Path(__file__).resolve().parents[1]


def ct(**metadata: object) -> Volume:
    arr = np.zeros((6, 24, 24), dtype=np.int16)
    arr[:, 8:16, 8:16] = 40
    return Volume(arr, np.diag([3.0, 1.0, 1.0, 1.0]), modality="CT",
                  units="HU", metadata=dict(metadata))


@pytest.fixture
def viewer(make_viewer: Callable[..., MprViewer]) -> MprViewer:
    """The shared viewer factory (tests/conftest.py), sized for this file's pixel checks."""
    return make_viewer(size=(600, 500))


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"body_part": "CHEST", "kernel": "B30f"}, "Mediastinum"),
    ({"body_part": "CHEST", "kernel": "B70f"}, "Lung"),
    ({"body_part": "", "series_description": "Thorax 1.0 I70f", "kernel": "I70f\\3"}, "Lung"),
    ({"body_part": "", "series_description": "LUNG 1.25mm", "kernel": "LUNG"}, "Lung"),
    ({"body_part": "HEAD", "kernel": "H31s"}, "Brain"),
    ({"body_part": "HEAD", "kernel": "H70h"}, "Bone"),
    ({"body_part": "ABDOMEN", "kernel": "B30f"}, "Abdomen"),
    ({"body_part": "PARTIALBODY", "kernel": "Br38f\\3"}, "Abdomen"),  # the real abdomen CT in ../shared/data
    ({"series_description": "CT CHEST ABDOMEN PELVIS", "kernel": "B31f"}, "Abdomen"),  # not one region
])
def test_a_ct_opens_in_the_window_its_region_and_kernel_call_for(
        qtbot: QtBot, viewer: MprViewer, metadata: dict[str, str], expected: str) -> None:
    viewer.set_volume(ct(**metadata))
    preset = load_presets().default_for("CT", metadata)
    assert preset is not None and preset.name == expected
    assert viewer.window_level() == (preset.window, preset.level)


def test_the_demo_chest_ct_opens_in_the_mediastinal_window(qtbot: QtBot, viewer: MprViewer,
                                                             tmp_path: Path) -> None:
    from workstation.demo import generate_demo_study
    from workstation.services.studies import load_series_volumes, resolve_series

    generate_demo_study(tmp_path / "study", shape=(24, 64, 64))
    viewer.set_volume(load_series_volumes(resolve_series(str(tmp_path / "study"), None)).volumes[0])
    assert viewer.window_level() == (350.0, 50.0)


def test_region_and_kernel_readings() -> None:
    assert body_region({"body_part": "THORAX"}) == "chest"
    assert body_region({"body_part": "", "series_description": "Abd/Pelvis 5mm"}) == "abdomen"
    assert body_region({}) == ""
    assert is_sharp_kernel("B60f") and is_sharp_kernel("FC52") and not is_sharp_kernel("B30f")
    assert not is_sharp_kernel("STANDARD") and is_sharp_kernel("BONEPLUS")


def test_readme_key_list_matches_the_presets_file() -> None:
    data = json.loads((resources_dir() / "presets" / "window_level.json").read_text(encoding="utf-8"))
    keys = {p["key"]: p["id"] for p in data["modalities"]["CT"]["presets"]}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"(\d) (lung|mediastinum|abdomen|bone|brain)\b", readme))
    assert listed == keys


def test_key_images_take_their_windows_from_the_presets_file() -> None:
    """The key images' lung and soft-tissue windows are the viewer's presets (one table, the resources file)."""
    from workstation.imaging import preset_window

    book = load_presets()
    lung, abdomen = book.by_id("CT", "lung"), book.by_id("CT", "abdomen")
    assert lung is not None and abdomen is not None
    assert preset_window("lung") == (lung.level, lung.window) == (-600.0, 1500.0)
    assert preset_window("abdomen") == (abdomen.level, abdomen.window) == (40.0, 400.0)
