"""Findings measured from label maps with a known answer.

Every shape is digitised from its analytic definition at the LPS centre of each
voxel (through the volume's own affine), on anisotropic grids that are axial,
oblique and sagittal/coronal, so a swapped axis, a wrong spacing or a plane
measured in index space instead of patient space gives a wrong number.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

import inference.findings.measure as findings_mod
from inference.errors import GeometryError, ModelError
from inference.findings import Findings, Lesion, StructureFinding, coverage_caution
from inference.findings.geometry import voxel_width
from inference.findings.measure import compute_findings, label_statistics
from inference.labels import Label, LabelTable, readable_name
from inference.volume import Volume, affine_from_geometry

FloatArray = npt.NDArray[np.float64]
SPACING = (2.5, 0.7, 0.9)  # (slice, row, column) mm: all different, so no axis can stand in for another
WHITE = (255, 255, 255)

AXIAL = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # row dir, column dir, slice dir
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0))
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))


def rotation(axis: int, degrees: float) -> FloatArray:
    """Right-handed rotation matrix about LPS axis ``axis``."""
    a = math.radians(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
    return r


_OBLIQUE_R = rotation(2, 25.0) @ rotation(0, 20.0)
OBLIQUE = (tuple(_OBLIQUE_R[:, 0]), tuple(_OBLIQUE_R[:, 1]), tuple(_OBLIQUE_R[:, 2]))


def make_volume(shape: tuple[int, int, int], directions: tuple[tuple[float, ...], ...],
                centre_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
                array: npt.NDArray[np.generic] | None = None, units: str = "HU") -> Volume:
    """A volume whose grid centre lies at ``centre_lps``, with the given (row, column, slice) directions."""
    aff = affine_from_geometry((0.0, 0.0, 0.0), directions[0], directions[1], directions[2], SPACING)
    aff[:3, 3] = np.asarray(centre_lps) - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    arr = np.zeros(shape, dtype=np.int16) if array is None else array
    return Volume(arr, aff, modality="CT" if units == "HU" else "MR", units=units)


def ellipsoid(volume: Volume, centre: npt.ArrayLike, semi: tuple[float, float, float],
              axes: FloatArray | None = None) -> npt.NDArray[np.bool_]:
    """Voxels whose LPS centre lies inside the ellipsoid (semi-axes along the columns of ``axes``)."""
    idx = np.indices(volume.shape).reshape(3, -1).T
    p = volume.index_to_lps(idx) - np.asarray(centre, dtype=np.float64)
    q = p @ (np.eye(3) if axes is None else axes)
    inside = ((q / np.asarray(semi)) ** 2).sum(axis=1) < 1.0
    return np.asarray(inside.reshape(volume.shape), dtype=np.bool_)


def lesion_table(*extra: Label) -> LabelTable:
    return LabelTable((Label(1, "nodule", WHITE, lesion=True), *extra))


def only_lesion(f: Findings) -> Lesion:
    assert len(f.lesions) == 1, f.lesions
    return f.lesions[0]


def structure(f: Findings, name: str) -> StructureFinding:
    found = f.structure(name)
    assert found is not None, f"no structure {name!r} in {[s.name for s in f.structures]}"
    return found


def in_plane_width(volume: Volume, direction: npt.ArrayLike) -> float:
    """Width of one voxel of ``volume`` projected on an axial-plane direction (x, y)."""
    return voxel_width(volume.affine[:2, :3], np.asarray(direction, dtype=np.float64))


# ----------------------------------------------------------------------------- spheres and ellipsoids

@pytest.mark.parametrize("centre", [(30.3, -4.2, 2.9), (-31.1, 6.6, -3.7)])
def test_sphere_volume_centroid_side_and_diameters(centre: tuple[float, float, float]) -> None:
    vol = make_volume((40, 100, 110), AXIAL)
    radius = 8.0
    lab = ellipsoid(vol, centre, (radius, radius, radius)).astype(np.uint8)
    les = only_lesion(compute_findings(vol, lab, lesion_table()))

    true_ml = 4.0 / 3.0 * math.pi * radius**3 / 1000.0
    assert les.volume_ml == pytest.approx(true_ml, rel=0.03)
    assert les.voxels == int(lab.sum())
    # centroid within half a voxel, checked in index space (where "a voxel" means the same on every axis)
    assert np.all(np.abs(np.asarray(les.centroid_index) - vol.lps_to_index(centre)) < 0.5)
    assert np.allclose(les.centroid_lps, vol.index_to_lps(les.centroid_index))
    assert les.side == ("left" if centre[0] > 0 else "right")  # grid centre x = 0 is the midline; +x is left
    # diameters within half a voxel of the true one; a voxel's width depends on the direction, up to
    # its diagonal (the long axis of a sphere can run in any direction)
    half_voxel_2d = 0.5 * math.hypot(SPACING[1], SPACING[2])
    half_voxel_3d = 0.5 * math.hypot(*SPACING)
    assert les.long_axis_mm == pytest.approx(2 * radius, abs=half_voxel_2d)
    assert les.short_axis_mm == pytest.approx(2 * radius, abs=2 * half_voxel_2d)
    assert les.long_axis_3d_mm == pytest.approx(2 * radius, abs=half_voxel_3d)
    assert les.short_axis_3d_mm == pytest.approx(2 * radius, abs=2 * half_voxel_3d)

    # the axial slice of largest area is the one through the centre
    assert les.axial_slice == round(vol.lps_to_index(centre)[0])


@pytest.mark.parametrize(("name", "directions", "shape"), [
    ("axial", AXIAL, (40, 90, 90)),
    ("oblique", OBLIQUE, (70, 80, 80)),
    ("sagittal", SAGITTAL, (40, 90, 90)),
    ("coronal", CORONAL, (40, 90, 90)),
])
def test_ellipsoid_axes_are_measured_in_the_patients_axial_plane(
        name: str, directions: tuple[tuple[float, ...], ...], shape: tuple[int, int, int]) -> None:
    vol = make_volume(shape, directions, centre_lps=(10.0, -20.0, 40.0))
    centre = np.array([22.4, -17.3, 41.1])
    a, b, c = 12.0, 7.0, 8.0  # axial semi-axes a > b, rotated 30 degrees in the axial plane; c along z
    axes = rotation(2, 30.0)
    lab = ellipsoid(vol, centre, (a, b, c), axes).astype(np.uint8)
    les = only_lesion(compute_findings(vol, lab, lesion_table()))

    assert les.volume_ml == pytest.approx(4.0 / 3.0 * math.pi * a * b * c / 1000.0, rel=0.03)
    assert np.all(np.abs(np.asarray(les.centroid_index) - vol.lps_to_index(centre)) < 0.5)
    # one voxel = the voxel's width along the axis concerned, in the axial plane
    assert les.long_axis_mm == pytest.approx(2 * a, abs=in_plane_width(vol, axes[:2, 0]))
    assert les.short_axis_mm == pytest.approx(2 * b, abs=in_plane_width(vol, axes[:2, 1]))
    assert les.long_axis_3d_mm == pytest.approx(2 * a, abs=voxel_width(vol.affine[:3, :3], axes[:, 0]))
    assert les.short_axis_3d_mm == pytest.approx(2 * b, abs=voxel_width(vol.affine[:3, :3], axes[:, 1]))
    # the largest axial section is at the centre's z: axial_slice indexes the grid axis closest to z
    z_axis = int(np.argmax(np.abs(vol.affine[2, :3])))
    assert abs(les.axial_slice - vol.lps_to_index(centre)[z_axis]) <= 1.0
    assert les.side == "left"


def test_axial_axes_differ_from_index_plane_axes_on_a_sagittal_grid() -> None:
    """A lesion long in z but small in x/y: the axial long axis must be small, the 3D one long."""
    vol = make_volume((40, 90, 90), SAGITTAL)
    lab = ellipsoid(vol, (3.3, 1.2, -0.4), (4.0, 5.0, 20.0)).astype(np.uint8)
    les = only_lesion(compute_findings(vol, lab, lesion_table()))
    assert les.long_axis_mm == pytest.approx(10.0, abs=in_plane_width(vol, (0.0, 1.0)))
    assert les.short_axis_mm == pytest.approx(8.0, abs=in_plane_width(vol, (1.0, 0.0)))
    assert les.long_axis_3d_mm == pytest.approx(40.0, abs=SPACING[1])


def test_lesion_names_the_source_image_nearest_its_centre() -> None:
    """With the source images known, a lesion quotes SeriesNumber and the InstanceNumber of the nearest one."""
    from inference.volume import SourceImage, SourceImages

    vol = make_volume((12, 40, 40), AXIAL)
    positions = [float(vol.index_to_lps([k, 0, 0])[2]) for k in range(12)]
    numbers = [90 - 2 * k for k in range(12)]  # from the top down, every other number
    source = SourceImages(7, (0.0, 0.0, 1.0), tuple(SourceImage(p, n) for p, n in zip(positions, numbers,
                                                                                          strict=True)))
    vol = Volume(vol.array, vol.affine, "CT", "HU", source=source)
    centre = vol.index_to_lps([3.2, 20.0, 20.0])
    les = only_lesion(compute_findings(vol, ellipsoid(vol, centre, (4.0, 4.0, 3.0)).astype(np.uint8),
                                       lesion_table()))
    assert round(les.centroid_index[0]) == 3
    assert (les.series_number, les.instance_number) == (7, 90 - 2 * 3)
    plain = only_lesion(compute_findings(make_volume((12, 40, 40), AXIAL),
                                         ellipsoid(vol, centre, (4.0, 4.0, 3.0)).astype(np.uint8), lesion_table()))
    assert (plain.series_number, plain.instance_number) == (None, None), "no source images, no image named"


def test_single_voxel_lesion_measures_one_voxel_not_zero() -> None:
    vol = make_volume((5, 6, 7), AXIAL)
    lab = np.zeros(vol.shape, dtype=np.uint8)
    lab[2, 3, 4] = 1
    les = only_lesion(compute_findings(vol, lab, lesion_table()))
    assert les.long_axis_mm == pytest.approx(max(SPACING[1:]))
    assert les.short_axis_mm == pytest.approx(min(SPACING[1:]))
    assert les.long_axis_3d_mm == pytest.approx(max(SPACING))
    assert les.short_axis_3d_mm == pytest.approx(min(SPACING))
    assert les.axial_slice == 2
    assert les.centroid_index == (2.0, 3.0, 4.0)


# ----------------------------------------------------------------------------- lesion components

def test_separate_blobs_are_lesions_numbered_by_volume_with_their_location() -> None:
    vol = make_volume((30, 100, 120), AXIAL)
    right_lung, left_lung = -40.0, 40.0
    table = lesion_table(Label(2, "lung_right", WHITE), Label(3, "lung_left", WHITE), Label(4, "body", WHITE))
    lab = np.zeros(vol.shape, dtype=np.uint8)
    lab[ellipsoid(vol, (0.0, 0.0, 0.0), (54.0, 34.0, 100.0))] = 4
    lab[ellipsoid(vol, (right_lung, 0.0, 0.0), (14.0, 20.0, 100.0))] = 2
    lab[ellipsoid(vol, (left_lung, 0.0, 0.0), (14.0, 20.0, 100.0))] = 3
    small = ellipsoid(vol, (right_lung, 3.0, 1.0), (3.0, 3.0, 4.0))
    large = ellipsoid(vol, (left_lung, -2.0, -2.0), (6.0, 5.0, 6.0))
    lab[small] = 1
    lab[large] = 1
    f = compute_findings(vol, lab, table)

    assert [les.number for les in f.lesions] == [1, 2]
    first, second = f.lesions
    assert (first.voxels, second.voxels) == (int(large.sum()), int(small.sum()))
    assert (first.location, first.side) == ("left lung", "left")
    assert (second.location, second.side) == ("right lung", "right")
    assert structure(f, "nodule").voxels == first.voxels + second.voxels
    # both lungs run through the whole scan: no zones, and the only cautions say so
    assert f.cautions == [coverage_caution(side, ("top", "bottom")) for side in ("right", "left")]
    assert (first.zone.split(",")[0], second.zone.split(",")[0]) == ("left lung", "right lung")


def test_components_are_26_connected_and_location_ignores_background_and_lesions() -> None:
    vol = make_volume((6, 8, 8), AXIAL)
    table = LabelTable((Label(1, "nodule", WHITE, lesion=True), Label(2, "mass", WHITE, lesion=True),
                        Label(5, "liver", WHITE)))
    lab = np.zeros(vol.shape, dtype=np.uint8)
    lab[2, 2, 2] = lab[3, 3, 3] = 1  # touching by a corner only: one lesion under 26-connectivity
    lab[3, 4, 4] = 2  # another lesion label beside it: not a location
    lab[4, 4, 4] = 5  # a single liver voxel in the shell: the location, though background dominates
    lab[0, 7, 7] = 1  # far away, all background around: no location
    f = compute_findings(vol, lab, table)
    nodules = [les for les in f.lesions if les.label == 1]
    assert [(les.number, les.voxels) for les in nodules] == [(1, 2), (2, 1)]
    assert nodules[0].location == "liver"
    assert nodules[1].location == ""
    mass = next(les for les in f.lesions if les.label == 2)
    assert (mass.number, mass.location) == (1, "liver")  # shell: nodule voxels (lesion) and liver


def test_readable_names_put_the_side_first() -> None:
    assert readable_name("lung_right") == "right lung"
    assert readable_name("Kidney Left") == "left kidney"
    assert readable_name("lung_upper_lobe_left") == "left lung upper lobe"
    assert readable_name("liver") == "liver"


# ----------------------------------------------------------------------------- structures

def test_structure_statistics_equal_numpy_on_the_mask() -> None:
    rng = np.random.default_rng(7)
    shape = (23, 37, 41)
    img = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    vol = make_volume(shape, OBLIQUE, array=img)
    lab = rng.integers(0, 4, size=shape).astype(np.uint8)
    lab[:, :5] = 0
    lab[10:, 20:] = np.where(lab[10:, 20:] == 3, 3, 0)  # label 3 has a different bounding box
    table = LabelTable.from_names(["a", "b", "c", "never_present"])
    f = compute_findings(vol, lab, table)

    assert [s.label for s in f.structures] == [1, 2, 3]  # absent label 4 is skipped
    for s in f.structures:
        mask = lab == s.label
        idx = np.argwhere(mask)
        assert s.voxels == int(mask.sum())
        assert s.volume_ml == pytest.approx(mask.sum() * abs(np.linalg.det(vol.affine[:3, :3])) / 1000.0)
        assert s.mean == pytest.approx(img[mask].mean(), rel=1e-12, abs=1e-9)
        assert s.std == pytest.approx(img[mask].std(), rel=1e-12)
        assert s.units == "HU"
        assert s.bbox_min_index == tuple(idx.min(axis=0))
        assert s.bbox_max_index == tuple(idx.max(axis=0))
        assert np.allclose(s.centroid_index, idx.mean(axis=0))
        assert np.allclose(s.centroid_lps, vol.index_to_lps(idx.mean(axis=0)))


def test_statistics_do_not_depend_on_the_slab_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-slice slabs and one slab for the whole map merge to the same numbers (mean/std across slabs)."""
    rng = np.random.default_rng(3)
    shape = (17, 20, 30)
    img = (1.0e6 + rng.normal(0.0, 1.0, size=shape)).astype(np.float64)  # large offset, small spread
    lab = rng.integers(0, 3, size=shape).astype(np.int32)
    monkeypatch.setattr(findings_mod, "SLAB_VOXELS", 1)
    per_slice = label_statistics(lab, img)
    monkeypatch.setattr(findings_mod, "SLAB_VOXELS", lab.size)
    whole = label_statistics(lab, img)
    for v in (1, 2):
        assert per_slice[v].mean == pytest.approx(whole[v].mean, rel=1e-14)
        assert per_slice[v].std == pytest.approx(whole[v].std, rel=1e-9)
        assert per_slice[v].std == pytest.approx(img[lab == v].std(), rel=1e-9)
        assert per_slice[v].centroid_index == pytest.approx(whole[v].centroid_index)


