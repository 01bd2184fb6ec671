"""The 3D U-Net diffuser of the paper's diffuser ablation: MONAI's DiffusionModelUNet behind MDiT3D's signature.

The E elements are stacked as channels, ``(B, E, c, d, h, w)`` -> ``(B, E*c, d, h, w)``; the timestep enters every
residual block (MONAI's time embedding) and the conditioning enters through cross-attention at the attention levels:
CoPeVAE's prompts ``(B, 3, 512)`` as three context tokens, or the binary mask code mapped linearly to one 512-d token.
``inject`` does not apply (the U-Net has no Spatial/Modal blocks). Widths follow the size preset: levels of
``hidden/4, hidden/2, hidden`` channels, as many levels (at most 3) as halvings the latent grid allows.
"""
from __future__ import annotations

import math

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from mribench.errors import MribenchError
from mribench_copedit.mdit3d import MDiT3DConfig


class UNetDiffuser(nn.Module):
    """forward(latents ``(B, E, c, d, h, w)``, timesteps ``(B,)``, prompts ``(B, 3, 512)`` | None,
    mask_code ``(B, L)`` | None) -> x0 prediction ``(B, E, c, d, h, w)``.

    Without prompts / mask code (the "prompts off" intervention) the context is all zeros.
    """

    def __init__(self, config: MDiT3DConfig, latent_shape: tuple[int, int, int, int, int],
                 mask_code_length: int | None = None):
        super().__init__()
        self.config = config
        self.latent_shape = tuple(int(n) for n in latent_shape)
        elements, channels, depth, height, width = self.latent_shape
        dims = config.dims
        halvings = min(2, *(((size & -size).bit_length() - 1) for size in (depth, height, width)))
        widths = [dims.hidden // 4, dims.hidden // 2, dims.hidden][:halvings + 1]
        head_channels = dims.hidden // dims.heads
        attention = [index > 0 or halvings == 0 for index in range(len(widths))]
        if any(use and width % head_channels for use, width in zip(attention, widths, strict=True)):
            raise MribenchError(f"{config.size}: U-Net widths {widths} are not multiples of the head width "
                                f"{head_channels}")
        conditioned = config.condition != "none"
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=elements * channels, out_channels=elements * channels,
            num_res_blocks=2, channels=widths, attention_levels=attention,
            norm_num_groups=math.gcd(32, *widths), num_head_channels=head_channels,
            with_conditioning=conditioned, cross_attention_dim=config.prompt_dim if conditioned else None,
            use_combined_linear=True, use_flash_attention=True)
        self.mask_embedder = (nn.Linear(mask_code_length or elements, config.prompt_dim)
                              if config.condition == "mask" else None)

    def context(self, batch: int, prompts: torch.Tensor | None, mask_code: torch.Tensor | None,
                like: torch.Tensor) -> torch.Tensor | None:
        """Cross-attention context ``(B, tokens, prompt_dim)`` for the configured condition (None if "none")."""
        condition = self.config.condition
        if (prompts is not None and condition != "prompts") or (mask_code is not None and condition != "mask"):
            raise MribenchError(f"conditioning given to a U-Net diffuser built with condition={condition!r}")
        if condition == "none":
            return None
        if prompts is not None:
            return prompts.to(like.dtype)
        if mask_code is not None:
            return self.mask_embedder(mask_code.to(like.dtype))[:, None, :]
        tokens = self.config.prompt_tokens if condition == "prompts" else 1
        return like.new_zeros(batch, tokens, self.config.prompt_dim)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, prompts: torch.Tensor | None = None,
                mask_code: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise MribenchError(f"latents have shape {tuple(latents.shape)}; this diffuser was built for "
                                f"(B, {', '.join(map(str, self.latent_shape))})")
        batch = latents.shape[0]
        stacked = latents.reshape(batch, -1, *self.latent_shape[2:])
        out = self.unet(stacked, timesteps, context=self.context(batch, prompts, mask_code, latents))
        return out.reshape(latents.shape)
