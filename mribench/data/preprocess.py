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

Steps 1-6 are spatial and invertible. :class:`NativeGrid` records, per subject, where the preprocessed grid sits in
the source volume (its shape and affine, the axis permutation and flips of steps 1-2, the crop box of steps 3-5);
:func:`to_native` maps a preprocessed-grid volume back onto the source grid as nnU-Net does with its predictions
(resize to the crop box, pad with zeros, undo the reorientation) and :func:`to_preprocessed` applies steps 1-6 to a
volume on the source grid. Intensities are not mapped back: a synthesis stays in the [0, 1] of step 7.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (CenterSpatialCropd, Compose, CropForegroundd, MapTransform, Orientationd, Resize,
                              Resized, ScaleIntensityRangePercentilesd)

from mribench.data.base import RawSubject, Subject
from mribench.errors import MribenchError
from mribench.tasks import PreprocessSpec
from mribench.threads import PREPROCESS_THREADS, torch_threads

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


def reorientation(spec: PreprocessSpec, keys: list[str]) -> Compose:
    """Steps 1-2: reorient and put the slice axis first (a signed permutation of the voxel axes, nothing resampled)."""
    steps = [Orientationd(keys, axcodes=spec.orientation, labels=AXIS_LABELS)] if spec.orientation else []
    return Compose([*steps, SliceAxisFirstd(keys)])


def crop_resize_scale(spec: PreprocessSpec, keys: list[str]) -> Compose:
    """Steps 3-7 on the reoriented {"image"[, "label"]}."""
    steps = []
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


