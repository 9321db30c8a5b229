"""The streamed NIfTI writer gives the same file as the nibabel ``nib.save`` path it replaced.

The reference below is the previous implementation (transposed copy + ``nib.save``), kept here so
every dtype, layout and multi-volume case is compared byte for byte, not just loaded and checked.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

from inference.errors import GeometryError
from inference.volume import Volume
from workstation.dicomio import nifti
from workstation.dicomio.nifti import nifti_affine, nifti_array, write_nifti


def _reference(volumes: Sequence[Volume], path: Path) -> Path:
    """The writer as it was before streaming: transposed copy, then ``nib.save``."""
    first = volumes[0]
    data = nifti_array(first) if len(volumes) == 1 else np.stack([nifti_array(v) for v in volumes], axis=-1)
    affine = nifti_affine(first)
    img = nib.Nifti1Image(np.ascontiguousarray(data) if data.dtype.kind != "f" else data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def _oblique_affine() -> npt.NDArray[np.float64]:
    """Slice axis tilted, rows and columns rotated: a non-trivial qform."""
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, 0] = [0.1, 0.2, 2.5]
    affine[:3, 1] = [0.0, 0.7 * c, 0.7 * s]
    affine[:3, 2] = [0.8, 0.0, 0.0]
    affine[:3, 3] = [-120.0, -80.5, 33.25]
    return affine


def _volume(array: npt.NDArray[Any], affine: npt.NDArray[np.float64] | None = None) -> Volume:
    return Volume(array, _oblique_affine() if affine is None else affine, modality="CT", units="HU")


def _payload(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def _rng_array(shape: tuple[int, ...], dtype: str) -> npt.NDArray[Any]:
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 300, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -2000), min(info.max, 3000), size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", ["int16", "uint8", "uint16", "int32", "float32", "float64", "int8"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_same_file_as_nibabel(tmp_path: Path, dtype: str, suffix: str) -> None:
    vol = _volume(_rng_array((7, 11, 13), dtype))
    ours = write_nifti(vol, tmp_path / f"ours{suffix}")
    ref = _reference([vol], tmp_path / f"ref{suffix}")
    assert _payload(ours) == _payload(ref)
    loaded = nib.load(str(ours))
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), nifti_array(vol))
    np.testing.assert_allclose(loaded.affine, nifti_affine(vol), atol=1e-5)


def test_multi_volume_is_4d_and_identical(tmp_path: Path) -> None:
    vols = [_volume(_rng_array((5, 6, 4), "int16") + k) for k in range(3)]
    ours = write_nifti(vols, tmp_path / "ours.nii")
    ref = _reference(vols, tmp_path / "ref.nii")
    assert _payload(ours) == _payload(ref)
    assert nib.load(str(ours)).shape == (4, 6, 5, 3)


def test_non_contiguous_and_big_endian_arrays(tmp_path: Path) -> None:
    base = _rng_array((9, 10, 12), "int16")
    for name, arr in (("fortran", np.asfortranarray(base)), ("view", base[:, :, ::-1]),
                      ("big", base.astype(">i2"))):
        vol = _volume(arr)
        ours = write_nifti(vol, tmp_path / f"{name}.nii")
        ref = _reference([_volume(np.ascontiguousarray(base if name != "view" else arr, dtype="<i2"))],
                         tmp_path / f"{name}_ref.nii")
        assert _payload(ours) == _payload(ref), name


def test_slabs_with_remainder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several slabs and a short last one give the same bytes as one slab."""
    vol = _volume(_rng_array((11, 8, 9), "int16"))
    monkeypatch.setattr(nifti, "_SLAB_BYTES", 3 * 8 * 9 * 2)
    ours = write_nifti(vol, tmp_path / "slabs.nii")
    assert _payload(ours) == _payload(_reference([vol], tmp_path / "ref.nii"))


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    vol = _volume(_rng_array((4, 5, 6), "uint8"))
    a = write_nifti(vol, tmp_path / "a.nii.gz").read_bytes()
    b = write_nifti(vol, tmp_path / "b.nii.gz").read_bytes()
    assert a == b


