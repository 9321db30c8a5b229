"""DICOM series -> volume geometry, proven on synthetic series with a known answer.

Every series is sampled from ``synth.phantom`` at the LPS position of each pixel,
as the file's own ImagePositionPatient/ImageOrientationPatient/PixelSpacing say.
A volume is right when sampling it at world positions (through its affine, with
``lps_to_index``) gives back the phantom there. Each geometric case also builds
the naive stack a loader without that handling would make, and checks that the
same assertion fails on it, so the tests cannot pass vacuously.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from scipy.ndimage import map_coordinates

from inference.errors import GeometryError, UnreadableFileError
from inference.volume import Volume
from tests import synth
from tests.conftest import REPO, SHARED_DATA
from tests.requirements import DATA_FIX, missing
from workstation.dicomio.headers import read_header_path
from workstation.dicomio.nifti import write_nifti
from workstation.dicomio.qa import Status
from workstation.dicomio.series import group_series
from workstation.dicomio.volume_builder import SeriesVolumes, load_series

WORLDCHECK = SHARED_DATA.parent / "tools" / "worldcheck.py"
FloatArray = npt.NDArray[np.float64]
MakeSeries = Callable[..., synth.SynthSeries]


# ----------------------------------------------------------------------------- helpers

def sample(volume: Volume, points: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Trilinear samples of ``volume`` at LPS ``points``, and which points fell inside its grid."""
    idx = volume.lps_to_index(points)
    inside = np.all((idx >= 0) & (idx <= np.array(volume.shape) - 1), axis=1)
    values = map_coordinates(volume.array.astype(np.float64), idx[inside].T, order=1)
    return np.asarray(values, dtype=np.float64), inside


def phantom_error(volume: Volume, series: synth.SynthSeries, t: float = 0.0) -> tuple[float, float, float]:
    """(fraction of points inside the volume, max |error| HU, mean |error| HU) at random world points."""
    points = series.sample_points(1500, t=t)
    values, inside = sample(volume, points)
    err = np.abs(values - synth.phantom(points[inside], t))
    if not err.size:
        return 0.0, np.inf, np.inf
    return float(inside.mean()), float(err.max()), float(err.mean())


def assert_matches_phantom(volume: Volume, series: synth.SynthSeries, *, max_hu: float, mean_hu: float,
                           t: float = 0.0) -> None:
    inside, worst, mean = phantom_error(volume, series, t)
    assert inside > 0.99, f"only {inside:.0%} of the acquired region lies inside the volume"
    assert worst <= max_hu and mean <= mean_hu, f"volume differs from the phantom: max {worst:.1f}, mean {mean:.1f} HU"


def naive_volume(series: synth.SynthSeries, spacing: Literal["mean", "first"] = "mean") -> Volume:
    """What a loader without tilt/spacing handling makes: slices sorted along the normal,
    stacked as they are, on a grid from the first slice with one uniform spacing."""
    by_spec = dict(zip(series.slices, series.files, strict=True))
    stack = series.stack()
    arrays = [pydicom.dcmread(by_spec[s]).pixel_array.astype(np.int16) + int(synth.INTERCEPT) for s in stack]
    normal = stack[0].normal
    d = [float(np.dot(s.ipp, normal)) for s in stack]
    step = (d[-1] - d[0]) / (len(d) - 1) if spacing == "mean" else d[1] - d[0]
    iop = np.asarray(stack[0].iop)
    affine = np.eye(4)
    affine[:3, 0] = normal * step
    affine[:3, 1] = iop[3:] * synth.PIXEL_SPACING[0]
    affine[:3, 2] = iop[:3] * synth.PIXEL_SPACING[1]
    affine[:3, 3] = stack[0].ipp
    return Volume(np.stack(arrays), affine, modality="CT", units="HU")


def run_worldcheck(volume: Volume, dicom_dir: Path, out: Path) -> tuple[int, float, str]:
    """Write ``volume`` as NIfTI and run the independent worldcheck tool on it: (exit code, worst corr, output)."""
    if not WORLDCHECK.is_file():
        missing(f"worldcheck tool not found at {WORLDCHECK}", DATA_FIX)
    nii = write_nifti(volume, out)
    python = REPO / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python if python.exists() else sys.executable), str(WORLDCHECK), str(nii),
                           str(dicom_dir)], capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r"worst_corr=(-?[\d.]+)", proc.stdout)
    assert match, f"worldcheck printed no result: {proc.stdout} {proc.stderr}"
    return proc.returncode, float(match.group(1)), proc.stdout.strip()


