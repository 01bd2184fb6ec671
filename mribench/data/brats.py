"""BraTS 2021 (RSNA-ASNR-MICCAI) in its official layout: one folder per subject, one file per contrast."""
from __future__ import annotations

from pathlib import Path

from mribench.data.nifti import NiftiDataset, find_nifti

SUFFIXES = {"T1": "t1", "T1ce": "t1ce", "T2": "t2", "FLAIR": "flair"}
LABEL_SUFFIX = "seg"


class Brats2021Dataset(NiftiDataset):
    """``<root>/<ID>/<ID>_{t1,t1ce,t2,flair}.nii.gz`` (+ ``<ID>_seg.nii.gz``; ``.nii`` accepted), e.g.
    ``BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz``. Channels are T1, T1ce, T2, FLAIR in that order; the tumour
    labels are 0 background, 1 necrotic core, 2 oedema, 4 enhancing tumour. A subject folder is any sub-folder holding
    at least one ``<folder name>_<contrast>`` NIfTI; a missing contrast is reported, not skipped."""

    name = "brats2021"
    problem = "missing-modality"
    modalities = ("T1", "T1ce", "T2", "FLAIR")
    label_values = (0, 1, 2, 4)
    description = "BraTS 2021: 1251 co-registered, skull-stripped glioma cases (T1, T1ce, T2, FLAIR + tumour labels)"
    source = "https://www.synapse.org/brats2021 (registration required; RSNA-ASNR-MICCAI BraTS 2021 training data)"
    layout = "<root>/BraTS2021_XXXXX/BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz"

    def subject_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(folder.name for folder in self.root.iterdir()
                      if folder.is_dir() and not folder.name.startswith(".")
                      and any(find_nifti(folder, f"{folder.name}_{s}") for s in (*SUFFIXES.values(), LABEL_SUFFIX)))

    def subject_files(self, subject_id: str) -> tuple[dict[str, Path], Path | None]:
        folder = self.root / subject_id
        contrasts = {m: find_nifti(folder, f"{subject_id}_{s}") or folder / f"{subject_id}_{s}.nii.gz"
                     for m, s in SUFFIXES.items()}
        return contrasts, find_nifti(folder, f"{subject_id}_{LABEL_SUFFIX}")