@dataclass(frozen=True)
class NativeGrid:
    """Where a subject's preprocessed (D, H, W) grid sits in its source volume.

    shape, affine: the source volume's array shape (X, Y, Z) and voxel → world affine (the grid every contrast was
    brought onto); axes[i], flipped[i]: preprocessed axis i runs along source axis ``axes[i]``, reversed when
    ``flipped[i]``; box[i] = (start, stop): the voxels kept along preprocessed axis i (foreground crop, slice window,
    centre crop, counted in the reoriented source volume) that were resized to the preprocessed shape.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    axes: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]
    box: tuple[tuple[int, int], ...]

    META_KEY = "native_grid"

    @classmethod
    def derive(cls, source_shape: tuple[int, ...], source_affine: np.ndarray, reoriented_affine: np.ndarray,
               preprocessed_shape: tuple[int, ...], preprocessed_affine: np.ndarray) -> "NativeGrid":
        """Read the permutation, flips and crop box off the affines before, between and after the spatial steps."""
        permutation = np.linalg.inv(source_affine) @ reoriented_affine  # reoriented index → source index
        axes = tuple(int(np.argmax(np.abs(permutation[:3, k]))) for k in range(3))
        flipped = tuple(bool(permutation[axes[k], k] < 0) for k in range(3))
        expected = np.zeros((4, 4))
        expected[3, 3] = 1
        for k, (axis, flip) in enumerate(zip(axes, flipped)):
            expected[axis, k] = -1.0 if flip else 1.0
            expected[axis, 3] = source_shape[axis] - 1 if flip else 0
        scaling = np.linalg.inv(reoriented_affine) @ preprocessed_affine  # preprocessed index → reoriented index
        scale = np.diag(scaling)[:3]
        # resizing n voxels to m maps output voxel o to input coordinate start + (o + 0.5) n / m - 0.5
        starts = scaling[:3, 3] - 0.5 * scale + 0.5
        stops = starts + scale * np.asarray(preprocessed_shape)
        if (sorted(axes) != [0, 1, 2] or not np.allclose(permutation, expected, atol=1e-4)
                or not np.allclose(scaling[:3, :3], np.diag(scale), atol=1e-4)
                or not np.allclose(starts, np.rint(starts), atol=1e-3)
                or not np.allclose(stops, np.rint(stops), atol=1e-3)):
            raise MribenchError("internal: the preprocessing is not an axis-aligned crop and resize of the source grid")
        return cls(shape=tuple(int(s) for s in source_shape),
                   affine=tuple(tuple(float(v) for v in row) for row in np.asarray(source_affine)),
                   axes=axes, flipped=flipped,
                   box=tuple((int(round(a)), int(round(b))) for a, b in zip(starts, stops)))

    def to_meta(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "affine": [list(row) for row in self.affine], "axes": list(self.axes),
                "flipped": list(self.flipped), "box": [list(pair) for pair in self.box]}

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> "NativeGrid | None":
        """The grid recorded in a subject's meta; None for subjects that have no source volume (generated in memory:
        their preprocessed grid is their own)."""
        record = meta.get(cls.META_KEY)
        if record is None:
            return None
        return cls(shape=tuple(record["shape"]), affine=tuple(tuple(row) for row in record["affine"]),
                   axes=tuple(record["axes"]), flipped=tuple(record["flipped"]),
                   box=tuple(tuple(pair) for pair in record["box"]))

    @property
    def affine_array(self) -> np.ndarray:
        return np.asarray(self.affine, dtype=np.float64)

    @property
    def reoriented_shape(self) -> tuple[int, int, int]:
        return tuple(self.shape[axis] for axis in self.axes)


def _resize(volume: np.ndarray, shape: tuple[int, ...], label: bool) -> np.ndarray:
    """Resize a 3D volume as step 6 does (align_corners=False; labels nearest-exact, images trilinear + anti-aliasing
    when shrinking)."""
    if tuple(volume.shape) == tuple(shape):
        return volume
    resize = Resize(spatial_size=tuple(shape), mode="nearest-exact" if label else "trilinear", anti_aliasing=not label)
    with torch_threads(PREPROCESS_THREADS):
        resized = resize(torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None])
    resized = resized.as_tensor() if isinstance(resized, MetaTensor) else resized
    return resized[0].numpy()


def to_native(volume: np.ndarray, grid: NativeGrid, label: bool = False) -> np.ndarray:
    """A (D, H, W) volume on the preprocessed grid → the source grid (X, Y, Z), zero outside the crop box; write it
    with ``grid.affine_array``. Labels are resampled nearest-exact, images trilinearly."""
    box_shape = tuple(stop - start for start, stop in grid.box)
    dtype = volume.dtype
    canvas = np.zeros(grid.reoriented_shape, dtype=np.float32)
    canvas[tuple(slice(start, stop) for start, stop in grid.box)] = _resize(volume, box_shape, label)
    canvas = np.flip(canvas, axis=[k for k in range(3) if grid.flipped[k]])
    native = np.transpose(canvas, np.argsort(grid.axes))
    return np.ascontiguousarray(np.rint(native) if label else native).astype(dtype)


def to_preprocessed(volume: np.ndarray, grid: NativeGrid, shape: tuple[int, int, int]) -> np.ndarray:
    """A volume (X, Y, Z) on the source grid → the preprocessed grid (D, H, W) by steps 1-6 (no intensity scaling)."""
    if tuple(volume.shape) != grid.shape:
        raise MribenchError(f"volume of shape {tuple(volume.shape)} is not on the source grid {grid.shape}")
    reoriented = np.flip(np.transpose(volume, grid.axes), axis=[k for k in range(3) if grid.flipped[k]])
    cropped = reoriented[tuple(slice(start, stop) for start, stop in grid.box)]
    return _resize(cropped, shape, label=False).astype(np.float32)


def preprocess_subject(raw: RawSubject, spec: PreprocessSpec) -> Subject:
    """A checked raw subject → Subject with image (C, D, H, W) float32 in [0, 1], its affine, label (D, H, W) and,
    in ``meta["native_grid"]``, the :class:`NativeGrid` that maps predictions back onto the source volume."""
    affine = torch.as_tensor(raw.affine, dtype=torch.float64)
    data = {"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(raw.image, dtype=np.float32)), affine=affine)}
    if raw.label is not None:
        label = torch.from_numpy(raw.label[None].astype(np.float32))
        data["label"] = MetaTensor(label, affine=affine.clone())
    keys = list(data)
    with torch_threads(PREPROCESS_THREADS):  # the same bytes whatever the caller's thread count
        reoriented = reorientation(spec, keys)(data)
        reoriented_affine = reoriented["image"].affine.to(torch.float64).numpy().copy()
        out = crop_resize_scale(spec, keys)(reoriented)
    image = out["image"]
    label = None
    if raw.label is not None:
        label = np.rint(out["label"].as_tensor()[0].numpy()).astype(np.int16)
    preprocessed_affine = image.affine.to(torch.float64).numpy().copy()
    grid = NativeGrid.derive(raw.image.shape[1:], np.asarray(raw.affine, dtype=np.float64), reoriented_affine,
                             tuple(image.shape[1:]), preprocessed_affine)
    return Subject(subject_id=raw.subject_id,
                   image=np.ascontiguousarray(image.as_tensor().numpy(), dtype=np.float32),
                   affine=preprocessed_affine, label=label,
                   meta={**raw.meta, NativeGrid.META_KEY: grid.to_meta()})
