"""Reuse of CoPeDiT's stage I by other methods (the "+Prompts" baselines)."""
from __future__ import annotations

from pathlib import Path

from mribench.data.base import SubjectSet
from mribench.errors import UnknownNameError
from mribench.tasks import TaskSpec
from mribench_copedit.presets import PRESETS
from mribench_copedit.tokenizer import CoPeVAE
from mribench_copedit.trainer import TrainImages, train_tokenizer


def tokenizer_folder(shared_dir: Path, preset_name: str, seed: int) -> Path:
    """Where stage I of (preset, seed) lives inside a dataset's shared folder."""
    return Path(shared_dir) / "copedit-tokenizer" / f"{preset_name}-seed{seed}"


def frozen_tokenizer(train: SubjectSet, task: TaskSpec, preset_name: str, seed: int, shared_dir: Path,
                     progress=None) -> CoPeVAE:
    """CoPeDiT's frozen CoPeVAE for this dataset: loaded when stage I exists, else trained first.

    The result (eval mode, no gradients) offers ``.prompts(zero_filled (B, C, D, H, W)) -> (B, 3, P)`` (count,
    position, assessment tokens, read from the zero-filled input only), ``.encode`` and ``.decode``.
    """
    if preset_name not in PRESETS:
        raise UnknownNameError("copedit preset", preset_name, PRESETS)
    cfg = PRESETS[preset_name].for_problem(task.problem).tokenizer
    folder = tokenizer_folder(shared_dir, preset_name, seed)
    tokenizer, _ = train_tokenizer(cfg, task, TrainImages(train, task), folder, seed, progress)
    return tokenizer
