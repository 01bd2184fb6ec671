"""Completeness perception: three prompt encoders, their pretext heads and losses.

Each prompt encoder reads ONLY the zero-filled incomplete input (B, C, D, H, W) — never an availability mask —
and returns one prompt token: 3D convs (strides 4, 2, 1 → an 8× coarser grid), average pooling over the in-plane
axes (H, W), then a linear map of the remaining slice profile (d × channels) to ``prompt_dim``. Pooling only
in-plane keeps where along the slice axis a run is missing, which the cardiac position task needs.

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
    """Zero-filled volume (B, C, D, H, W), D/H/W divisible by 8 → one prompt token (B, prompt_dim)."""

    def __init__(self, in_channels: int, n_slices: int, channels: tuple[int, int, int], prompt_dim: int):
        super().__init__()
        c1, c2, c3 = channels
        self.convs = nn.Sequential(
            nn.Conv3d(in_channels, c1, kernel_size=4, stride=4), nn.GELU(),
            nn.Conv3d(c1, c2, kernel_size=3, stride=2, padding=1), nn.GELU(),
            nn.Conv3d(c2, c3, kernel_size=3, stride=1, padding=1), nn.GELU(),
        )
        self.to_token = nn.Linear(c3 * (n_slices // 8), prompt_dim)

    def forward(self, zero_filled: torch.Tensor) -> torch.Tensor:
        features = self.convs(zero_filled).mean(dim=(3, 4))  # (B, c3, D/8): in-plane average pooling
        return self.to_token(features.flatten(1))


@dataclass
class PretextTargets:
    """Labels derived from a training availability mask (B, C, D)."""

    count: torch.Tensor  # (B,) int64 missing count
    position: torch.Tensor  # brain: (B, C) float 1 = missing; cardiac: (B,) int64 run start
    missing_latents: torch.Tensor  # (B, E, d) bool, True where a latent slice holds missing content

    @classmethod
    def from_mask(cls, availability_mask: torch.Tensor, problem: str, compression: int = 8) -> PretextTargets:
        count = missing_count(availability_mask, problem)
        if problem == "missing-modality":
            position = (~availability_mask.all(dim=2)).float()
        else:
            slice_missing = ~availability_mask.all(dim=1)  # (B, D)
            position = slice_missing.int().argmax(dim=1)
        return cls(count, position, ~latent_availability(availability_mask, compression))


def latent_availability(element_availability: torch.Tensor, compression: int = 8) -> torch.Tensor:
    """(B, C, D) observed elements → (B, E=C, D/compression): a latent slice is observed iff all its slices are."""
    b, c, d = element_availability.shape
    return element_availability.reshape(b, c, d // compression, compression).all(dim=3)


def observed_from_zero_filled(image: torch.Tensor, problem: str) -> torch.Tensor:
    """Which elements of a zero-filled volume (B, C, D, H, W) are observed, from the image alone → (B, C, D) bool.

    Brain: a modality is missing iff its whole channel is exactly zero. Cardiac: a slice is missing iff it is exactly
    zero. Preprocessed observed content is never exactly zero everywhere (percentile-normalised anatomy), so this
    recovers the availability without reading the mask.
    """
    nonzero_slices = image.abs().amax(dim=(3, 4)) > 0  # (B, C, D)
    if problem == "missing-modality":
        return nonzero_slices.any(dim=2, keepdim=True).expand_as(nonzero_slices)
    return nonzero_slices


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
