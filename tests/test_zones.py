"""Where a lung lesion lies: zone (equal-volume thirds of that lung), central or peripheral, lobe when lobes are
labelled. Synthetic lung masks with known geometry, TotalSegmentator's real lobe labels and the Chest Imaging
Platform's real lung thirds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from inference.findings import Findings, Lesion, LungPart, Zone, coverage_caution, cut_lungs, lung_part, parse_zone
from inference.findings.measure import compute_findings
from inference.labels import Label, LabelTable
from inference.volume import Volume

WHITE = (255, 255, 255)
NODULE, BODY, RIGHT, LEFT = 1, 2, 3, 4
SPACING = (5.0, 4.0, 4.0)  # slice, row, column
SHAPE = (64, 80, 110)
# equal-volume thirds of an ellipsoid split where the cap above holds 1/3: h / (2 R) = 0.3869
CAP_THIRD = 0.3869


def _volume(shape: tuple[int, int, int] = SHAPE, centre_z: float = 0.0) -> Volume:
    """An axial volume (LPS axes along column, row, slice) centred on (0, 0, centre_z)."""
    aff = np.eye(4)
    aff[0, 2], aff[1, 1], aff[2, 0] = SPACING[2], SPACING[1], SPACING[0]
    aff[:3, 3] = np.array([0.0, 0.0, centre_z]) - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return Volume(np.zeros(shape, dtype=np.int16), aff, modality="CT", units="HU")


def _ellipsoid(vol: Volume, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> npt.NDArray[
        np.bool_]:
    idx = np.indices(vol.shape).reshape(3, -1).T
    p = (vol.index_to_lps(idx) - np.asarray(centre)) / np.asarray(radii)
    return np.asarray(((p ** 2).sum(axis=1) < 1.0).reshape(vol.shape))


def _chest(vol: Volume, lungs: dict[int, tuple[float, float, float]], radii: tuple[float, float, float]
           ) -> npt.NDArray[np.uint8]:
    lab = np.zeros(vol.shape, dtype=np.uint8)
    lab[_ellipsoid(vol, (0.0, 0.0, 0.0), (130.0, 90.0, 1000.0))] = BODY
    for value, centre in lungs.items():
        lab[_ellipsoid(vol, centre, radii)] = value
    return lab


def _table(*extra: Label) -> LabelTable:
    return LabelTable((Label(NODULE, "lung_nodule", WHITE, lesion=True), Label(BODY, "body", WHITE), *extra))


def _findings(vol: Volume, lab: npt.NDArray[np.uint8], table: LabelTable,
              lesions: list[tuple[float, float, float]]) -> Findings:
    for centre in lesions:
        lab[_ellipsoid(vol, centre, (5.0, 5.0, 5.0))] = NODULE
    return compute_findings(vol, lab, table)


def _at(f: Findings, x: float, z: float) -> Lesion:
    return min(f.lesions, key=lambda les: abs(les.centroid_lps[0] - x) + abs(les.centroid_lps[2] - z))


LUNGS = {RIGHT: (-55.0, 0.0, 0.0), LEFT: (55.0, 0.0, 0.0)}
LUNG_RADII = (38.0, 55.0, 120.0)
LUNG_TABLE = _table(Label(RIGHT, "lung_right", WHITE), Label(LEFT, "lung_left", WHITE))


@pytest.mark.parametrize(("name", "part"), [
    ("lung_right", LungPart("right")),
    ("lung_left", LungPart("left")),
    ("lung_upper_lobe_right", LungPart("right", "upper")),  # TotalSegmentator / MONAI whole-body names
    ("lung_middle_lobe_right", LungPart("right", "middle")),
    ("lung_lower_lobe_left", LungPart("left", "lower")),
    ("Right Upper Lobe", LungPart("right", "upper")),
    ("LUL", LungPart("left", "upper")),
    ("lingula", LungPart("left", "lingula")),
    ("lung_nodule", None),
    ("lung_vessels", None),
    ("lung_trachea_bronchia", None),
    ("lungs", None),
    ("upper_body", None),
    ("liver", None),
])
def test_lung_labels_are_recognised_by_name(name: str, part: LungPart | None) -> None:
    assert lung_part(name) == part


def test_zone_text_round_trips() -> None:
    for zone in (Zone("right", "upper", "zone", "peripheral"), Zone("left", "lower", "lobe", "central"),
                 Zone("left", "lingula", "lobe", "peripheral"), Zone("right", "", "", "central"), Zone("left")):
        assert parse_zone(zone.text()) == zone
    assert Zone("right", "upper", "zone", "peripheral").text() == "right upper zone, peripheral"
    assert parse_zone("") is None and parse_zone("right lung base") is None


def test_thirds_are_equal_volume_thirds_of_that_lung() -> None:
    vol = _volume()
    lab = _chest(vol, LUNGS, LUNG_RADII)
    top, height = 120.0, 240.0
    upper_split = top - CAP_THIRD * height  # 27.1 mm; equal heights would split at 40 mm
    f = _findings(vol, lab, LUNG_TABLE, [(-55.0, 0.0, 95.0), (-55.0, 0.0, upper_split + 6.0),
                                         (-55.0, 0.0, upper_split - 6.0), (55.0, 0.0, -95.0), (55.0, 0.0, 0.0)])
    assert _at(f, -55.0, 95.0).zone.startswith("right upper zone")
    assert _at(f, -55.0, upper_split + 6.0).zone.startswith("right upper zone")  # below the equal-height split
    assert _at(f, -55.0, upper_split - 6.0).zone.startswith("right middle zone")
    assert _at(f, 55.0, -95.0).zone.startswith("left lower zone")
    assert _at(f, 55.0, 0.0).zone.startswith("left middle zone")
    assert f.cautions == []  # both lungs lie wholly inside the scan range


def test_central_is_the_inner_third_from_the_mediastinal_to_the_costal_surface() -> None:
    vol = _volume()
    lab = _chest(vol, LUNGS, LUNG_RADII)
    # at z = 0 the right lung spans x = -93..-17: mediastinal surface at -17, costal surface at -93
    f = _findings(vol, lab, LUNG_TABLE, [(-25.0, 0.0, 0.0), (-42.0, 0.0, 60.0), (-85.0, 0.0, -40.0),
                                         (60.0, -35.0, 30.0)])
    assert _at(f, -25.0, 0.0).zone == "right middle zone, central"
    assert _at(f, -42.0, 60.0).zone == "right upper zone, central"  # 20 mm into a lung 55 mm across there
    assert _at(f, -85.0, -40.0).zone == "right lower zone, peripheral"
    assert _at(f, 60.0, 30.0).zone == "left upper zone, peripheral"  # anterior, near the costal surface


def test_a_lesion_outside_the_lungs_has_no_zone() -> None:
    vol = _volume()
    lab = _chest(vol, LUNGS, LUNG_RADII)
    f = _findings(vol, lab, LUNG_TABLE, [(0.0, 70.0, 0.0)])  # behind the mediastinum, in the body label only
    assert [les.zone for les in f.lesions] == [""]


def test_a_lung_cut_by_the_scan_range_gets_no_thirds_and_a_caution() -> None:
    vol = _volume(centre_z=-60.0)  # the scan stops at z = +97.5 mm, below both apices
    lab = _chest(vol, LUNGS, LUNG_RADII)
    f = _findings(vol, lab, LUNG_TABLE, [(-85.0, 0.0, -40.0), (25.0, 0.0, 60.0)])
    assert _at(f, -85.0, -40.0).zone == "right lung, peripheral"
    assert _at(f, 25.0, 60.0).zone == "left lung, central"
    assert f.cautions == [coverage_caution("right", ("top",)), coverage_caution("left", ("top",))]
    assert cut_lungs(f.cautions) == {"right": frozenset({"top"}), "left": frozenset({"top"})}


def test_lobe_labels_name_the_lobe_whatever_the_height() -> None:
    vol = _volume()
    lab = _chest(vol, LUNGS, LUNG_RADII)
    z = vol.index_to_lps(np.indices(vol.shape).reshape(3, -1).T)[:, 2].reshape(vol.shape)
    y = vol.index_to_lps(np.indices(vol.shape).reshape(3, -1).T)[:, 1].reshape(vol.shape)
    right, left = lab == RIGHT, lab == LEFT
    # an oblique fissure: the lower lobe reaches high posteriorly (+y), the upper lobe low anteriorly
    lower = z < 1.5 * y - 10.0
    lab[right & lower], lab[right & ~lower & (z < 20.0)], lab[right & ~lower & (z >= 20.0)] = 5, 6, 7
    lab[left & lower], lab[left & ~lower] = 8, 9
    table = _table(Label(5, "lung_lower_lobe_right", WHITE), Label(6, "lung_middle_lobe_right", WHITE),
                   Label(7, "lung_upper_lobe_right", WHITE), Label(8, "lung_lower_lobe_left", WHITE),
                   Label(9, "lung_upper_lobe_left", WHITE))
    f = _findings(vol, lab, table, [(-60.0, 40.0, 40.0), (-60.0, -30.0, 60.0), (-60.0, -35.0, 0.0),
                                    (60.0, -40.0, -40.0)])
    assert _at(f, -60.0, 40.0).zone.startswith("right lower lobe")  # upper zone by height, lower lobe by label
    assert _at(f, -60.0, 60.0).zone.startswith("right upper lobe")
    assert _at(f, -60.0, 0.0).zone.startswith("right middle lobe")
    assert _at(f, 60.0, -40.0).zone.startswith("left upper lobe")  # lower zone by height
    assert f.cautions == []


# ----------------------------------------------------------------------------- real label maps


def _nifti_volume(ct: Path, seg: Path) -> tuple[Volume, npt.NDArray[np.int64]]:
    import nibabel as nib

    from workstation.dicomio.nifti import volume_from_nifti_layout

    ct_img, seg_img = nib.load(str(ct)), nib.load(str(seg))
    arr, affine = volume_from_nifti_layout(np.asarray(ct_img.dataobj), ct_img.affine)
    ref, _ = volume_from_nifti_layout(np.asarray(seg_img.dataobj), seg_img.affine)
    return Volume(arr.astype(np.int16), affine, modality="CT", units="HU"), np.asarray(ref, dtype=np.int64)


def _deepest(mask: npt.NDArray[np.bool_]) -> tuple[int, int, int]:
    """The voxel of ``mask`` farthest from its boundary."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask)
    k, r, c = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return int(k), int(r), int(c)


