"""Montage pictures of one subject: every contrast in three orthogonal planes, plus the labels over the first one.

``mribench data show --dataset NAME --subject ID --output fig.png`` calls :func:`show_subject`; the drawing itself is
:func:`render_montage` (matplotlib, Agg backend, no display needed).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np

from mribench.atomic import atomic_path
from mribench.errors import MribenchError

LABEL_COLOURS = {1: (0.95, 0.25, 0.2), 2: (0.2, 0.85, 0.3), 3: (0.25, 0.5, 1.0), 4: (1.0, 0.9, 0.1)}


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice of an (X, Y, Z) volume at ``index`` along ``axis``, transposed so rows run along the later axis
    and flipped so its positive direction points up (radiological RAS display: anterior / superior up)."""
    image = np.take(volume, index, axis=axis).T
    return image[::-1]


def _aspect(spacing: tuple[float, float, float], axis: int) -> float:
    kept = [s for a, s in enumerate(spacing) if a != axis]
    return kept[1] / kept[0]


def render_montage(volumes: dict[str, np.ndarray], spacing: tuple[float, float, float], output: Path,
                   label: np.ndarray | None = None, centre: tuple[int, int, int] | None = None,
                   plane_names: tuple[str, str, str] = ("sagittal", "coronal", "axial"), title: str = "") -> Path:
    """Draw each contrast (name → (X, Y, Z) array, voxel axes ideally RAS) in the three planes through ``centre``
    (default: the label's centroid, else the volume centre), and a last row with the labels (X, Y, Z) ints over the
    first contrast; ``spacing`` (mm per voxel axis) sets the aspect ratios. Writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not volumes:
        raise MribenchError("render_montage: no volumes to draw")
    first = next(iter(volumes.values()))
    if centre is None:
        if label is not None and (label > 0).any():
            centre = tuple(int(round(c)) for c in np.argwhere(label > 0).mean(axis=0))
        else:
            centre = tuple(n // 2 for n in first.shape)
    rows = list(volumes.items()) + ([("labels", first)] if label is not None else [])
    figure, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False, facecolor="black")
    for row, (name, volume) in enumerate(rows):
        low, high = np.percentile(volume, [0.5, 99.5])
        for axis in range(3):
            ax = axes[row, axis]
            ax.imshow(_plane(volume, axis, centre[axis]), cmap="gray", vmin=low, vmax=high,
                      aspect=_aspect(spacing, axis), interpolation="bilinear")
            if name == "labels":
                overlay = np.zeros((*_plane(label, axis, centre[axis]).shape, 4))
                plane_labels = _plane(label, axis, centre[axis])
                for value, colour in LABEL_COLOURS.items():
                    overlay[plane_labels == value] = (*colour, 0.45)
                ax.imshow(overlay, aspect=_aspect(spacing, axis), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(plane_names[axis], color="white", fontsize=10)
            if axis == 0:
                ax.set_ylabel(name, color="white", fontsize=11)
    if label is not None:
        present = sorted(int(v) for v in np.unique(label) if v > 0)
        legend = "   ".join(f"{v}" for v in present)
        axes[-1, 2].text(1.02, 0.5, f"labels\n{legend}", color="white", transform=axes[-1, 2].transAxes,
                         va="center", fontsize=9)
    if title:
        figure.suptitle(title, color="white")
    figure.tight_layout()
    output = Path(output)
    with atomic_path(output, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=90, facecolor="black")
    plt.close(figure)
    return output


def default_options(dataset: str) -> dict[str, Any]:
    """The ``dataset_options`` of the first registered task using the dataset (what the quick start generates)."""
    from mribench.tasks import task_registry

    tasks = task_registry()
    for name in tasks.names():
        spec = tasks.get(name)
        if spec.dataset == dataset:
            return dict(spec.dataset_options)
    return {}


def _check_subject(dataset: str, subject_id: str, ids: list[str]) -> None:
    if subject_id not in ids:
        close = difflib.get_close_matches(subject_id, ids, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        sample = ", ".join(ids[:3]) + (" ..." if len(ids) > 3 else "")
        raise MribenchError(f"dataset {dataset!r} has no subject {subject_id!r}; {hint}(subjects: {sample or 'none'})")


def show_subject(dataset_cls: type, subject_id: str, output: Path, data_root: Path | None = None,
                 options: dict[str, Any] | None = None, progress=None) -> Path:
    """Montage of one subject of a dataset (its class, resolved by the caller), read from its source files (brain:
    reoriented to RAS; stacks whose slice axis is not a scanner axis, e.g. cardiac short-axis, keep their voxel
    axes)."""
    import nibabel as nib

    from mribench.data.base import resolve_root

    dataset = dataset_cls.name
    options = default_options(dataset) if options is None else options
    if not hasattr(dataset_cls, "read_raw"):
        raise MribenchError(f"dataset {dataset!r} does not read NIfTI source files; it cannot be shown")
    if dataset_cls.generated and data_root is None:
        _check_subject(dataset, subject_id, dataset_cls.planned_subject_ids(options))  # before generating anything
    root = resolve_root(dataset_cls, options, data_root, progress)
    loader = dataset_cls(root, options)
    _check_subject(dataset, subject_id, loader.subject_ids())
    raw = loader.read_raw(subject_id)
    directions = raw.affine[:3, :3] / np.linalg.norm(raw.affine[:3, :3], axis=0)
    axis_aligned = np.abs(directions).max(axis=0).min() > 0.9
    image, label, affine = raw.image, raw.label, raw.affine
    plane_names = ("sagittal", "coronal", "axial")
    if axis_aligned:
        transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                                    nib.orientations.axcodes2ornt("RAS"))
        image = np.stack([nib.orientations.apply_orientation(c, transform) for c in image])
        label = None if label is None else nib.orientations.apply_orientation(label, transform)
        affine = affine @ nib.orientations.inv_ornt_aff(transform, raw.image.shape[1:])
    else:
        plane_names = ("long axis (voxel axis 1-2)", "long axis (voxel axis 0-2)", "short axis")
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    volumes = {name: image[c] for c, name in enumerate(dataset_cls.modalities)}
    return render_montage(volumes, spacing, output, label=label, plane_names=plane_names,
                          title=f"{dataset} / {subject_id}")
