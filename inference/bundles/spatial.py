"""The one place where our volumes meet a bundle's model space, and where label maps come back.

Our volumes are ``[slice, row, column]`` arrays with an index -> LPS affine. A
MONAI bundle expects a channel-first tensor whose MetaTensor affine maps voxel
index -> RAS mm, as ``LoadImaged`` + ``EnsureChannelFirstd`` would give it, and
then applies its own ``preprocessing`` transforms (orientation, spacing,
intensity, cropping, padding...).

Going in (``to_model_space``):

1. reorient the array to the closest RAS axis order by axis permutation and
   flips only (no interpolation), keeping the exact affine; cast to float32;
2. wrap it as a ``MetaTensor`` ``[1, X, Y, Z]`` with that affine;
3. run the bundle's own preprocessing ``Compose`` (loader transforms removed by
   the caller). MONAI tracks every spatial step in the tensor's affine, and skips
   resampling when a ``Spacingd`` asks for the spacing the image already has.

Coming back (``to_input_grid``): the composed map from our voxel index to model
voxel index is ``inv(A_model) @ LPS_TO_RAS @ A_volume``. The label map is
sampled nearest-neighbour at the image of every one of our voxels, so the result
lies exactly on the input grid; voxels that map outside the model grid's extent
(more than half a model voxel beyond its border voxels: cropped away) are
background. When that map is an axis permutation with integer
steps and offsets (reorientation, integer up-sampling), the lookup is done by
slicing, which is exact and cheap; otherwise by ``scipy.ndimage.affine_transform``
with ``order=0``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from inference.errors import ModelError
from inference.volume import LPS_TO_RAS, Volume

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_INDEX_TOL = 1e-3  # voxels: how close to an integer a mapped index must be for the slicing path


@dataclass
class ModelSpace:
    """The preprocessed image ``[1, C, X, Y, Z]`` (plain tensor) and its voxel -> RAS mm affine."""

    image: torch.Tensor
    affine: npt.NDArray[np.float64]


def ras_view(volume: Volume) -> tuple[npt.NDArray[Any], npt.NDArray[np.float64]]:
    """The volume's array permuted/flipped to the closest RAS axis order (a view), and its RAS affine."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ras = LPS_TO_RAS @ volume.affine
    ornt = io_orientation(ras)
    data = apply_orientation(volume.array, ornt)
    affine = np.asarray(ras @ inv_ornt_aff(ornt, volume.shape), dtype=np.float64)
    return data, affine


def to_model_space(volume: Volume, preprocessing: Callable[[Any], Any] | None, key: str,
                   name: str) -> ModelSpace:
    """Prepare ``volume`` for the network of bundle ``name`` (see the module docstring for the steps)."""
    import torch
    from monai.data import MetaTensor

    data, affine = ras_view(volume)
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None]
    image: Any = MetaTensor(tensor, affine=torch.as_tensor(affine, dtype=torch.float64), meta={"space": "RAS"})
    if preprocessing is not None:
        try:
            out = preprocessing({key: image})
        except Exception as exc:
            raise ModelError(f"bundle '{name}': its preprocessing failed: {exc}") from exc
        if not isinstance(out, dict) or key not in out:
            raise ModelError(f"bundle '{name}': preprocessing did not return a dict with '{key}' "
                             "(random or multi-sample transforms are not supported for inference)")
        image = out[key]
    if not isinstance(image, MetaTensor):
        raise ModelError(f"bundle '{name}': preprocessing dropped the image geometry (no MetaTensor affine), "
                         "so the result could not be placed back on the input grid")
    model_affine = np.asarray(image.affine.detach().cpu().numpy(), dtype=np.float64)
    plain = image.as_tensor()
    if plain.ndim != 4:
        raise ModelError(f"bundle '{name}': preprocessing gave an image of shape {tuple(plain.shape)}, "
                         "expected [channels, x, y, z]")
    return ModelSpace(plain[None], model_affine)


def _permutation_lookup(labels: npt.NDArray[Any], mapping: npt.NDArray[np.float64],
                        shape: tuple[int, int, int]) -> npt.NDArray[Any] | None:
    """Exact lookup when every model axis follows one input axis with an integer step and offset."""
    lin, shift = mapping[:3, :3], mapping[:3, 3]
    rounded, shift_r = np.rint(lin), np.rint(shift)
    if not (np.allclose(lin, rounded, atol=_INDEX_TOL / max(shape)) and np.allclose(shift, shift_r, atol=_INDEX_TOL)):
        return None
    if not (np.count_nonzero(rounded, axis=0) == 1).all() or not (np.count_nonzero(rounded, axis=1) == 1).all():
        return None
    # model axis a = step * (our axis src[a]) + offset
    src = [int(np.flatnonzero(rounded[a])[0]) for a in range(3)]
    indices = []
    for a in range(3):
        step = int(rounded[a, src[a]])
        idx = step * np.arange(shape[src[a]]) + int(shift_r[a])
        indices.append(idx)
    valid = [(i >= 0) & (i < labels.shape[a]) for a, i in enumerate(indices)]
    if all(v.all() for v in valid):
        slices = []
        for idx in indices:
            start, step = int(idx[0]), int(idx[1] - idx[0]) if len(idx) > 1 else 1
            stop = int(idx[-1]) + (1 if step > 0 else -1)
            slices.append(slice(start, stop if stop >= 0 else None, step))
        picked = labels[tuple(slices)]
    else:
        clipped = [np.clip(i, 0, labels.shape[a] - 1) for a, i in enumerate(indices)]
        picked = labels[np.ix_(*clipped)].copy()
        for a, v in enumerate(valid):
            sel: list[Any] = [slice(None)] * 3
            sel[a] = ~v
            picked[tuple(sel)] = 0
    # picked is indexed by model axes; put our axes in order: our axis b is model axis src.index(b)
    order = [src.index(b) for b in range(3)]
    return np.ascontiguousarray(np.transpose(picked, order))


def to_input_grid(labels: npt.NDArray[Any], model_affine: npt.NDArray[np.float64], volume: Volume) -> npt.NDArray[Any]:
    """Nearest-neighbour resample a model-space label map ``[X, Y, Z]`` onto ``volume``'s exact grid."""
    mapping = np.linalg.inv(model_affine) @ LPS_TO_RAS @ volume.affine
    fast = _permutation_lookup(labels, mapping, volume.shape)
    if fast is not None:
        return fast
    from scipy.ndimage import affine_transform

    logger.debug("label map needs general nearest-neighbour resampling back to the input grid")
    # "grid-constant": a voxel within half a model voxel of the border voxels takes their label ("constant"
    # would cut at the border voxels' centres and drop a rim of the segmentation)
    out = affine_transform(labels, mapping, output_shape=volume.shape, order=0, mode="grid-constant", cval=0,
                           prefilter=False)
    return np.asarray(out, dtype=labels.dtype)