def test_totalsegmentator_lobes_place_lesions_by_lobe(shared_data: Path) -> None:
    """TotalSegmentator's own lobe segmentation of a real CT (v2 'total' classes 10-14, named as in its
    map_to_binary.py): a lesion painted inside a lobe is reported in that lobe."""
    root = shared_data / "ct_abdomen_totalseg"
    vol, ref = _nifti_volume(root / "example_ct_sm.nii.gz", root / "example_seg.nii.gz")
    names = {10: "lung_upper_lobe_left", 11: "lung_lower_lobe_left", 12: "lung_upper_lobe_right",
             13: "lung_middle_lobe_right", 14: "lung_lower_lobe_right"}
    lab = np.where(np.isin(ref, list(names)), ref, 0).astype(np.uint8)
    table = LabelTable((Label(200, "lung_nodule", WHITE, lesion=True),
                        *(Label(v, n, WHITE) for v, n in names.items())))
    spots = {value: _deepest(ref == value) for value in (14, 11, 10)}
    for k, r, c in spots.values():
        lab[k, r, c] = 200
    f = compute_findings(vol, lab, table)
    by_spot = {value: min(f.lesions, key=lambda les: float(np.abs(np.subtract(les.centroid_index, spot)).sum()))
               for value, spot in spots.items()}
    assert by_spot[14].zone.startswith("right lower lobe")
    assert by_spot[11].zone.startswith("left lower lobe")
    assert by_spot[10].zone.startswith("left upper lobe")  # the lingular tip at the same height as 11
    assert f.cautions == []  # lobes are labelled: no zones to withhold although only the bases are scanned


