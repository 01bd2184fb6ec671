"""A generic folder of short-axis stacks, e.g. a UK Biobank cardiac export converted to NIfTI."""
from __future__ import annotations

from pathlib import Path

from mribench.data.nifti import NiftiDataset, find_nifti


class NiftiFolderDataset(NiftiDataset):
    """``<root>/<subject>/image.nii.gz`` (one 3D short-axis stack, e.g. the end-diastolic frame; ``.nii`` accepted)
    and optionally ``<root>/<subject>/label.nii.gz`` on the same grid. The subject ID is the folder name; the slice
    axis is the stack's voxel axis 2. ``dataset_options``: ``image`` / ``label`` (file names without extension,
    defaults ``image`` and ``label``) and ``label_values`` (allowed label values, e.g. [0, 1, 2, 3]; default: any)."""

    name = "nifti-folder"
    problem = "missing-slice"
    modalities = ("sax",)
    label_values = None
    option_keys = ("image", "label", "label_values")
    description = "Generic folder of 3D short-axis NIfTI stacks (one per subject), e.g. UK Biobank exports"
    source = "your own export (UK Biobank: https://www.ukbiobank.ac.uk, approved application required)"
    layout = "<root>/<subject>/image.nii.gz [+ <root>/<subject>/label.nii.gz]"

    @property
    def image_stem(self) -> str:
        return str(self.options.get("image", "image"))

    @property
    def label_stem(self) -> str:
        return str(self.options.get("label", "label"))

    def allowed_labels(self) -> tuple[int, ...] | None:
        values = self.options.get("label_values")
        return tuple(int(v) for v in values) if values is not None else None

    def subject_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and find_nifti(p, self.image_stem))

    def subject_files(self, subject_id: str) -> tuple[dict[str, Path], Path | None]:
        folder = self.root / subject_id
        image = find_nifti(folder, self.image_stem) or folder / f"{self.image_stem}.nii.gz"
        return {"sax": image}, find_nifti(folder, self.label_stem)
