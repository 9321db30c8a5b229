"""Body composition of the built-in CT model on real CTs, against TotalSegmentator's reference segmentations.

Inputs (``../shared/data/ct_abdomen_totalseg``): the contrast upper-abdomen DICOM
series (20 x 512 x 512, 0.98 mm pixels, 2 mm spacing; reference
``example_seg_dicom.nii.gz``) and the small 3 mm NIfTI abdomen CT of the same
project (``example_ct_sm.nii.gz``; reference ``example_seg.nii.gz``). For each it
prints where the muscle label lies (share of the muscle voxels inside organs,
in the arms, lateral to the rib cage), how much of the reference's back muscles
and psoas it covers, the vertebral level the model chose (or its reason for
withholding body composition), the muscle area on that slice against the
reference's muscle labels, and the analysis time.

Definitions (``figures``), all on the reference's own labels:

- *organs*: liver, spleen, stomach, colon, pancreas, kidneys, gallbladder,
  small bowel, duodenum, oesophagus, heart (those present). The share is of all
  muscle voxels; "beyond the edge" leaves out the organ's outermost voxel layer,
  where a 3 mm reference and the model may disagree by one voxel.
- *arms*: body regions of a slice apart from the trunk (the region holding the
  vertebrae), and anything within ``ARM_MM`` of a humerus.
- *lateral to the rib cage*: in slices where the ribs form the side walls
  (the outermost rib within ``CAGE_MM`` of the trunk's edge on both sides),
  beyond the outermost rib on either side, and beyond it by more than
  ``LATERAL_MARGIN_MM`` (the chest-wall muscles lying on the ribs, latissimus
  dorsi, serratus anterior and the obliques, are trunk muscle).
- *area on the level slice*: the reference labels only back muscles
  (autochthon) and iliopsoas, not the abdominal wall; the model's muscle inside
  those labels is compared with their area, and the model's whole trunk muscle
  area is printed beside it. Where the model withholds body composition the
  middle slice of the scan is used.

usage: python benchmarks/bench_body_composition.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import SHARED_DATA  # noqa: E402

DATA = SHARED_DATA / "ct_abdomen_totalseg"
ARM_MM = 40.0
LATERAL_MARGIN_MM = 10.0
CAGE_MM = 25.0
MUSCLE = 7  # inference.builtin_ct.table.MUSCLE

# TotalSegmentator v2 "total" classes (totalsegmentator/map_to_binary.py), the ones used here
TOTAL = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "liver": 5, "stomach": 6,
         "pancreas": 7, "esophagus": 15, "small_bowel": 18, "duodenum": 19, "colon": 20, "heart": 51,
         "humerus_left": 69, "humerus_right": 70, "autochthon_left": 86, "autochthon_right": 87,
         "iliopsoas_left": 88, "iliopsoas_right": 89}
ORGANS = ("liver", "spleen", "stomach", "colon", "pancreas", "kidney_right", "kidney_left", "gallbladder",
          "small_bowel", "duodenum", "esophagus", "heart")
VERTEBRAE = range(26, 51)
RIBS = range(92, 116)


def load_abdomen_dicom() -> tuple[Any, np.ndarray]:
    """The contrast upper-abdomen DICOM series and TotalSegmentator's reference on its grid."""
    import nibabel as nib

    from workstation.dicomio.headers import read_header_path
    from workstation.dicomio.nifti import volume_from_nifti_layout
    from workstation.dicomio.volume_builder import load_series

    folder = DATA / "example_ct_dicom"
    volume = load_series([read_header_path(p) for p in sorted(folder.iterdir()) if p.is_file()]).volumes[0]
    img = nib.load(str(DATA / "example_seg_dicom.nii.gz"))
    ref, affine = volume_from_nifti_layout(np.asarray(img.dataobj), img.affine)
    assert ref.shape == volume.shape and np.allclose(affine, volume.affine, atol=1e-3)
    labels = json.loads((DATA / "example_seg_dicom_labels_and_stats.json").read_text())["labels"]
    for lab in labels:  # the stored names agree with the class numbers used here
        assert TOTAL.get(lab["name"], lab["label"]) == lab["label"], lab
    return volume, np.asarray(ref)


def load_small_nifti() -> tuple[Any, np.ndarray]:
    """The small 3 mm NIfTI abdomen CT and its reference."""
    import nibabel as nib

    from inference.volume import Volume
    from workstation.dicomio.nifti import volume_from_nifti_layout

    ct, seg = nib.load(str(DATA / "example_ct_sm.nii.gz")), nib.load(str(DATA / "example_seg.nii.gz"))
    arr, affine = volume_from_nifti_layout(np.asarray(ct.dataobj), ct.affine)
    ref, _ = volume_from_nifti_layout(np.asarray(seg.dataobj), seg.affine)
    return Volume(arr.astype(np.int16), affine, modality="CT", units="HU"), np.asarray(ref)


def run(volume: Any) -> tuple[Any, float]:
    """The built-in model's output and its run time (s)."""
    from inference import CancelToken, DeviceChoice, RunContext
    from inference.builtin_ct import BuiltinCTModel

    ctx = RunContext(DeviceChoice("cpu", "CPU"), lambda f, s: None, CancelToken(), {})
    start = time.perf_counter()
    out = BuiltinCTModel().run(volume, ctx)
    return out, time.perf_counter() - start


def level_slice(out: Any) -> int | None:
    """The canonical slice the model measured body composition on (None when withheld)."""
    area = [m for m in out.measurements if m.name == "muscle area"]
    if not area:
        return None
    return int(area[0].method.split("canonical slice ")[1].split(",")[0])