def tilt_from_qa(sv: SeriesVolumes) -> float:
    item = sv.qa.get("tilt")
    assert item is not None and item.status is Status.WARNING, f"tilt not reported: {item}"
    match = re.search(r"tilt (-?[\d.]+)°", item.detail)
    assert match, item.detail
    return float(match.group(1))


@pytest.fixture(scope="module")
def make_series(tmp_path_factory: pytest.TempPathFactory) -> MakeSeries:
    """Write a synthetic series into a fresh folder (cached per name within this module)."""
    root = tmp_path_factory.mktemp("synthetic")
    cache: dict[str, synth.SynthSeries] = {}

    def make(name: str, slices: list[synth.SliceSpec], *, enhanced: bool = False,
             **options: Any) -> synth.SynthSeries:
        if name not in cache:
            if enhanced:
                cache[name] = synth.write_enhanced(root / name, slices, name=name, **options)
            else:
                cache[name] = synth.write_series(root / name, slices, name=name, **options)
        return cache[name]

    return make


# ----------------------------------------------------------------------------- plain stack

def test_plain_axial_stack_geometry_and_values(make_series: MakeSeries) -> None:
    s = make_series("axial", synth.axial_stack(20, 4.0))
    sv = load_series(s.headers())
    (vol,) = sv.volumes
    assert vol.shape == (20, synth.ROWS, synth.COLUMNS)
    assert vol.array.dtype == np.int16 and vol.units == "HU" and vol.notes == ()
    lowest = min(s.slices, key=lambda x: x.ipp[2])
    expected = np.array([[0, 0, synth.PIXEL_SPACING[1], lowest.ipp[0]],
                         [0, synth.PIXEL_SPACING[0], 0, lowest.ipp[1]],
                         [4.0, 0, 0, lowest.ipp[2]],
                         [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine, expected, atol=1e-6)
    # Every voxel is exactly the stored value of its pixel in HU (nothing resampled).
    for k, spec in enumerate(s.stack()):
        np.testing.assert_array_equal(vol.array[k], synth.stored_pixels(spec).astype(np.int16) - 1024)
    assert_matches_phantom(vol, s, max_hu=8, mean_hu=2)
    assert sv.qa.worst is Status.OK


def test_phantom_check_is_sensitive_to_a_flipped_axis(make_series: MakeSeries) -> None:
    """The phantom is asymmetric: the same values with any axis reversed do not match it."""
    s = make_series("axial", synth.axial_stack(20, 4.0))
    vol = load_series(s.headers()).volumes[0]
    for axis in range(3):
        flipped = vol.with_array(np.flip(vol.array, axis=axis).copy())
        _, _, mean = phantom_error(flipped, s)
        assert mean > 30, f"flipping axis {axis} went unnoticed (mean error {mean:.1f} HU)"


# ----------------------------------------------------------------------------- gantry tilt

TILTS = [
    pytest.param("gantry", 15.0, id="tilted-iop+15"),
    pytest.param("gantry", -20.0, id="tilted-iop-20"),
    pytest.param("sheared", 15.0, id="axial-iop-shifted-ipp+15"),
    pytest.param("sheared", -20.0, id="axial-iop-shifted-ipp-20"),
]


def _tilted(make_series: MakeSeries, variant: Literal["gantry", "sheared"], tilt: float) -> synth.SynthSeries:
    return make_series(f"tilt-{variant}{tilt:+.0f}", synth.tilted_stack(20, 4.0, tilt, variant), gantry_tilt=tilt)


@pytest.mark.parametrize(("variant", "tilt"), TILTS)
def test_tilted_stack_lands_where_the_dicom_says(make_series: MakeSeries, variant: Literal["gantry", "sheared"],
                                                 tilt: float) -> None:
    s = _tilted(make_series, variant, tilt)
    sv = load_series(s.headers())
    (vol,) = sv.volumes
    assert abs(tilt_from_qa(sv) - abs(tilt)) < 0.5
    assert f"GantryDetectorTilt says {tilt:g}°" in sv.qa.get("tilt").detail  # type: ignore[union-attr]
    assert any("resampled" in n and "tilt" in n for n in vol.notes), vol.notes
    # The output grid is orthogonal (what viewers and models assume) ...
    direction = vol.direction
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)
    t = np.radians(tilt)
    if variant == "gantry":
        # ... with slices in the tilted acquisition planes, spaced along their normal.
        np.testing.assert_allclose(direction[:, 0], [0, -np.sin(t), np.cos(t)], atol=1e-6)
        assert vol.spacing[0] == pytest.approx(4.0 * np.cos(t), abs=1e-4)
    else:
        np.testing.assert_allclose(direction[:, 0], [0, 0, 1], atol=1e-6)
        assert vol.spacing[0] == pytest.approx(4.0, abs=1e-4)
    assert_matches_phantom(vol, s, max_hu=10, mean_hu=2.5)
    # Sensitivity: the same slices stacked without tilt handling are tens of HU off.
    _, _, naive_mean = phantom_error(naive_volume(s), s)
    assert naive_mean > 30


@pytest.mark.parametrize(("variant", "tilt"), TILTS)
def test_tilted_stack_passes_worldcheck_and_a_naive_stack_does_not(
        make_series: MakeSeries, tmp_path: Path, variant: Literal["gantry", "sheared"], tilt: float) -> None:
    s = _tilted(make_series, variant, tilt)
    vol = load_series(s.headers()).volumes[0]
    rc, worst, text = run_worldcheck(vol, s.folder, tmp_path / "ours.nii")
    assert rc == 0 and worst >= 0.95, text
    rc, worst, text = run_worldcheck(naive_volume(s), s.folder, tmp_path / "naive.nii")
    assert rc != 0 and worst < 0.95, f"worldcheck cannot tell a stack without tilt handling: {text}"


def test_tilt_with_a_missing_slice_is_shifted_and_resampled(make_series: MakeSeries) -> None:
    s = make_series("tilt-missing", synth.drop(synth.tilted_stack(20, 4.0, 12.0), [7]))
    sv = load_series(s.headers())
    (vol,) = sv.volumes
    assert abs(tilt_from_qa(sv) - 12.0) < 0.5
    assert "1 slice(s) missing" in sv.qa.get("missing slices").detail  # type: ignore[union-attr]
    assert vol.shape[0] == 20 and len(vol.notes) == 2
    assert_matches_phantom(vol, s, max_hu=20, mean_hu=3)


# ----------------------------------------------------------------------------- spacing

NONUNIFORM_GAPS = [4.0] * 8 + [7.0] * 4


def test_nonuniform_spacing_is_resampled_onto_the_finest_gap(make_series: MakeSeries) -> None:
    s = make_series("nonuniform", synth.gapped_stack(NONUNIFORM_GAPS))
    sv = load_series(s.headers())
    (vol,) = sv.volumes
    spacing_qa, missing_qa = sv.qa.get("spacing"), sv.qa.get("missing slices")
    assert spacing_qa is not None and spacing_qa.status is Status.WARNING
    assert "4.000" in spacing_qa.detail and "7.000" in spacing_qa.detail and "resampled" in spacing_qa.action
    assert missing_qa is not None and missing_qa.status is Status.OK  # 7 mm is not a whole number of 4 mm slices
    assert any(n.startswith("resampled") and "non-uniform" in n for n in vol.notes), vol.notes
    assert vol.spacing[0] == pytest.approx(4.0, abs=1e-6)
    assert vol.shape[0] == 16  # 60 mm of coverage at 4 mm
    # The first and last slices are the acquired ones, untouched.
    stack = s.stack()
    np.testing.assert_array_equal(vol.array[0], synth.stored_pixels(stack[0]).astype(np.int16) - 1024)
    np.testing.assert_array_equal(vol.array[-1], synth.stored_pixels(stack[-1]).astype(np.int16) - 1024)
    assert_matches_phantom(vol, s, max_hu=20, mean_hu=4)
    _, _, naive_mean = phantom_error(naive_volume(s), s)
    assert naive_mean > 10


def test_nonuniform_grid_ends_on_the_last_slice_and_never_extrapolates(make_series: MakeSeries) -> None:
    """38 mm of coverage is 9.5 gaps of 4 mm: the grid must neither overshoot nor drop the last slice."""
    s = make_series("nonuniform-38mm", synth.gapped_stack([4.0] * 6 + [7.0] * 2))
    vol = load_series(s.headers()).volumes[0]
    stack = s.stack()
    z = vol.index_to_lps(np.stack([np.arange(vol.shape[0]), np.zeros(vol.shape[0]), np.zeros(vol.shape[0])], 1))[:, 2]
    assert z[0] == pytest.approx(stack[0].ipp[2], abs=1e-4)
    assert z[-1] == pytest.approx(stack[-1].ipp[2], abs=1e-4)
    assert vol.spacing[0] <= 4.0 + 1e-6
    np.testing.assert_array_equal(vol.array[-1], synth.stored_pixels(stack[-1]).astype(np.int16) - 1024)
    assert_matches_phantom(vol, s, max_hu=20, mean_hu=4)


def test_refuse_nonuniform_raises_naming_the_gaps(make_series: MakeSeries) -> None:
    s = make_series("nonuniform", synth.gapped_stack(NONUNIFORM_GAPS))
    with pytest.raises(GeometryError, match=r"4\.000.*7\.000.*refused"):
        load_series(s.headers(), nonuniform="refuse")
    gapped = make_series("missing-5", synth.drop(synth.axial_stack(16, 5.0), [5]))
    with pytest.raises(GeometryError, match=r"5\.0, 10\.0"):
        load_series(gapped.headers(), nonuniform="refuse")
    # A uniform series is not refused.
    uniform = make_series("axial", synth.axial_stack(20, 4.0))
    assert load_series(uniform.headers(), nonuniform="refuse").volumes[0].shape[0] == 20


def test_nonuniform_passes_worldcheck_and_naive_stacks_do_not(make_series: MakeSeries, tmp_path: Path) -> None:
    s = make_series("nonuniform", synth.gapped_stack(NONUNIFORM_GAPS))
    rc, worst, text = run_worldcheck(load_series(s.headers()).volumes[0], s.folder, tmp_path / "ours.nii")
    assert rc == 0 and worst >= 0.95, text
    for spacing in ("mean", "first"):
        rc, worst, text = run_worldcheck(naive_volume(s, spacing), s.folder, tmp_path / f"naive-{spacing}.nii")
        assert rc != 0 and worst < 0.95, f"naive stack ({spacing} gap) passed worldcheck: {text}"


@pytest.mark.parametrize(("dropped", "missing"), [([5], 1), ([10, 11], 2), ([4, 9], 2)],
                         ids=["one", "two-adjacent", "two-apart"])
def test_missing_slices_are_counted_and_filled(make_series: MakeSeries, dropped: list[int], missing: int) -> None:
    full = synth.axial_stack(16, 5.0)
    s = make_series(f"missing-{'-'.join(map(str, dropped))}", synth.drop(full, dropped))
    sv = load_series(s.headers())
    (vol,) = sv.volumes
    item = sv.qa.get("missing slices")
    assert item is not None and item.status is Status.WARNING
    assert f"{missing} slice(s) missing" in item.detail, item.detail
    assert any(n.startswith("resampled") for n in vol.notes)
    # The grid is the complete acquisition grid ...
    assert vol.shape[0] == 16 and vol.spacing[0] == pytest.approx(5.0, abs=1e-6)
    z = vol.index_to_lps(np.stack([np.arange(16), np.zeros(16), np.zeros(16)], 1))[:, 2]
    np.testing.assert_allclose(z, [sl.rounded().ipp[2] for sl in full], atol=1e-4)
    # ... acquired slices are kept exactly, missing ones are linear between their neighbours.
    stored = {k: synth.stored_pixels(sl.rounded()).astype(np.float64) - 1024 for k, sl in enumerate(full)}
    for k in range(16):
        if k not in dropped:
            np.testing.assert_array_equal(vol.array[k], stored[k])
            continue
        lo = max(j for j in range(k) if j not in dropped)
        hi = min(j for j in range(k + 1, 16) if j not in dropped)
        w = (k - lo) / (hi - lo)
        np.testing.assert_allclose(vol.array[k], (1 - w) * stored[lo] + w * stored[hi], atol=0.51)


# ----------------------------------------------------------------------------- repeated positions

@pytest.mark.parametrize("kind", ["temporal", "echo"])
def test_repeated_positions_split_into_ordered_volumes(make_series: MakeSeries,
                                                       kind: Literal["temporal", "echo"]) -> None:
    # InstanceNumbers run backwards in time, so only the temporal/echo tags give the order.
    s = make_series(f"repeated-{kind}", synth.repeated_stack(synth.axial_stack(12, 4.0), 3, kind),
                    instance_numbers="reversed")
    sv = load_series(s.headers())
    assert len(sv.volumes) == 3
    item = sv.qa.get("repeated positions")
    assert item is not None and "split into 3 volumes" in item.action, item
    tag = 0 if kind == "temporal" else 2
    for i, (vol, geom) in enumerate(zip(sv.volumes, sv.plan.volumes, strict=True)):
        assert vol.shape == (12, synth.ROWS, synth.COLUMNS)
        assert {p.temporal[tag] for p in geom.planes} == {i + 1}
        assert_matches_phantom(vol, s, max_hu=8, mean_hu=2, t=float(i))
        for j in {0, 1, 2} - {i}:  # sensitivity: the other time points do not match
            assert phantom_error(vol, s, t=float(j))[1] > 100
    np.testing.assert_allclose(sv.volumes[0].affine, sv.volumes[2].affine)


# ----------------------------------------------------------------------------- order, multi-frame, identifiers

def test_order_comes_from_geometry_not_instance_number_or_file_name(make_series: MakeSeries) -> None:
    base = synth.axial_stack(20, 4.0)
    ordered = make_series("order-plain", base, instance_numbers="position", shuffle_names=False)
    backwards = make_series("order-reversed", base, instance_numbers="reversed", shuffle_names=False)
    scrambled = make_series("order-random", base, instance_numbers="random", shuffle_names=True, seed=7)
    ref = load_series(ordered.headers()).volumes[0]
    for s in (backwards, scrambled):
        headers = s.headers()
        by_name = sorted(headers, key=lambda h: h.ref)
        by_number = sorted(headers, key=lambda h: -(h.instance_number or 0))
        for hs in (headers, by_name, by_number):
            vol = load_series(hs).volumes[0]
            np.testing.assert_array_equal(vol.array, ref.array)
            np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-9)
    # Sensitivity: stacking the scrambled files by InstanceNumber or by name gives another volume.
    for key in ("instance_number", "ref"):
        hs = sorted(scrambled.headers(), key=lambda h: getattr(h, key))
        by_key = np.stack([pydicom.dcmread(h.ref).pixel_array for h in hs]).astype(np.int16) - 1024
        assert not np.array_equal(by_key, ref.array)


