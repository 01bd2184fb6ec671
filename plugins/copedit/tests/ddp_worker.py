"""Launched by test_ddp.py under torchrun (2 CPU processes, gloo): trains both stages on a tiny synthetic set and
saves each rank's final parameters to OUT/rank<r>.pt for the test to compare."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from copedit_tiny import make_subjects, make_task
from mribench_copedit.presets import PRESETS
from mribench_copedit.data import TrainImages
from mribench_copedit.stage1 import train_tokenizer
from mribench_copedit.stage2 import train_diffusion

from mribench.training import init_distributed


def main(out: Path) -> None:
    info = init_distributed()
    task = make_task("missing-modality")
    images = TrainImages(make_subjects(task, 4), task)
    tokenizer_cfg = dataclasses.replace(PRESETS["smoke"].brain.tokenizer, steps=4, adversarial_start=2, save_every=2)
    diffusion_cfg = dataclasses.replace(PRESETS["smoke"].brain.diffusion, steps=4, save_every=2)
    tokenizer, report = train_tokenizer(tokenizer_cfg, task, images, out / "tokenizer", seed=0)
    network, _ = train_diffusion(diffusion_cfg, tokenizer, report["tokenizer_hash"], task, images, out / "stage2",
                                 seed=0)
    torch.save({"world_size": info.world_size, "tokenizer": tokenizer.state_dict(), "network": network.state_dict()},
               out / f"rank{info.rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