def test_mr_volume_has_no_units_but_still_intensities() -> None:
    rng = np.random.default_rng(5)
    img = rng.random((8, 9, 10)).astype(np.float32) * 500
    vol = make_volume(img.shape, AXIAL, array=img, units="")
    lab = np.zeros(img.shape, dtype=np.uint8)
    lab[2:5, 3:7, 1:4] = 1
    s = compute_findings(vol, lab, LabelTable.from_names(["prostate"])).structures[0]
    assert s.units == ""
    assert s.mean == pytest.approx(float(img[lab == 1].astype(np.float64).mean()))
    assert s.std == pytest.approx(float(img[lab == 1].astype(np.float64).std()))


def test_side_is_relative_to_the_body_midline_when_there_is_one() -> None:
    vol = make_volume((10, 40, 80), AXIAL)  # grid centre at x = 0
    lab = np.zeros(vol.shape, dtype=np.uint8)
    body = ellipsoid(vol, (20.0, 0.0, 0.0), (18.0, 12.0, 100.0))  # patient lies off-centre, to the left
    lab[body] = 1
    lab[ellipsoid(vol, (22.0, 0.0, 0.0), (3.0, 3.0, 100.0))] = 2
    with_body = compute_findings(vol, lab, LabelTable.from_names(["body", "spine"]))
    assert structure(with_body, "spine").side == "midline"  # 2 mm from the body's centroid
    without_body = compute_findings(vol, lab, LabelTable.from_names(["skin", "spine"]))
    assert structure(without_body, "spine").side == "left"  # 22 mm left of the grid centre