def test_thirds_agree_with_the_chest_imaging_platform_lung_thirds(shared_data: Path) -> None:
    """CIP's lung-thirds label map of a real COPDGene CT (regions 9-11 left, 12-14 right: upper, middle,
    lower): a lesion at the heart of each of CIP's six thirds is placed in the same third by our zones."""
    import SimpleITK as sitk  # noqa: N813 - the library's own convention

    root = shared_data / "cip_copdgene_10002K_ct64" / "Testing" / "Data" / "Input"
    img = sitk.ReadImage(str(root / "lm-64.nrrd"))
    region = sitk.GetArrayFromImage(img) % 256
    assert np.allclose(img.GetDirection(), np.eye(3).ravel())
    aff = np.eye(4)
    sx, sy, sz = img.GetSpacing()
    aff[0, 2], aff[1, 1], aff[2, 0] = sx, sy, sz
    aff[:3, 3] = img.GetOrigin()
    vol = Volume(sitk.GetArrayFromImage(sitk.ReadImage(str(root / "ct-64.nrrd"))).astype(np.int16), aff,
                 modality="CT", units="HU")
    thirds = {9: ("left", "upper"), 10: ("left", "middle"), 11: ("left", "lower"),
              12: ("right", "upper"), 13: ("right", "middle"), 14: ("right", "lower")}
    lab = np.zeros(region.shape, dtype=np.uint8)
    lab[np.isin(region, [12, 13, 14])] = RIGHT
    lab[np.isin(region, [9, 10, 11])] = LEFT
    spots = {value: _deepest(region == value) for value in thirds}
    for k, r, c in spots.values():
        lab[k, r, c] = NODULE
    f = compute_findings(vol, lab, LUNG_TABLE)
    assert len(f.lesions) == 6 and f.cautions == []
    for value, spot in spots.items():
        les = min(f.lesions, key=lambda x: float(np.abs(np.subtract(x.centroid_index, spot)).sum()))
        side, third = thirds[value]
        assert les.zone.startswith(f"{side} {third} zone"), (value, les.zone)
