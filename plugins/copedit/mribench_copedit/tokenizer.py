"""CoPeVAE: the stage I tokenizer — a 3D VQ autoencoder with completeness perception.

Every element volume is encoded on its own as a 1-channel volume: brain (B, C, D, H, W) → C modality volumes;
cardiac (B, 1, D, H, W) → one volume. So with E = C in both problems, latents are (B, E, c, d, h, w) with
c = latent_dim and (d, h, w) = (D, H, W) / 8. The autoencoder is MONAI's VQVAE (EMA codebook, three stride-2
levels); the discriminator is MONAI's PatchDiscriminator with the LSGAN PatchAdversarialLoss; the perceptual term
is MONAI's PerceptualLoss (2.5D ResNet-50) and is built only from a local weight file.
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
from mribench_copedit.presets import TokenizerConfig
from mribench_copedit.prompts import PretextHeads, PretextTargets, PromptEncoder

COMPRESSION = 8
DEAD_CODE_USAGE = 0.03
WEIGHTS_ENV = "MRIBENCH_WEIGHTS"
PERCEPTUAL_WEIGHTS_FILE = "resnet50-imagenet.pth"


def check_shape(shape: tuple[int, int, int]) -> None:
    if any(s % COMPRESSION for s in shape):
        raise MribenchError(f"copedit: preprocess shape {tuple(shape)} must be divisible by {COMPRESSION} on every axis")


class CoPeVAE(nn.Module):
    """VQ autoencoder + three prompt encoders + pretext heads, for volumes (B, C, D, H, W) in [0, 1]."""

    def __init__(self, cfg: TokenizerConfig, problem: str, n_channels: int, shape: tuple[int, int, int],
                 n_elements: int):
        super().__init__()
        check_shape(shape)
        self.cfg, self.problem, self.n_channels, self.shape = cfg, problem, n_channels, tuple(shape)
        self.vqvae = VQVAE(
            spatial_dims=3, in_channels=1, out_channels=1, channels=cfg.channels, num_res_layers=cfg.num_res_layers,
            num_res_channels=cfg.channels, downsample_parameters=((2, 4, 1, 1),) * 3,
            upsample_parameters=((2, 4, 1, 1, 0),) * 3, num_embeddings=cfg.codebook_size,
            embedding_dim=cfg.latent_dim)
        self.prompt_encoders = nn.ModuleList(
            PromptEncoder(n_channels, shape[0], cfg.prompt_channels, cfg.prompt_dim) for _ in range(3))
        self.heads = PretextHeads(cfg, problem, n_channels, shape[0], n_elements)

    # -- latents -------------------------------------------------------------------------------------------
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → quantised latents (B, E=C, c, D/8, H/8, W/8)."""
        quantized, _ = self.vqvae.quantize(self.vqvae.encode(_elements(image)))
        return _regroup(quantized, image.shape[0])

    def encode_continuous(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → encoder output before quantisation (B, E=C, c, D/8, H/8, W/8)."""
        return _regroup(self.vqvae.encode(_elements(image)), image.shape[0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, E, c, d, h, w) → volumes (B, C=E, D, H, W)."""
        b, e = latents.shape[:2]
        return self.vqvae.decode(latents.flatten(0, 1)).reshape(b, e, *self.shape)

    def prompts(self, zero_filled: torch.Tensor) -> torch.Tensor:
        """Prompt tokens (B, 3, P) — count, position, assessment — from the zero-filled input alone."""
        return torch.stack([encoder(zero_filled) for encoder in self.prompt_encoders], dim=1)

    # -- stage I forward ---------------------------------------------------------------------------------
    def forward(self, complete: torch.Tensor, availability_mask: torch.Tensor,
                crop: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
        """complete (B, C, D, H, W), training availability (B, C, D) → reconstruction, VQ and pretext losses.

        ``crop`` = (h0, w0, height, width) runs the autoencoder on that in-plane window only (all slices kept, so
        every missing latent is in it); the prompts always read the whole zero-filled volume. The returned
        reconstruction is of the window.
        """
        window = complete if crop is None else complete[..., crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
        encodings = self.vqvae.encode(_elements(window))
        quantized, vq_loss = self.vqvae.quantize(encodings)
        reconstruction = self.vqvae.decode(quantized).reshape(window.shape)
        zero_filled = complete * availability_mask[..., None, None].to(complete.dtype)
        targets = PretextTargets.from_mask(availability_mask, self.problem, COMPRESSION)
        pretext, accuracies = self.heads.losses(self.prompts(zero_filled), _regroup(encodings, complete.shape[0]),
                                                targets)
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


def _elements(image: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) → (B·C, 1, D, H, W): each modality (or the cardiac volume) encoded separately."""
    return image.reshape(-1, 1, *image.shape[2:])


def _regroup(latents: torch.Tensor, batch: int) -> torch.Tensor:
    return latents.reshape(batch, -1, *latents.shape[1:])


def build_discriminator(cfg: TokenizerConfig) -> PatchDiscriminator:
    """MONAI's patch discriminator on 1-channel element volumes (instance norm: batch-size independent)."""
    return PatchDiscriminator(spatial_dims=3, channels=cfg.discriminator_channels, in_channels=1,
                              num_layers_d=cfg.discriminator_layers, norm="INSTANCE")


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


def build_perceptual(weights: dict[str, str] | None) -> nn.Module | None:
    if weights is None:
        return None
    from monai.losses import PerceptualLoss

    try:
        return PerceptualLoss(spatial_dims=3, network_type="resnet50", is_fake_3d=True, pretrained=True,
                              pretrained_path=weights["file"])
    except Exception as exc:  # noqa: BLE001 - a wrong file raises torch/pickle errors of many types
        raise MribenchError(f"{weights['file']}: not a torchvision ResNet-50 state dict ({type(exc).__name__})") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
