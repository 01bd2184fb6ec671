"""The 3D U-Net diffuser of the paper's diffuser ablation: MONAI's DiffusionModelUNet behind MDiT3D's signature,
sized to the parameter count of the MDiT3D it replaces.

The E elements are stacked as channels, ``(B, E, c, d, h, w)`` -> ``(B, E*c, d, h, w)``; the timestep enters every
residual block (MONAI's time embedding) and the conditioning enters through cross-attention at the attention levels:
CoPeVAE's prompts ``(B, 3, 512)`` as three context tokens, or the binary mask code mapped linearly to one 512-d token.
``inject`` does not apply (the U-Net has no Spatial/Modal blocks).

Size: an ablation that swaps the diffuser compares designs only when the two hold about as many parameters, so the
U-Net is sized to the MDiT3D that the same config would build (ours; the paper gives no U-Net size). Its levels
have ``hidden/4, hidden/2, hidden`` channels (as many levels, at most 3, as halvings the latent grid allows), scaled
by one factor of ``WIDTH_SCALES`` and rounded up to whole attention heads, with 1 or 2 residual blocks per level:
of these candidates, counted on the meta device, the one whose parameter count is nearest MDiT3D's (on a log
scale). At the ``cpu`` size, for example, MDiT3D-XS holds 0.35 M parameters on the brain latents and the U-Net
becomes levels of 4 / 16 / 16 channels with two residual blocks each (0.32 M), where the unscaled 16 / 32 / 64
held 3.19 M; at ``paper`` size, 144 / 320 / 576 with one block (182 M against MDiT3D-B's 173 M).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from mribench.errors import MribenchError
from mribench_copedit.mdit3d import MDiT3D, MDiT3DConfig

WIDTH_SCALES = (2.0, 1.5, 1.0, 0.75, 0.5, 0.25, 0.125)  # candidate factors on the levels' hidden/4, hidden/2, hidden
RESIDUAL_BLOCKS = (1, 2)  # candidate residual blocks per level


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
        elements, channels = self.latent_shape[:2]
        widths, residual_blocks = matched_levels(config, self.latent_shape, mask_code_length)
        self.widths, self.residual_blocks = widths, residual_blocks
        self.unet = _unet(config, self.latent_shape, widths, residual_blocks)
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


# -- sizing ----------------------------------------------------------------------------------------------------


def _levels(latent_shape: tuple[int, ...]) -> int:
    """U-Net levels: one more than the halvings (at most 2) every latent axis allows."""
    return 1 + min(2, *(((size & -size).bit_length() - 1) for size in latent_shape[2:]))


def _attention(levels: int) -> list[bool]:
    """Attention (and so cross-attention to the condition) at every level but the first, or at the only one."""
    return [index > 0 or levels == 1 for index in range(levels)]


def _unet(config: MDiT3DConfig, latent_shape: tuple[int, ...], widths: tuple[int, ...],
          residual_blocks: int) -> DiffusionModelUNet:
    elements, channels = latent_shape[:2]
    conditioned = config.condition != "none"
    return DiffusionModelUNet(
        spatial_dims=3, in_channels=elements * channels, out_channels=elements * channels,
        num_res_blocks=residual_blocks, channels=widths, attention_levels=_attention(len(widths)),
        norm_num_groups=math.gcd(32, *widths), num_head_channels=config.dims.hidden // config.dims.heads,
        with_conditioning=conditioned, cross_attention_dim=config.prompt_dim if conditioned else None,
        use_combined_linear=True, use_flash_attention=True)


def _parameters(build) -> int:
    """Parameters of the module ``build()`` makes, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def matched_levels(config: MDiT3DConfig, latent_shape: tuple[int, ...],
                   mask_code_length: int | None = None) -> tuple[tuple[int, ...], int]:
    """(channels per level, residual blocks per level) of the U-Net whose own layers are nearest in parameter count to
    the whole MDiT3D that ``config`` (with ``diffuser="mdit3d"``) builds for ``latent_shape``. Deterministic: ties go
    to the larger candidate."""
    head_channels = config.dims.hidden // config.dims.heads
    levels = _levels(latent_shape)
    base = [config.dims.hidden // 4, config.dims.hidden // 2, config.dims.hidden][:levels]
    transformer = replace(config, diffuser="mdit3d")
    target = _parameters(lambda: MDiT3D(transformer, latent_shape, mask_code_length))
    candidates = set()
    for scale in WIDTH_SCALES:
        widths = []
        for width, attended in zip(base, _attention(levels), strict=True):
            unit = head_channels if attended else 4
            widths.append(max(unit, math.ceil(width * scale / unit) * unit))
        candidates.update((tuple(widths), blocks) for blocks in RESIDUAL_BLOCKS)
    counted = {candidate: _parameters(lambda c=candidate: _unet(config, latent_shape, *c)) for candidate in candidates}
    return min(counted, key=lambda c: (abs(math.log(counted[c] / target)), -counted[c], c))
