"""Completeness perception: three prompt encoders, their pretext heads and losses.

Each prompt encoder reads ONLY the tokenizer's latents of the available elements ``(B, E, c, d, h, w)``, zero where
an element is missing (the paper's §3.2: the prompt encoders transform the latent tokens of the available elements)
— never an image or an availability mask — and returns one prompt token: 3D convs over the latent grid (elements ×
channels stacked as input channels; the second conv halves the in-plane grid), average pooling over the in-plane
axes (h, w), then a linear map of the remaining slice profile (d × channels) to ``prompt_dim``. Pooling only in-plane
keeps where along the slice axis a run is missing, which the cardiac position task needs, and lets the encoders read
latents of any in-plane size (stage I trains on in-plane crops).

Pretext tasks (supervised by the training mask, used only in stage I):
1. count: missing count classification over 0..N (cross-entropy);
2. position: brain — which modalities are missing (multi-label BCE); cardiac — where the run starts (cross-entropy
   over D start slices);
3. assessment: CLIP-style InfoNCE, anchor = the assessment prompt of the incomplete input, positive = an embedding
   of the same subject's missing latents (masked mean over the missing latent positions of the encoder output before
   quantisation, so the pretext gradient shapes the encoder even while the codebook is still collapsed),
   negatives = the other subjects of the batch; temperature from the config (0.2 in the paper).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mribench.protocol import missing_count
from mribench_copedit.presets import TokenizerConfig


class PromptEncoder(nn.Module):
    """Available latents (B, E, c, d, h, w), zero where missing, → one prompt token (B, prompt_dim)."""

    def __init__(self, in_channels: int, latent_depth: int, channels: tuple[int, int, int], prompt_dim: int):
        super().__init__()
        c1, c2, c3 = channels
        self.convs = nn.Sequential(
            nn.Conv3d(in_channels, c1, kernel_size=3, padding=1), nn.GELU(),
            nn.Conv3d(c1, c2, kernel_size=3, stride=(1, 2, 2), padding=1), nn.GELU(),
            nn.Conv3d(c2, c3, kernel_size=3, padding=1), nn.GELU(),
        )
        self.to_token = nn.Linear(c3 * latent_depth, prompt_dim)

    def forward(self, available_latents: torch.Tensor) -> torch.Tensor:
        features = self.convs(available_latents.flatten(1, 2)).mean(dim=(3, 4))  # (B, c3, d): in-plane pooling
        return self.to_token(features.flatten(1))


@dataclass
class PretextTargets:
    """Labels derived from a training availability mask (B, C, D)."""

    count: torch.Tensor  # (B,) int64 missing count
    position: torch.Tensor  # brain: (B, C) float 1 = missing; cardiac: (B,) int64 run start
    missing_latents: torch.Tensor  # (B, E, d) bool, True where a latent slice holds missing content

    @classmethod
    def from_mask(cls, availability_mask: torch.Tensor, problem: str, depth_compression: int) -> PretextTargets:
        count = missing_count(availability_mask, problem)
        if problem == "missing-modality":
            position = (~availability_mask.all(dim=2)).float()
        else:
            slice_missing = ~availability_mask.all(dim=1)  # (B, D)
            position = slice_missing.int().argmax(dim=1)
        return cls(count, position, ~latent_availability(availability_mask, depth_compression))


def latent_availability(element_availability: torch.Tensor, depth_compression: int) -> torch.Tensor:
    """(B, C, D) observed elements → (B, E=C, D/depth_compression): a latent slice is observed iff all the slices
    it is built from are (with slice-wise latents, depth_compression = 1, exactly the observed slices)."""
    b, c, d = element_availability.shape
    return element_availability.reshape(b, c, d // depth_compression, depth_compression).all(dim=3)


def mask_latents(latents: torch.Tensor, latent_availability: torch.Tensor) -> torch.Tensor:
    """Latents (B, E, c, d, h, w) with the unavailable latent slices (B, E, d) set to zero."""
    return latents * latent_availability[:, :, None, :, None, None].to(latents.dtype)


class PretextHeads(nn.Module):
    """Projection heads of the three pretext tasks and the assessment embedding of the missing latents."""

    def __init__(self, cfg: TokenizerConfig, problem: str, n_channels: int, n_slices: int, n_elements: int):
        super().__init__()
        self.problem = problem
        p = cfg.prompt_dim
        self.count = nn.Sequential(nn.Linear(p, p), nn.GELU(), nn.Linear(p, n_elements + 1))
        n_positions = n_channels if problem == "missing-modality" else n_slices
        self.position = nn.Sequential(nn.Linear(p, p), nn.GELU(), nn.Linear(p, n_positions))
        self.anchor = nn.Linear(p, p)
        self.missing_embed = nn.Sequential(nn.Conv3d(cfg.latent_dim, p, kernel_size=3, padding=1), nn.GELU())
        self.positive = nn.Linear(p, p)
        self.temperature = cfg.temperature

    def losses(self, prompts: torch.Tensor, latents: torch.Tensor, targets: PretextTargets
               ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """prompts (B, 3, P); encoder latents (B, E, c, d, h, w) of the complete input → (losses, accuracies in [0, 1])."""
        count_logits = self.count(prompts[:, 0])
        count_loss = F.cross_entropy(count_logits, targets.count)
        count_acc = (count_logits.argmax(1) == targets.count).float().mean()
        position_logits = self.position(prompts[:, 1])
        if self.problem == "missing-modality":
            position_loss = F.binary_cross_entropy_with_logits(position_logits, targets.position)
            position_acc = ((position_logits > 0).float() == targets.position).all(dim=1).float().mean()
        else:
            position_loss = F.cross_entropy(position_logits, targets.position)
            position_acc = (position_logits.argmax(1) == targets.position).float().mean()
        anchor = F.normalize(self.anchor(prompts[:, 2]), dim=-1)
        positive = F.normalize(self.positive(self.missing_embedding(latents, targets.missing_latents)), dim=-1)
        logits = anchor @ positive.T / self.temperature
        labels = torch.arange(len(anchor), device=anchor.device)
        contrastive = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        contrastive_acc = (logits.argmax(1) == labels).float().mean()
        losses = {"count": count_loss, "position": position_loss, "contrastive": contrastive}
        accuracies = {"count_acc": float(count_acc), "position_acc": float(position_acc),
                      "assessment_acc": float(contrastive_acc)}
        return losses, accuracies

    def missing_embedding(self, latents: torch.Tensor, missing_latents: torch.Tensor) -> torch.Tensor:
        """Masked mean of embedded latents over the missing positions: (B, E, c, d, h, w), (B, E, d) → (B, P)."""
        b, e, c, d, h, w = latents.shape
        features = self.missing_embed(latents.reshape(b * e, c, d, h, w)).mean(dim=(3, 4))  # (B·E, P, d)
        features = features.reshape(b, e, -1, d)
        weights = missing_latents.to(features.dtype)[:, :, None, :]  # (B, E, 1, d)
        return (features * weights).sum(dim=(1, 3)) / weights.sum(dim=(1, 3)).clamp_min(1.0)
