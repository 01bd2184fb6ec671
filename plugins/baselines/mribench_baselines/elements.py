"""Element views of volumes: every learned baseline is a 2D network over an *element stack*.

Elements: brain volumes (C, D, H, W) have C elements (modalities), cardiac volumes (1, D, H, W) have D elements
(slices). An element stack (S, N, H, W) holds N elements per sample: brain → one sample per axial slice (S = B·D,
N = C); cardiac → one sample per volume (S = B, N = D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BRAIN = "missing-modality"


def element_stack(volume: torch.Tensor, availability: torch.Tensor, problem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, D, H, W) volumes + (B, C, D) availability → element stack (S, N, H, W) + availability (S, N)."""
    if problem == BRAIN:
        b, c, d, h, w = volume.shape
        return (volume.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w),
                availability.permute(0, 2, 1).reshape(b * d, c))
    return volume[:, 0], availability[:, 0]


def volume_from_stack(stack: torch.Tensor, problem: str, batch_size: int) -> torch.Tensor:
    """Inverse of :func:`element_stack`: (S, N, H, W) → (B, C, D, H, W)."""
    if problem == BRAIN:
        s, n, h, w = stack.shape
        return stack.reshape(batch_size, s // batch_size, n, h, w).permute(0, 2, 1, 3, 4)
    return stack[:, None]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes (replicate) up to a multiple; returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