@pytest.mark.parametrize("per_frame_rescale", [False, True], ids=["shared-rescale", "per-frame-rescale"])
def test_enhanced_multiframe_equals_the_same_series_as_single_frames(make_series: MakeSeries,
                                                                    per_frame_rescale: bool) -> None:
    base = synth.axial_stack(16, 4.0)
    single = make_series("mf-single", base)
    multi = make_series(f"mf-enhanced-{per_frame_rescale}", base, enhanced=True, seed=3,
                        per_frame_rescale=per_frame_rescale)
    assert len(multi.files) == 1
    header = read_header_path(multi.files[0])
    assert header.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2.1" and header.number_of_frames == 16
    intercepts = {f.intercept for f in header.frames}
    assert intercepts == ({-1024.0, -1016.0, -1008.0} if per_frame_rescale else {-1024.0})
    a, b = load_series(single.headers()), load_series(multi.headers())
    np.testing.assert_array_equal(b.volumes[0].array, a.volumes[0].array)
    np.testing.assert_allclose(b.volumes[0].affine, a.volumes[0].affine, atol=1e-9)
    assert [i.status for i in b.qa.items] == [i.status for i in a.qa.items]
    assert_matches_phantom(b.volumes[0], multi, max_hu=8, mean_hu=2)


def test_enhanced_multiframe_with_temporal_index_makes_ordered_volumes(make_series: MakeSeries) -> None:
    base = synth.axial_stack(10, 4.0)
    single = make_series("mf4d-single", synth.repeated_stack(base, 2))
    multi = make_series("mf4d-enhanced", synth.repeated_stack(base, 2), enhanced=True, seed=5)
    a, b = load_series(single.headers()), load_series(multi.headers())
    assert len(b.volumes) == 2
    for va, vb in zip(a.volumes, b.volumes, strict=True):
        np.testing.assert_array_equal(vb.array, va.array)
    assert_matches_phantom(b.volumes[1], multi, max_hu=8, mean_hu=2, t=1.0)


