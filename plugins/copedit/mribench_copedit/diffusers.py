"""Builds CoPeDiT's stage-II diffuser and its keyword inputs.

``build_diffuser`` picks the network ``MDiT3DConfig.diffuser`` names: MDiT3D or the plain DiT / DiT-3D ablations
(``mdit3d.py``), or MONAI's 3D U-Net (``unet_diffuser.py``); all share MDiT3D's forward signature
``(latents (B, E, c, d, h, w), timesteps (B,), prompts (B, 3, P) | None, mask_code (B, L) | None) -> x0``.
``build_network`` sizes it for a task from the stage configs; ``conditioning`` computes its keyword inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from mribench.tasks import TaskSpec
from mribench_copedit.mdit3d import MDiT3D, MDiT3DConfig
from mribench_copedit.presets import PROMPT_NAMES, DiffusionStageConfig, TokenizerConfig
from mribench_copedit.tokenizer import CoPeVAE, latent_shape


def build_diffuser(config: MDiT3DConfig, latent_shape: tuple[int, int, int, int, int],
                   mask_code_length: int | None = None) -> nn.Module:
    """The diffuser ``config.diffuser`` names, with MDiT3D's forward signature (see ``MDiT3D``)."""
    if config.diffuser == "unet3d":
        from mribench_copedit.unet_diffuser import UNetDiffuser  # MONAI's networks import slowly; only when used

        return UNetDiffuser(config, latent_shape, mask_code_length)
    return MDiT3D(config, latent_shape, mask_code_length)


def diffuser_config(cfg: DiffusionStageConfig, tokenizer_cfg: TokenizerConfig, task: TaskSpec) -> MDiT3DConfig:
    return MDiT3DConfig(size=cfg.network, layout="modal" if task.problem == "missing-modality" else "planar",
                        inject=cfg.inject, condition=cfg.condition, diffuser=cfg.diffuser,
                        prompt_tokens=len(PROMPT_NAMES), prompt_dim=tokenizer_cfg.prompt_dim)


def build_network(cfg: DiffusionStageConfig, tokenizer_cfg: TokenizerConfig, task: TaskSpec) -> torch.nn.Module:
    """The stage II diffuser; a mask code has one entry per modality (brain) or per slice (cardiac)."""
    code_length = task.channels if task.problem == "missing-modality" else task.preprocess.shape[0]
    shape = latent_shape(tokenizer_cfg, task.channels, task.preprocess.shape)
    return build_diffuser(diffuser_config(cfg, tokenizer_cfg, task), shape, code_length)


def conditioning(tokenizer: CoPeVAE, available_latents: torch.Tensor, element_availability: torch.Tensor,
                 cfg: DiffusionStageConfig, problem: str) -> dict[str, torch.Tensor]:
    """Keyword inputs of the diffuser: prompts from the available latents (unused ones zeroed), a binary mask code
    (ablation) or nothing (prompts off). At synthesis both inputs come from the zero-filled image alone."""
    if cfg.condition == "prompts":
        prompts = tokenizer.prompts_from_latents(available_latents)
        keep = torch.tensor([name in cfg.prompts_used for name in PROMPT_NAMES], dtype=prompts.dtype)
        return {"prompts": prompts * keep[None, :, None]}
    if cfg.condition == "mask":
        code = element_availability[:, :, 0] if problem == "missing-modality" else element_availability[:, 0, :]
        return {"mask_code": code.float()}
    return {}