def test_large_label_values_and_unnamed_values() -> None:
    vol = make_volume((4, 5, 6), AXIAL)
    lab = np.zeros(vol.shape, dtype=np.uint16)
    lab[0, 0, :2] = 300
    lab[3, 4, 5] = 40000
    lab[1, 1, 1] = 7  # not in the table: still reported, by number
    table = LabelTable((Label(300, "a", WHITE), Label(40000, "b", WHITE)))
    f = compute_findings(vol, lab, table)
    assert [(s.label, s.name, s.voxels) for s in f.structures] == [(7, "label 7", 1), (300, "a", 2), (40000, "b", 1)]
    assert structure(f, "b").bbox_min_index == (3, 4, 5)


def test_bad_label_maps_are_refused() -> None:
    vol = make_volume((4, 5, 6), AXIAL)
    with pytest.raises(GeometryError, match="shape"):
        compute_findings(vol, np.zeros((4, 6, 5), dtype=np.uint8), lesion_table())
    with pytest.raises(ModelError, match="integers"):
        compute_findings(vol, np.zeros(vol.shape, dtype=np.float32), lesion_table())
    with pytest.raises(ModelError, match="negative"):
        compute_findings(vol, -np.ones(vol.shape, dtype=np.int8), lesion_table())


def test_empty_label_map_gives_empty_findings() -> None:
    vol = make_volume((4, 5, 6), AXIAL)
    f = compute_findings(vol, np.zeros(vol.shape, dtype=np.uint8), lesion_table())
    assert f.structures == [] and f.lesions == [] and f.cautions == []