def test_mismatched_volumes_are_refused(tmp_path: Path) -> None:
    a = _volume(_rng_array((4, 5, 6), "int16"))
    with pytest.raises(GeometryError, match="grid"):
        write_nifti([a, _volume(_rng_array((4, 5, 7), "int16"))], tmp_path / "x.nii")
    with pytest.raises(GeometryError, match="data type"):
        write_nifti([a, _volume(_rng_array((4, 5, 6), "int32"))], tmp_path / "x.nii")
    with pytest.raises(GeometryError, match="nothing"):
        write_nifti([], tmp_path / "x.nii")


CONVERT_IMPORTS = """
import sys
from workstation.cli import main
code = main(["convert", sys.argv[1], "--out", sys.argv[2]])
# none of these is needed to write a native series as NIfTI; each costs start-up time (pydicom ~90 ms,
# nibabel 30-100 ms: the header is written by hand, the scanner's tags come from dicomio.tag_table; pydantic
# ~100 ms: workstation.quick_settings reads the few settings; the PACS stack, the self-test, SQLite, the
# analysis contract and worker processes are not needed either)
heavy = ("torch", "monai", "transformers", "PySide6", "SimpleITK", "skimage", "scipy", "nibabel", "pydicom",
         "pydantic", "sqlite3", "multiprocessing", "workstation.pacs", "workstation.cli_pacs", "workstation.selftest",
         "workstation.settings", "inference.contract", "inference.findings")
print(sorted({m if m.startswith(("workstation.", "inference.")) else m.split(".")[0]
              for m in sys.modules if m.startswith(heavy)}))
sys.exit(code)
"""


def test_convert_is_voxel_identical_and_imports_nothing_heavy(tmp_path: Path) -> None:
    """``workstation convert``: the file nibabel would write, and no torch, Qt, scipy, nibabel, pydicom or pydantic
    loaded."""
    import os
    import subprocess
    import sys

    from tests.dicom_factory import ct_series
    from workstation.services.studies import load_series_volumes, resolve_series

    folder = tmp_path / "series"
    ct_series(folder, 6)
    out = tmp_path / "out.nii"
    env = dict(os.environ, WORKSTATION_CONFIG_DIR=str(tmp_path / "c"), WORKSTATION_DATA_DIR=str(tmp_path / "d"))
    proc = subprocess.run([sys.executable, "-c", CONVERT_IMPORTS, str(folder), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    assert not (tmp_path / "d" / "index.sqlite").exists(), "converting a folder must not create an index"
    volumes = load_series_volumes(resolve_series(str(folder), None)).volumes
    assert _payload(out) == _payload(_reference(volumes, tmp_path / "ref.nii"))


@pytest.mark.parametrize("seed", range(12))
def test_header_equals_nibabels_for_any_orientation(tmp_path: Path, seed: int) -> None:
    """Random rotations (both handednesses, axis-aligned ones included), spacings and origins: same header bytes."""
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:  # axis-aligned with flips: what most scanners write
        rot = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], size=3)
    else:
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rot * rng.uniform(0.3, 5.0, size=3)
    affine[:3, 3] = rng.uniform(-300, 300, size=3)
    vol = _volume(_rng_array((3, 4, 5), "int16"), affine)
    ref = _reference([vol], tmp_path / "ref.nii").read_bytes()[:352]
    assert nifti._header(vol, 1) == ref


def test_scanner_tag_table_matches_pydicoms_dictionary() -> None:
    """Every tag and VR the header scanner uses without pydicom is the data dictionary's, and it covers all it reads."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from workstation.dicomio.headers import KEYWORDS
    from workstation.dicomio.tag_table import KNOWN_TAGS

    for keyword, (tag, vr) in KNOWN_TAGS.items():
        assert tag_for_keyword(keyword) == tag, keyword
        assert dictionary_VR(tag) == vr, keyword
    assert {k for k in KEYWORDS if tag_for_keyword(k) is not None} <= set(KNOWN_TAGS)
