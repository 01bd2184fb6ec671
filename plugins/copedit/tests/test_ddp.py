"""Two CPU processes under torchrun (gloo): DDP keeps the ranks' parameters identical and only rank 0 writes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_rank_training_stays_in_sync(tmp_path):
    worker = Path(__file__).resolve().parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
         str(tmp_path)], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for part in ("tokenizer", "network"):
        assert ranks[0][part].keys() == ranks[1][part].keys()
        for key in ranks[0][part]:
            assert torch.allclose(ranks[0][part][key], ranks[1][part][key], atol=1e-6), (part, key)
    # one writer: each stage's CSV holds every step once, and the checkpoints are the single-process ones
    for log, steps in ((tmp_path / "tokenizer" / "stage1.csv", 4), (tmp_path / "stage2" / "stage2.csv", 4)):
        with log.open() as fh:
            assert [int(row["step"]) for row in csv.DictReader(fh)] == list(range(1, steps + 1))
    for path in ("tokenizer/stage1.pt", "tokenizer/tokenizer.pt", "stage2/stage2.pt", "stage2/latents.pt"):
        assert (tmp_path / path).is_file(), path
    assert not list(tmp_path.rglob("*.tmp"))