def figures(volume: Any, out: Any, ref: np.ndarray) -> dict[str, Any]:
    """Where the model's muscle lies against the reference (see the module docstring)."""
    from inference.builtin_ct.grid import Canonical

    canon = Canonical.from_affine(volume.affine, volume.shape)
    lm, gt, hu = canon.view(out.labelmap), canon.view(ref), canon.view(volume.array)
    _, sy, sx = canon.spacing
    muscle = lm == MUSCLE
    n = int(muscle.sum())
    present = [o for o in ORGANS if (gt == TOTAL[o]).any()]
    organ = np.isin(gt, [TOTAL[o] for o in present])
    edge = organ & ~np.stack([ndi.binary_erosion(organ[z]) for z in range(organ.shape[0])])
    per_organ = {o: int((muscle & (gt == TOTAL[o])).sum()) for o in present}
    arms = np.zeros_like(muscle)
    lateral = {0.0: 0, LATERAL_MARGIN_MM: 0}
    cols = np.arange(gt.shape[2])
    humerus = np.isin(gt, [TOTAL["humerus_left"], TOTAL["humerus_right"]])
    for z in range(gt.shape[0]):
        body = ndi.binary_fill_holes(hu[z] > -300)
        lab, _ = ndi.label(body)
        vert = np.isin(gt[z], list(VERTEBRAE))
        trunk = np.bincount(lab[vert]).argmax() if vert.any() else np.bincount(lab.ravel())[1:].argmax() + 1
        arms[z] = (lab > 0) & (lab != trunk)
        if humerus[z].any():
            arms[z] |= ndi.distance_transform_edt(~humerus[z], sampling=(sy, sx)) <= ARM_MM
        rib_cols = np.nonzero(np.isin(gt[z], list(RIBS)).any(axis=0))[0]
        body_cols = np.nonzero((lab == trunk).any(axis=0))[0]
        cage = rib_cols.size and (rib_cols[0] - body_cols[0]) * sx <= CAGE_MM and \
            (body_cols[-1] - rib_cols[-1]) * sx <= CAGE_MM  # the ribs form the side walls of this slice
        if cage:
            for margin in lateral:
                d = margin / sx
                out_cols = (cols < rib_cols[0] - d) | (cols > rib_cols[-1] + d)
                lateral[margin] += int(muscle[z][:, out_cols].sum())
    back = np.isin(gt, [TOTAL["autochthon_left"], TOTAL["autochthon_right"]])
    psoas = np.isin(gt, [TOTAL["iliopsoas_left"], TOTAL["iliopsoas_right"]])
    lean = (hu >= -29) & (hu <= 150)
    chosen = level_slice(out)
    z = chosen if chosen is not None else gt.shape[0] // 2
    ref_muscle = (back | psoas)[z]
    cm2 = sy * sx / 100.0
    share = (lambda v: 100.0 * v / n) if n else (lambda v: 0.0)
    return {
        "muscle voxels": n,
        "organs %": share(int((muscle & organ).sum())),
        "organs beyond the edge %": share(int((muscle & organ & ~edge).sum())),
        "per organ %": {o: share(v) for o, v in per_organ.items()},
        "arms %": share(int((muscle & arms).sum())),
        "lateral to the ribs %": share(lateral[0.0]),
        f"lateral to the ribs by > {LATERAL_MARGIN_MM:g} mm %": share(lateral[LATERAL_MARGIN_MM]),
        "autochthon covered": float((muscle & back).sum() / max(back.sum(), 1)),
        "autochthon lean voxels covered": float((muscle & back & lean).sum() / max((back & lean).sum(), 1)),
        "iliopsoas covered": float((muscle & psoas).sum() / max(psoas.sum(), 1)) if psoas.any() else None,
        "slice": z,
        "slice is the level": chosen is not None,
        "reference muscle area cm2": float(ref_muscle.sum() * cm2),
        "model muscle in it cm2": float((muscle[z] & ref_muscle).sum() * cm2),
        "model trunk muscle area cm2": float(muscle[z].sum() * cm2),
    }


def report(name: str, volume: Any, out: Any, seconds: float, ref: np.ndarray) -> dict[str, Any]:
    """Print the figures of one CT and return them."""
    fig = figures(volume, out, ref)
    print(f"== {name}: {volume.shape}, spacing {tuple(round(float(s), 3) for s in volume.spacing)} mm, "
          f"analysed in {seconds:.2f} s")
    areas = {m.name: m for m in out.measurements if m.name.endswith(" area")}
    if areas:
        print(f"level: {areas['muscle area'].method.split('at the middle of the ')[1]}")
        for m in areas.values():
            print(f"  {m.name}: {m.value} {m.unit}")
    for c in out.cautions:
        if "ody composition" in c:
            print(f"caution: {c}")
    for key, value in fig.items():
        if isinstance(value, dict):
            print(f"  {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in value.items()))
        elif isinstance(value, float):
            print(f"  {key}: {value:.3f}")
        else:
            print(f"  {key}: {value}")
    return fig


def main() -> None:
    if not DATA.is_dir():
        raise SystemExit(f"real test data not found at {DATA}")
    for name, loader in (("contrast upper abdomen, DICOM 512x512", load_abdomen_dicom),
                         ("small abdomen CT, NIfTI 3 mm", load_small_nifti)):
        volume, ref = loader()
        out, seconds = run(volume)
        report(name, volume, out, seconds, ref)


if __name__ == "__main__":
    main()
