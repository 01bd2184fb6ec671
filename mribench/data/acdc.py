"""ACDC (Automated Cardiac Diagnosis Challenge): short-axis cine MRI; the end-diastolic frame and its labels."""
from __future__ import annotations

import re
from pathlib import Path

from mribench.data.nifti import NiftiDataset, find_nifti
from mribench.errors import BadDataError

PATIENT_PATTERN = re.compile(r"^patient\d{3}$")
ED_PATTERN = re.compile(r"^\s*ED\s*:\s*(\d+)\s*$", re.MULTILINE)
SPLIT_FOLDERS = ("training", "testing")


class ACDCDataset(NiftiDataset):
    """``<root>/patientXXX/`` (or ``<root>/{training,testing}/patientXXX/``) with ``Info.cfg`` naming the
    end-diastolic frame (``ED: N``), ``patientXXX_frameNN.nii.gz`` and its labels ``patientXXX_frameNN_gt.nii.gz``
    (0 background, 1 RV cavity, 2 myocardium, 3 LV cavity). One channel; the slice axis is the stack's voxel axis 2."""

    name = "acdc"
    problem = "missing-slice"
    modalities = ("sax",)
    label_values = (0, 1, 2, 3)
    description = "ACDC: 150 cine short-axis stacks (end-diastolic frame) with RV, myocardium and LV labels"
    source = "https://humanheart-project.creatis.insa-lyon.fr/database/ (ACDC, registration required)"
    layout = "<root>/[training|testing/]patientXXX/{Info.cfg, patientXXX_frameNN.nii.gz, patientXXX_frameNN_gt.nii.gz}"

    def _patient_dirs(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for folder in [self.root, *(self.root / name for name in SPLIT_FOLDERS)]:
            if folder.is_dir():
                found.update({p.name: p for p in folder.iterdir() if p.is_dir() and PATIENT_PATTERN.match(p.name)})
        return found

    def subject_ids(self) -> list[str]:
        return sorted(self._patient_dirs())

    def end_diastolic_frame(self, subject_id: str) -> int:
        info = self._patient_dirs().get(subject_id, self.root / subject_id) / "Info.cfg"
        try:
            text = info.read_text(errors="replace")
        except OSError:
            raise BadDataError(f"{info}: Info.cfg not found (it names the end-diastolic frame, 'ED: N')") from None
        match = ED_PATTERN.search(text)
        if match is None:
            raise BadDataError(f"{info}: no 'ED: N' line naming the end-diastolic frame")
        return int(match.group(1))

    def subject_files(self, subject_id: str) -> tuple[dict[str, Path], Path | None]:
        folder = self._patient_dirs().get(subject_id, self.root / subject_id)
        stem = f"{subject_id}_frame{self.end_diastolic_frame(subject_id):02d}"
        image = find_nifti(folder, stem) or folder / f"{stem}.nii.gz"
        return {"sax": image}, find_nifti(folder, f"{stem}_gt")

    def source_files(self, subject_id: str) -> list[Path]:
        info = self._patient_dirs().get(subject_id, self.root / subject_id) / "Info.cfg"
        return [info, *super().source_files(subject_id)]
