"""CoPeDiT's synthesis: DDIM in the latent space of the frozen tokenizer, from the zero-filled input alone."""
from __future__ import annotations

from functools import partial

import torch

from mribench.protocol import infer_availability
from mribench_copedit.diffusers import conditioning
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.presets import DiffusionStageConfig
from mribench_copedit.tokenizer import CoPeVAE


@torch.no_grad()
def sample(network: torch.nn.Module, tokenizer: CoPeVAE, latent_scale: float, cfg: DiffusionStageConfig,
           zero_filled: torch.Tensor, problem: str, generator: torch.Generator, prompts: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Complete volumes (B, C, D, H, W) in [0, 1] from zero-filled ones, without any availability mask.

    The observed elements are recognised in the input itself (all-zero modality channels / slices, see
    ``infer_availability``); their latents (the same tensors stage II trained on) are held fixed during DDIM,
    the prompts read them, and their voxels are returned as given. ``prompts`` (B, 3, P), when given, replace the ones
    read from the input (the prompt analyses: corruption, interventions).
    """
    observed = infer_availability(zero_filled, problem)
    available_latents, availability = tokenizer.available_latents(zero_filled)
    inputs = (conditioning(tokenizer, available_latents, observed, cfg, problem) if prompts is None
              else {"prompts": prompts})
    x0 = GaussianDiffusion().ddim_sample(partial(network, **inputs), available_latents / latent_scale, availability,
                                         cfg.sample_steps, generator)
    volumes = tokenizer.decode(x0 * latent_scale).clamp(0, 1)
    return torch.where(observed[..., None, None], zero_filled, volumes)
