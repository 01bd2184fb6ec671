"""CoPeVAE: the stage I tokenizer — a VQ autoencoder with completeness perception.

Every element is encoded on its own, so an observed element's latents never depend on a missing one:
- brain (B, C, D, H, W): each modality as a 1-channel 3D volume → latents (B, E=C, c, D/f, H/f, W/f);
- cardiac (``slice_wise``): each slice as a 1-channel 2D image → latents (B, E=1, c, D, H/f, W/f): one latent slice
  per image slice, so a missing run never straddles a latent slice and no observed slice is thrown away.
Here c = ``latent_dim`` and f = ``compression``. The autoencoder is MONAI's VQVAE (EMA codebook; or its encoder and
decoder alone with ``quantize=False``); the discriminator is MONAI's PatchDiscriminator with the LSGAN
PatchAdversarialLoss; the perceptual term is MONAI's PerceptualLoss (ResNet-50) and is built only from a local file.

The three prompt encoders read the encoder's latents of the available elements (zero where missing), never an image
or a mask (the paper's §3.2), so the pretext losses reach the encoder. ``prompts(zero_filled)`` infers the available
elements from the zero-filled input itself (all-zero channels / slices), encodes it and reads the masked latents.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from monai.networks.nets import VQVAE, PatchDiscriminator
from torch import nn

from mribench.errors import MribenchError
from mribench.protocol import infer_availability
from mribench_copedit.presets import TokenizerConfig
from mribench_copedit.prompts import (
    PretextHeads,
    PretextTargets,
    PromptEncoder,
    latent_availability,
    mask_latents,
)

DEAD_CODE_USAGE = 0.03
WEIGHTS_ENV = "MRIBENCH_WEIGHTS"
PERCEPTUAL_WEIGHTS_FILE = "resnet50-imagenet.pth"


def check_shape(shape: tuple[int, int, int], cfg: TokenizerConfig) -> None:
    """The compressed axes (D, H, W; H, W when slice-wise) must be divisible by the compression."""
    compressed = shape[1:] if cfg.slice_wise else shape
    if any(s % cfg.compression for s in compressed):
        axes = "H, W" if cfg.slice_wise else "every axis"
        raise MribenchError(f"copedit: preprocess shape {tuple(shape)} must be divisible by {cfg.compression} on "
                            f"{axes}")


def latent_shape(cfg: TokenizerConfig, n_channels: int, shape: tuple[int, int, int]) -> tuple[int, ...]:
    """(E, c, d, h, w) of one sample's latents."""
    d, h, w = shape
    f = cfg.compression
    return (n_channels, cfg.latent_dim, d // cfg.depth_compression, h // f, w // f)


class CoPeVAE(nn.Module):
    """Autoencoder + three prompt encoders + pretext heads, for volumes (B, C, D, H, W) in [0, 1]."""

    def __init__(self, cfg: TokenizerConfig, problem: str, n_channels: int, shape: tuple[int, int, int],
                 n_elements: int):
        super().__init__()
        check_shape(shape, cfg)
        self.cfg, self.problem, self.n_channels, self.shape = cfg, problem, n_channels, tuple(shape)
        self.latent_shape = latent_shape(cfg, n_channels, self.shape)
        strides = [2 if level < cfg.compression.bit_length() - 1 else 1 for level in range(len(cfg.channels))]
        self.vqvae = VQVAE(
            spatial_dims=2 if cfg.slice_wise else 3, in_channels=1, out_channels=1, channels=cfg.channels,
            num_res_layers=cfg.num_res_layers, num_res_channels=cfg.num_res_channels,
            downsample_parameters=tuple((2, 4, 1, 1) if s == 2 else (1, 3, 1, 1) for s in strides),
            # MONAI's decoder reads these in its own order (deepest level first), not the encoder's
            upsample_parameters=tuple((2, 4, 1, 1, 0) if s == 2 else (1, 3, 1, 1, 0) for s in reversed(strides)),
            num_embeddings=cfg.codebook_size, embedding_dim=cfg.latent_dim)
        elements, channels, depth = self.latent_shape[:3]
        self.prompt_encoders = nn.ModuleList(
            PromptEncoder(elements * channels, depth, cfg.prompt_channels, cfg.prompt_dim) for _ in range(3))
        self.heads = PretextHeads(cfg, problem, n_channels, shape[0], n_elements)

    # -- element units: what the autoencoder sees ------------------------------------------------------------
    def as_units(self, volumes: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B·C, 1, D, H, W) volumes, or (B·C·D, 1, H, W) slices when slice-wise."""
        if self.cfg.slice_wise:
            return volumes.reshape(-1, 1, *volumes.shape[3:])
        return volumes.reshape(-1, 1, *volumes.shape[2:])

    def _latents_from_units(self, units: torch.Tensor, batch: int) -> torch.Tensor:
        """Autoencoder latents of the units → (B, E, c, d, h, w)."""
        if self.cfg.slice_wise:  # (B·C·D, c, h, w) → (B, C, c, D, h, w)
            return units.reshape(batch, self.n_channels, -1, *units.shape[1:]).transpose(2, 3)
        return units.reshape(batch, -1, *units.shape[1:])

    def _units_from_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if self.cfg.slice_wise:
            return latents.transpose(2, 3).flatten(0, 2)
        return latents.flatten(0, 1)

    def _quantize(self, encodings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.quantize:
            return encodings, encodings.new_zeros(())
        return self.vqvae.quantize(encodings)

    # -- latents -------------------------------------------------------------------------------------------
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → latents (B, E, c, d, h, w): quantised, or continuous when ``quantize`` is off."""
        return self._latents_from_units(self._quantize(self.vqvae.encode(self.as_units(image)))[0], image.shape[0])

    def encode_continuous(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → encoder output before quantisation (B, E, c, d, h, w)."""
        return self._latents_from_units(self.vqvae.encode(self.as_units(image)), image.shape[0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, E, c, d, h, w) → volumes (B, C=E, D, H, W) (of the in-plane size the latents cover)."""
        b, e = latents.shape[:2]
        units = self.vqvae.decode(self._units_from_latents(latents))
        depth = latents.shape[3] if self.cfg.slice_wise else units.shape[2]
        return units.reshape(b, e, depth, *units.shape[-2:])

    def latent_availability(self, element_availability: torch.Tensor) -> torch.Tensor:
        """(B, C, D) observed elements → (B, E, d) observed latent slices."""
        return latent_availability(element_availability, self.cfg.depth_compression)

    # -- prompts -------------------------------------------------------------------------------------------
    def prompts_from_latents(self, available_latents: torch.Tensor) -> torch.Tensor:
        """Prompt tokens (B, 3, P) — count, position, assessment — from latents zeroed where missing."""
        return torch.stack([encoder(available_latents) for encoder in self.prompt_encoders], dim=1)

    def available_latents(self, zero_filled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From the zero-filled input alone: (latents (B, E, c, d, h, w) zeroed where missing, their availability
        (B, E, d)). The observed elements are the not-all-zero channels (brain) / slices (cardiac)."""
        availability = self.latent_availability(infer_availability(zero_filled, self.problem))
        return mask_latents(self.encode(zero_filled), availability), availability

    def prompts(self, zero_filled: torch.Tensor) -> torch.Tensor:
        """Prompt tokens (B, 3, P) from the zero-filled input alone (never a mask)."""
        return self.prompts_from_latents(self.available_latents(zero_filled)[0])

    # -- stage I forward ---------------------------------------------------------------------------------
    def forward(self, complete: torch.Tensor, availability_mask: torch.Tensor,
                crop: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
        """complete (B, C, D, H, W), training availability (B, C, D) → reconstruction, VQ and pretext losses.

        ``crop`` = (h0, w0, height, width) runs the autoencoder on that in-plane window only (all slices kept, so
        every missing latent is in it). The prompts read the window's latents of the available elements (the prompt
        encoders pool in-plane, so they take any in-plane size); the returned reconstruction is of the window.
        """
        window = complete if crop is None else complete[..., crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
        batch = complete.shape[0]
        encodings = self.vqvae.encode(self.as_units(window))
        quantized, vq_loss = self._quantize(encodings)
        latents = self._latents_from_units(quantized, batch)
        reconstruction = self.decode(latents)
        targets = PretextTargets.from_mask(availability_mask, self.problem, self.cfg.depth_compression)
        prompts = self.prompts_from_latents(mask_latents(latents, ~targets.missing_latents))
        pretext, accuracies = self.heads.losses(prompts, self._latents_from_units(encodings, batch), targets)
        return {"reconstruction": reconstruction, "vq": vq_loss, "pretext": pretext, "accuracies": accuracies,
                "encodings": encodings.detach()}

    @torch.no_grad()
    def revive_dead_codes(self, encodings: torch.Tensor, generator: torch.Generator) -> int:
        """Re-seed unused codebook entries with encoder outputs of the current batch; returns how many.

        Own code: MONAI's EMA quantizer never revives codes, and from a random codebook every encoding collapses
        onto a few codes (reconstruction stuck at the mean). A code is dead when its EMA usage is below
        ``DEAD_CODE_USAGE``; at the first step all codes are, which gives a data-dependent initialisation. Under
        DDP the result of rank 0 is broadcast so the codebooks stay identical.
        """
        quantizer = self.vqvae.quantizer.quantizer
        dead = (quantizer.ema_cluster_size < DEAD_CODE_USAGE).nonzero().flatten()
        if len(dead):
            vectors = encodings.movedim(1, -1).reshape(-1, quantizer.embedding_dim).float()
            picks = torch.randint(0, len(vectors), (len(dead),), generator=generator)
            quantizer.ema_cluster_size[dead] = 1.0
            n = quantizer.ema_cluster_size.sum()
            weights = (quantizer.ema_cluster_size + quantizer.epsilon) / (n + quantizer.num_embeddings
                                                                          * quantizer.epsilon) * n
            quantizer.ema_w[dead] = vectors[picks] * weights[dead, None]
            quantizer.embedding.weight[dead] = vectors[picks]
        if dist.is_available() and dist.is_initialized():
            for tensor in (quantizer.ema_cluster_size, quantizer.ema_w, quantizer.embedding.weight):
                dist.broadcast(tensor, src=0)
        return len(dead)


def build_discriminator(cfg: TokenizerConfig) -> PatchDiscriminator:
    """MONAI's patch discriminator on the autoencoder's units (instance norm: batch-size independent)."""
    return PatchDiscriminator(spatial_dims=2 if cfg.slice_wise else 3, channels=cfg.discriminator_channels,
                              in_channels=1, num_layers_d=cfg.discriminator_layers, norm="INSTANCE")


def perceptual_weights() -> dict[str, str] | None:
    """The local ResNet-50 (torchvision ImageNet state dict) for the perceptual term, or None when absent.

    Looked up as $MRIBENCH_WEIGHTS/resnet50-imagenet.pth; never downloaded.
    """
    folder = os.environ.get(WEIGHTS_ENV)
    if not folder:
        return None
    path = Path(folder) / PERCEPTUAL_WEIGHTS_FILE
    if not path.is_file():
        return None
    return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def build_perceptual(weights: dict[str, str] | None, cfg: TokenizerConfig) -> nn.Module | None:
    if weights is None:
        return None
    from monai.losses import PerceptualLoss

    try:
        return PerceptualLoss(spatial_dims=2 if cfg.slice_wise else 3, network_type="resnet50",
                              is_fake_3d=not cfg.slice_wise, pretrained=True, pretrained_path=weights["file"])
    except Exception as exc:  # noqa: BLE001 - a wrong file raises torch/pickle errors of many types
        raise MribenchError(f"{weights['file']}: not a torchvision ResNet-50 state dict ({type(exc).__name__})") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