def test_empty_uids_still_make_one_complete_series(make_series: MakeSeries) -> None:
    s = make_series("empty-uids", synth.axial_stack(12, 4.0), empty_uids=True)
    headers = s.headers()
    raw = pydicom.dcmread(s.files[0], stop_before_pixels=True)
    assert raw.StudyInstanceUID == "" and raw.SeriesInstanceUID == "" and raw.SOPInstanceUID == ""
    assert len({h.sop_instance_uid for h in headers}) == 12  # taken from the file meta
    groups = [g for g in group_series(headers) if g.kind == "image"]
    assert len(groups) == 1 and len(groups[0].headers) == 12
    sv = load_series(groups[0].headers)
    assert sv.volumes[0].shape[0] == 12 and sv.qa.get("duplicates") is None
    assert_matches_phantom(sv.volumes[0], s, max_hu=8, mean_hu=2)


def test_several_acquisition_numbers_in_one_stack_stay_one_volume(make_series: MakeSeries) -> None:
    base = synth.axial_stack(12, 4.0)
    mixed = [replace(sl, acquisition=1 + k // 4) for k, sl in enumerate(base)]
    s = make_series("acquisitions", mixed)
    headers = s.headers()
    assert {h.acquisition_number for h in headers} == {1, 2, 3}
    groups = [g for g in group_series(headers) if g.kind == "image"]
    assert len(groups) == 1
    sv = load_series(headers)
    assert len(sv.volumes) == 1 and sv.volumes[0].shape[0] == 12
    assert sv.qa.get("repeated positions").status is Status.OK  # type: ignore[union-attr]
    assert_matches_phantom(sv.volumes[0], s, max_hu=8, mean_hu=2)


# ----------------------------------------------------------------------------- bad files

def test_bad_files_are_rejected_with_a_reason_and_the_rest_loads(tmp_path: Path) -> None:
    s = synth.write_series(tmp_path / "series", synth.axial_stack(10, 4.0), name="withbad")
    bad = synth.write_bad_files(tmp_path / "series")
    paths = sorted((tmp_path / "series").iterdir())
    headers, errors = synth.read_headers(paths)
    assert set(errors) == set(bad.values())
    assert "not a DICOM file" in errors[bad["text"]]
    assert "truncated" in errors[bad["truncated"]]
    assert "without pixel data" in errors[bad["no_pixels"]]
    assert "truncated" in errors[bad["cut_header"]]
    assert "truncated" in errors[bad["cut_preamble"]]
    for path in bad.values():
        with pytest.raises(UnreadableFileError) as info:
            read_header_path(path)
        assert str(path) in str(info.value)  # the message names the file
    sv = load_series(headers)
    assert sv.volumes[0].shape[0] == 10
    assert_matches_phantom(sv.volumes[0], s, max_hu=8, mean_hu=2)


def test_synthetic_files_are_valid_ct_objects(make_series: MakeSeries) -> None:
    """The test input itself: proper file meta, explicit VR LE, valid UIDs, pixels as intended."""
    s = make_series("axial", synth.axial_stack(20, 4.0))
    for path, spec in list(zip(s.files, s.slices, strict=True))[:3]:
        ds = pydicom.dcmread(path)
        assert ds.preamble is not None and ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
            assert pydicom.uid.UID(uid).is_valid
        np.testing.assert_array_equal(ds.pixel_array, synth.stored_pixels(spec))
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(hu, synth.slice_hu(spec), atol=0.5 + 1e-9)
