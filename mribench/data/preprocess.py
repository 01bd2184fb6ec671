"""The paper's preprocessing as one MONAI ``Compose``, driven by a task's :class:`~mribench.tasks.PreprocessSpec`.

Steps (image and label together):
1. reorient to ``spec.orientation`` (RAS) — skipped when it is null (cardiac: keep the acquisition's axes);
2. put the slice axis first: voxel axes (X, Y, Z) → (D, H, W) = (Z, Y, X), so D is axial for brain (after RAS) and
   the acquisition's slice axis (voxel axis 2) for cardiac stacks;
3. crop to the foreground (non-zero voxels of any contrast);
4. keep the middle ``slice_window`` slices along D;
5. centre-crop in-plane to ``center_crop`` (H, W);
6. resize to ``shape`` (D, H, W): trilinear with anti-aliasing for images, centre-aligned nearest neighbour
   (``nearest-exact``; plain ``nearest`` shifts labels by up to half a voxel against the affine) for labels;
7. per contrast, map the [p_low, p_high] percentiles linearly to [0, 1] and clip.

MONAI's MetaTensor carries the affine through every step, so the returned affine maps (d, h, w) indices of the
preprocessed grid to world RAS mm: a prediction written with it overlays the subject's source images.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (CenterSpatialCropd, Compose, CropForegroundd, MapTransform, Orientationd, Resized,
                              ScaleIntensityRangePercentilesd)

from mribench.data.base import Subject
from mribench.data.nifti import RawSubject
from mribench.tasks import PreprocessSpec

AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
# (X, Y, Z) → (Z, Y, X): new axis i is old axis SLICE_FIRST[i]
SLICE_FIRST = (2, 1, 0)


def nonzero(values: torch.Tensor) -> torch.Tensor:
    """Foreground of skull-stripped / masked data: every voxel that is not exactly zero."""
    return values != 0


class SliceAxisFirstd(MapTransform):
    """Permute (C, X, Y, Z) → (C, Z, Y, X) and the affine's voxel axes with it (MONAI's Transpose keeps the affine)."""

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        out = dict(data)
        permutation = torch.zeros(4, 4, dtype=torch.float64)
        for new_axis, old_axis in enumerate(SLICE_FIRST):
            permutation[old_axis, new_axis] = 1.0
        permutation[3, 3] = 1.0
        for key in self.key_iterator(out):
            volume = out[key]
            affine = volume.affine.to(torch.float64) @ permutation
            out[key] = MetaTensor(volume.as_tensor().permute(0, *(a + 1 for a in SLICE_FIRST)).contiguous(),
                                  affine=affine)
        return out


def build_pipeline(spec: PreprocessSpec, with_label: bool) -> Compose:
    """The MONAI pipeline of a spec over a dict {"image": (C, X, Y, Z)[, "label": (1, X, Y, Z)]} of MetaTensors."""
    keys = ["image", "label"] if with_label else ["image"]
    steps = []
    if spec.orientation:
        steps.append(Orientationd(keys, axcodes=spec.orientation, labels=AXIS_LABELS))
    steps.append(SliceAxisFirstd(keys))
    if spec.crop_foreground:
        steps.append(CropForegroundd(keys, source_key="image", select_fn=nonzero, allow_smaller=True))
    if spec.slice_window:
        steps.append(CenterSpatialCropd(keys, roi_size=(spec.slice_window, -1, -1)))
    if spec.center_crop:
        steps.append(CenterSpatialCropd(keys, roi_size=(-1, *spec.center_crop)))
    steps.append(Resized(keys, spatial_size=spec.shape, mode=("trilinear", "nearest-exact")[: len(keys)],
                         anti_aliasing=(True, False)[: len(keys)]))
    low, high = spec.percentiles
    steps.append(ScaleIntensityRangePercentilesd("image", lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True,
                                                 channel_wise=True))
    return Compose(steps)


def preprocess_subject(raw: RawSubject, spec: PreprocessSpec) -> Subject:
    """A checked raw subject → Subject with image (C, D, H, W) float32 in [0, 1], its affine and label (D, H, W)."""
    affine = torch.as_tensor(raw.affine, dtype=torch.float64)
    data = {"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(raw.image, dtype=np.float32)), affine=affine)}
    if raw.label is not None:
        label = torch.from_numpy(raw.label[None].astype(np.float32))
        data["label"] = MetaTensor(label, affine=affine.clone())
    out = build_pipeline(spec, raw.label is not None)(data)
    image = out["image"]
    label = None
    if raw.label is not None:
        label = np.rint(out["label"].as_tensor()[0].numpy()).astype(np.int16)
    return Subject(subject_id=raw.subject_id,
                   image=np.ascontiguousarray(image.as_tensor().numpy(), dtype=np.float32),
                   affine=image.affine.to(torch.float64).numpy().copy(),
                   label=label, meta=dict(raw.meta))
