"""What conditions a learned baseline: the binary availability code, or completeness prompts.

The base methods read the binary availability code (S, N); their "+Prompts" variants read the prompt tokens
(S, 3, P) of a frozen tokenizer instead and never the mask. That tokenizer comes from the prompt provider
:data:`~mribench_baselines.plugin.PROMPT_PROVIDER` (copedit's CoPeVAE), found through the registry (hook
``mribench_register_prompt_providers``), never by importing the providing plugin. Where a network needs to know
structurally which elements are present (attention keys, where to put noise), a +Prompts variant infers it from the
zero-filled image (:func:`mribench.protocol.infer_availability`), never from ``Batch.availability_mask``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mribench.errors import MribenchError
from mribench_baselines.plugin import PROMPT_PROVIDER, prompt_provider_missing_reason


@dataclass(frozen=True)
class CodeSpec:
    """What conditions a network: the binary mask code (N values) or prompt tokens (3 × prompt_dim)."""

    n_elements: int
    prompt_dim: int = 0  # 0 = binary mask code

    @property
    def uses_prompts(self) -> bool:
        return self.prompt_dim > 0


class ConditionCode(nn.Module):
    """Binary availability code (S, N) or prompt tokens (S, 3, P) → conditioning vector (S, dim)."""

    def __init__(self, spec: CodeSpec, dim: int):
        super().__init__()
        width = 3 * spec.prompt_dim if spec.uses_prompts else spec.n_elements
        self.net = nn.Sequential(nn.LayerNorm(width) if spec.uses_prompts else nn.Identity(),
                                 nn.Linear(width, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition.flatten(1).float())


def prompt_provider() -> type:
    """The registered provider of the +Prompts variants' frozen tokenizer (``frozen_tokenizer``,
    ``restore_tokenizer``; see ``mribench.hookspecs.mribench_register_prompt_providers``)."""
    from mribench.plugins import registry

    reason = prompt_provider_missing_reason()
    if reason:
        raise MribenchError(f"the +Prompts methods are unavailable: {reason}")
    return registry().get("prompt provider", PROMPT_PROVIDER).cls
