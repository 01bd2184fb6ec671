"""IXI (brain-development.org): T1, T2 and PD of healthy subjects; T1 is resampled onto the T2/PD grid."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from mribench.data.nifti import NiftiDataset, Problem, grid_difference, strip_nifti_suffix
from mribench.errors import BadDataError

FILE_PATTERN = re.compile(r"^(IXI\d{3}-[A-Za-z]+-\d{4})-(T1|T2|PD)$")
SUB_FOLDERS = ("IXI-T1", "IXI-T2", "IXI-PD")


class IXIDataset(NiftiDataset):
    """``IXI###-<site>-####-{T1,T2,PD}.nii.gz`` in ``<root>/`` or in ``<root>/IXI-T1/``, ``IXI-T2/``, ``IXI-PD/``
    (the official tar files' folders). Only subjects with all three contrasts are used. T2 and PD come from one
    dual-echo acquisition and must share their grid; the sagittal T1 is resampled (trilinear, world coordinates from
    the affines) onto that grid, so all three channels are voxel-aligned before preprocessing."""

    name = "ixi"
    problem = "missing-modality"
    modalities = ("T1", "T2", "PD")
    label_values = None
    description = "IXI: ~580 healthy subjects with T1, T2 and PD (Guy's, Hammersmith, IOP)"
    source = "https://brain-development.org/ixi-dataset/ (IXI-T1.tar, IXI-T2.tar, IXI-PD.tar; CC BY-SA 3.0)"
    layout = "<root>/IXI###-<site>-####-{T1,T2,PD}.nii.gz, or <root>/IXI-T1/, IXI-T2/, IXI-PD/ holding those files"

    def _index(self) -> dict[str, dict[str, Path]]:
        found: dict[str, dict[str, Path]] = {}
        for folder in [self.root, *(self.root / name for name in SUB_FOLDERS)]:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                stem = strip_nifti_suffix(path.name)
                match = FILE_PATTERN.match(stem) if stem is not None else None
                if match and path.is_file():
                    found.setdefault(match.group(1), {})[match.group(2)] = path
        return found

    def subject_ids(self) -> list[str]:
        return sorted(s for s, files in self._index().items() if set(files) == set(self.modalities))

    def excluded_subjects(self) -> list[Problem]:
        """Subjects left out because a contrast is missing."""
        return [Problem(s, str(self.root), f"excluded: no {', '.join(m for m in self.modalities if m not in files)}",
                        severity="excluded")
                for s, files in sorted(self._index().items()) if set(files) != set(self.modalities)]

    def subject_files(self, subject_id: str) -> tuple[dict[str, Path], Path | None]:
        files = self._index().get(subject_id, {})
        return {m: files.get(m, self.root / f"{subject_id}-{m}.nii.gz") for m in self.modalities}, None

    def align(self, volumes: dict[str, tuple[np.ndarray, np.ndarray]],
              files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray]:
        from monai.data import MetaTensor
        from monai.transforms import SpatialResample

        t2, t2_affine = volumes["T2"]
        pd, pd_affine = volumes["PD"]
        difference = grid_difference(pd.shape, pd_affine, t2.shape, t2_affine)
        if difference:
            raise BadDataError(f"{files['PD']}: PD is on another grid than T2: {difference}")
        t1, t1_affine = volumes["T1"]
        source = MetaTensor(torch.from_numpy(t1[None]), affine=torch.as_tensor(t1_affine, dtype=torch.float64))
        resampled = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
            source, dst_affine=torch.as_tensor(t2_affine, dtype=torch.float64), spatial_size=t2.shape)
        t1_on_t2 = resampled.as_tensor()[0].numpy().astype(np.float32)
        if not np.any(t1_on_t2):
            raise BadDataError(f"{files['T1']}: T1 does not overlap the T2 field of view in world space "
                               f"(check the affines)")
        return np.stack([t1_on_t2, t2, pd]), t2_affine
