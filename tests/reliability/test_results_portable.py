"""Committed result files hold no absolute path of the machine that made them (data root, caches, home)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from mribench.data.nifti import strip_nifti_suffix
from mribench.protocol import make_split
from mribench.runner import RunRequest, run
from mribench.tasks import get_task


def test_a_result_names_no_folder_of_the_machine(brats_source, brats_task, tmp_path, monkeypatch):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path / "cache"))
    task = tmp_path / "rel-brats-fid-missing1.yaml"  # FID without weights: its reason says where it looked
    task.write_text(brats_task.read_text().replace("rel-brats-missing1", "rel-brats-fid-missing1")
                    .replace("{name: dice}", "{name: dice}, {name: fid}"))
    data = shutil.copytree(brats_source, tmp_path / "lab data" / "BraTS2021")
    bad = make_split(get_task(str(task)), sorted(p.name for p in data.iterdir())).test[0]
    flair = next(p for p in (data / bad).iterdir() if (strip_nifti_suffix(p.name) or "").endswith("flair"))
    flair.write_bytes(flair.read_bytes()[:400])  # a skipped subject: its reason names the file

    outcome = run(RunRequest(method="mean-available", task=str(task), preset="smoke", data_root=data,
                             out=tmp_path / "runs", skip_bad=True))
    text = (outcome.folder / "result.json").read_text()
    for folder in (tmp_path, tmp_path.resolve(), Path.home()):
        assert str(folder) not in text
    result = json.loads(text)
    assert f"<data root>/{bad}/{flair.name}: " in result["skipped"][0]["reason"]
    assert "mribench weights folder: <weights>/" in result["metrics"]["fid"]["reason"]
    assert result["provenance"]["data"] == {"dataset": "brats2021", "source": "data root", "root_name": "BraTS2021",
                                            "fingerprint": result["task"]["data_fingerprint"]}
    assert set(result["metrics"]["dice"]["extractor"]) == {"name", "sha256", "pin"}
