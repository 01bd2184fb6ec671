"""What copedit offers other plugins: its frozen stage-I CoPeVAE as a completeness-prompt provider.

Registered through the ``mribench_register_prompt_providers`` hook (see ``mribench.hookspecs``) under the name
``copedit``; the baselines' "+Prompts" variants reach it through the registry, never by importing this package.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from mribench.data.base import SubjectSet
from mribench.errors import UnknownNameError
from mribench.tasks import TaskSpec
from mribench_copedit.data import TrainImages
from mribench_copedit.presets import PRESETS, TokenizerConfig
from mribench_copedit.stage1 import restore_tokenizer, tokenizer_folder, train_tokenizer
from mribench_copedit.tokenizer import CoPeVAE


class CoPeVAEPrompts:
    """CoPeDiT's frozen CoPeVAE for other methods. Its ``prompts(zero_filled (B, C, D, H, W)) -> (B, 3, P)`` gives the
    count, position and assessment tokens read from the zero-filled input only."""

    name: ClassVar[str] = "copedit"

    @classmethod
    def frozen_tokenizer(cls, train: SubjectSet, task: TaskSpec, preset: str, seed: int, shared_dir: Path,
                         progress=None) -> CoPeVAE:
        """Stage I of (preset, seed) from the dataset's shared folder, trained there first when absent (the same
        tokenizer CoPeDiT and its ablation variants use)."""
        folder = tokenizer_folder(shared_dir, preset, seed)
        tokenizer, _ = train_tokenizer(tokenizer_config(task, preset), task, TrainImages(train, task), folder, seed,
                                       progress)
        return tokenizer

    @classmethod
    def restore_tokenizer(cls, state: dict[str, Any], task: TaskSpec, preset: str) -> CoPeVAE:
        """The frozen tokenizer saved (``state_dict()``) in another method's checkpoint."""
        return restore_tokenizer(tokenizer_config(task, preset), task, state)


def tokenizer_config(task: TaskSpec, preset: str) -> TokenizerConfig:
    """Stage I's configuration of a copedit preset for the task's problem."""
    if preset not in PRESETS:
        raise UnknownNameError("copedit preset", preset, PRESETS)
    return PRESETS[preset].for_problem(task.problem).tokenizer
