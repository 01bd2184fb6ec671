"""MDiT3D: the latent diffusion transformer of CoPeDiT (stage II), and the plain DiT / DiT-3D ablation diffusers.

Reads top to bottom: embedders, the transformer block with factorised attention, the final layer, the model, the
size presets, then helpers (patchify, sin-cos tables). ``diffusers.py`` builds the diffuser a config names.

Shapes. Latents are ``(B, E, c, d, h, w)``: E elements (brain: modalities; cardiac: E = 1), each a CoPeVAE latent of
``c`` channels on the volume grid ``(D, H, W) / 8`` (volume convention ``(C, D, H, W)``, D = slice axis). Paper
shapes: brain ``(B, 4, 8, 8, 24, 24)`` (BraTS; 3 elements for IXI), cardiac ``(B, 1, 8, 4, 24, 24)``.
A 3D patch ``(pd, ph, pw)`` turns one element into ``N = d/pd * h/ph * w/pw`` tokens on the grid
``(d', h', w')``; inside the model tokens are held as ``(B, E, N, C)`` with N in ``(d', h', w')`` order.

Blocks. Each block attends over a subset of the token axes (element, depth, plane) and treats the others as batch,
so no factorised block ever attends over all tokens:
- brain (``layout="modal"``): Spatial blocks (over depth and plane: the 3D tokens of one modality) alternate with
  Modal blocks (over elements: the modalities at one token position);
- cardiac (``layout="planar"``): Planar blocks (over plane: within one slice plane) alternate with Spatial blocks
  (over depth: through-plane, along the slice axis at one in-plane position).
The timestep enters every block through adaLN-Zero; the conditioning (CoPeVAE's three 512-d prompts, or a binary mask
code for the ablation) is added to the timestep embedding only in the *primary* blocks (Modal for brain, Spatial for
cardiac; the paper's choice), or in the *secondary* ones, or in both (``inject``).

Sizes. ``MDiT3D-B`` = 768 hidden / 16 blocks / 12 heads / patch 2 (173.3 M parameters at the brain latent shape).
The paper's table lists ``MDiT3D-C`` as 576 / 12 / 12 / patch 1 *and* 33.0 M parameters, which is inconsistent (12
blocks of width 576 alone hold ~72 M). The authors' released 33 M cardiac model is 384 / 12 / 6 / patch 1, so
``MDiT3D-C`` here is that configuration (33.06 M at the cardiac latent shape) and ``MDiT3D-C576`` keeps the table's
literal widths (73.8 M).

Ablation diffusers (``diffuser``): ``dit`` — a plain DiT: 2D patches ``(1, p, p)`` of every latent slice, a 1D sin-cos
position over the token sequence and full attention over all tokens of all elements; ``dit3d`` — DiT-3D: 3D patches,
3D sin-cos and full attention over all tokens of all elements concatenated. Both condition every block. ``unet3d``
(MONAI's DiffusionModelUNet, sized to MDiT3D's parameter count) lives in ``unet_diffuser.py``; ``diffusers.build_diffuser`` picks one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mribench.errors import MribenchError
from mribench_copedit.presets import DIFFUSER_NAMES

LAYOUTS = ("modal", "planar")
INJECTIONS = ("primary", "secondary", "both")
CONDITIONS = ("prompts", "mask", "none")
DIFFUSERS = tuple(DIFFUSER_NAMES)
TOKEN_AXES = ("element", "depth", "plane")


@dataclass(frozen=True)
class MDiT3DSize:
    """Width, depth, heads and patch of one size preset: a cubic edge, or ``(pd, ph, pw)`` (e.g. ``(1, 2, 2)`` keeps
    one token per latent slice for slice-wise cardiac latents); ``mlp_ratio`` scales the MLP's hidden width."""

    hidden: int
    depth: int
    heads: int
    patch: int | tuple[int, int, int]
    mlp_ratio: float = 4.0

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return (self.patch,) * 3 if isinstance(self.patch, int) else tuple(self.patch)


@dataclass(frozen=True)
class MDiT3DConfig:
    """What to build. ``size`` names an entry of ``MDIT3D_PRESETS``.

    layout: "modal" (brain: Spatial/Modal blocks) | "planar" (cardiac: Planar/Spatial blocks).
    inject: where the conditioning enters — "primary" (Modal / cardiac Spatial blocks, the paper) | "secondary" |
        "both". The timestep enters every block regardless.
    condition: "prompts" (CoPeVAE prompts ``(B, prompt_tokens, prompt_dim)``) | "mask" (binary mask code, ablation)
        | "none" (prompts off).
    diffuser: "mdit3d" | "unet3d" | "dit" | "dit3d" (the paper's diffuser ablation).
    """

    size: str = "MDiT3D-T"
    layout: str = "modal"
    inject: str = "primary"
    condition: str = "prompts"
    diffuser: str = "mdit3d"
    prompt_tokens: int = 3
    prompt_dim: int = 512

    def __post_init__(self) -> None:
        for key, value, allowed in (("size", self.size, tuple(MDIT3D_PRESETS)), ("layout", self.layout, LAYOUTS),
                                    ("inject", self.inject, INJECTIONS), ("condition", self.condition, CONDITIONS),
                                    ("diffuser", self.diffuser, DIFFUSERS)):
            if value not in allowed:
                raise MribenchError(f"MDiT3DConfig.{key}={value!r}; expected one of {', '.join(allowed)}")

    @property
    def dims(self) -> MDiT3DSize:
        return MDIT3D_PRESETS[self.size]


# -- embedders -----------------------------------------------------------------------------------------------
class TimestepEmbedder(nn.Module):
    """Diffusion timestep ``(B,)`` (integer or float, 0..T-1) -> ``(B, hidden)``: sinusoidal features, then an MLP."""

    def __init__(self, hidden: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        features = sincos_features(timesteps.float(), self.frequency_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class PromptEmbedder(nn.Module):
    """CoPeVAE prompts ``(B, tokens, prompt_dim)`` -> ``(B, hidden)``: the tokens concatenated, one linear map."""

    def __init__(self, tokens: int, prompt_dim: int, hidden: int):
        super().__init__()
        self.tokens, self.prompt_dim = tokens, prompt_dim
        self.proj = nn.Linear(tokens * prompt_dim, hidden)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        if prompts.shape[1:] != (self.tokens, self.prompt_dim):
            raise MribenchError(f"prompts have shape {tuple(prompts.shape)}; expected (B, {self.tokens}, "
                                f"{self.prompt_dim})")
        return self.proj(prompts.flatten(1))


class MaskCodeEmbedder(nn.Module):
    """Binary mask code ``(B, length)`` (1 = observed element/slice, 0 = missing) -> ``(B, hidden)``."""

    def __init__(self, length: int, hidden: int):
        super().__init__()
        self.length = length
        self.proj = nn.Linear(length, hidden)

    def forward(self, mask_code: torch.Tensor) -> torch.Tensor:
        if mask_code.ndim != 2 or mask_code.shape[1] != self.length:
            raise MribenchError(f"mask code has shape {tuple(mask_code.shape)}; expected (B, {self.length})")
        return self.proj(mask_code.to(self.proj.weight.dtype))


# -- blocks ---------------------------------------------------------------------------------------------------
class FactorisedAttention(nn.Module):
    """Multi-head self-attention over a subset of the token axes; the remaining axes act as batch.

    Tokens ``(B, E, N, C)`` are viewed as ``(B, E, D, P, C)`` with ``P = h' * w'`` (the plane); ``attend_over``
    names the axes forming each attention sequence, e.g. ``("element",)`` for a Modal block. One fused QKV
    projection and one ``scaled_dot_product_attention`` call over all groups (the other axes and the heads fold
    into its batch dims). Q, K and V are split off the projection's own layout ``(b, e, d, p, three, h, c)`` before
    the regrouping (one einops pattern each way), so each is a view of it and backward stacks their gradients
    straight into that layout: one copy, not a stack then a transposing copy.
    """

    def __init__(self, hidden: int, heads: int, attend_over: tuple[str, ...]):
        super().__init__()
        if hidden % heads:
            raise MribenchError(f"hidden width {hidden} is not divisible by {heads} heads")
        unknown = set(attend_over) - set(TOKEN_AXES)
        if unknown or not attend_over:
            raise MribenchError(f"attention axes {attend_over}; expected a non-empty subset of {TOKEN_AXES}")
        self.heads, self.head_dim = heads, hidden // heads
        self.attend_over = tuple(axis for axis in TOKEN_AXES if axis in attend_over)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        letter = {"element": "e", "depth": "d", "plane": "p"}
        groups = " ".join(["b", *(letter[axis] for axis in TOKEN_AXES if axis not in self.attend_over)])
        sequence = " ".join(letter[axis] for axis in self.attend_over)
        # e.g. a Modal block: "b e d p h c -> (b d p) h (e) c"
        self._to_groups = f"b e d p h c -> ({groups}) h ({sequence}) c"
        self._from_groups = f"({groups}) h ({sequence}) c -> b e (d p) (h c)"

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        batch, elements = x.shape[:2]
        sizes = {"b": batch, "e": elements, "d": grid[0], "p": grid[1] * grid[2]}
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).unflatten(2, (sizes["d"], sizes["p"]))
        q, k, v = (rearrange(part, self._to_groups) for part in qkv.unbind(-3))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, self._from_groups, **sizes))


class MDiTBlock(nn.Module):
    """adaLN-Zero transformer block with factorised attention.

    forward(x ``(B, E, N, C)``, condition ``(B, C)``, grid ``(d', h', w')``) -> ``(B, E, N, C)``.
    ``takes_conditioning`` tells the model whether to pass timestep + prompt (True) or the timestep alone.
    The modulation is zero-initialised, so a fresh block is the identity.
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, attend_over: tuple[str, ...],
                 takes_conditioning: bool, kind: str):
        super().__init__()
        self.kind = kind
        self.takes_conditioning = takes_conditioning
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = FactorisedAttention(hidden, heads, attend_over)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        # exact (erf) GELU: on CPU it runs several times faster than DiT's tanh approximation
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, hidden))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, condition: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(condition)[:, None, None, :].chunk(6, dim=-1)
        # gated residuals as one fused pass each (x + gate * branch)
        x = torch.addcmul(x, gate1, self.attn(modulate(self.norm1(x), shift1, scale1), grid))
        return torch.addcmul(x, gate2, self.mlp(modulate(self.norm2(x), shift2, scale2)))


class FinalLayer(nn.Module):
    """adaLN (timestep only), then a zero-initialised linear map from tokens to patches ``(B, E, N, patch_dim)``."""

    def __init__(self, hidden: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, patch_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(condition)[:, None, None, :].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# -- the model ------------------------------------------------------------------------------------------------
class MDiT3D(nn.Module):
    """Latent diffusion transformer predicting clean latents (x0).

    Args:
        config: what to build (``diffuser`` "mdit3d", "dit" or "dit3d"; ``diffusers.build_diffuser`` builds any).
        latent_shape: ``(E, c, d, h, w)`` of one sample's latents; d, h, w must be divisible by the patch.
        mask_code_length: length of the binary mask code when ``condition == "mask"`` (brain: E modalities;
            cardiac: the number of image slices). Defaults to E.

    forward(latents ``(B, E, c, d, h, w)`` float, timesteps ``(B,)``, prompts ``(B, 3, 512)`` | None,
    mask_code ``(B, L)`` | None) -> x0 prediction ``(B, E, c, d, h, w)``. Passing no prompts / mask code leaves only
    the timestep (the "prompts off" intervention); passing a kind the config did not build raises.
    """

    def __init__(self, config: MDiT3DConfig, latent_shape: tuple[int, int, int, int, int],
                 mask_code_length: int | None = None):
        super().__init__()
        if config.diffuser not in ("mdit3d", "dit", "dit3d"):
            raise MribenchError(f"MDiT3D builds the transformer diffusers, not {config.diffuser!r}; "
                                "use diffusers.build_diffuser")
        dims = config.dims
        self.config = config
        self.latent_shape = tuple(int(n) for n in latent_shape)
        elements, channels, depth, height, width = self.latent_shape
        self.patch_shape = (1, *dims.patch_shape[1:]) if config.diffuser == "dit" else dims.patch_shape
        for axis, size, edge in zip("dhw", (depth, height, width), self.patch_shape, strict=True):
            if size % edge:
                raise MribenchError(f"latent {axis}={size} is not divisible by the {config.size} patch {edge}")
        self.grid = (depth // self.patch_shape[0], height // self.patch_shape[1], width // self.patch_shape[2])
        hidden = dims.hidden

        self.patch_embed = nn.Linear(channels * math.prod(self.patch_shape), hidden)
        positions = (sincos_sequence_table(hidden, math.prod(self.grid)) if config.diffuser == "dit"
                     else sincos_grid_table(hidden, self.grid))
        self.register_buffer("pos_embed", positions, persistent=False)
        self.element_embed = nn.Parameter(torch.zeros(elements, hidden)) if elements > 1 else None
        self.t_embedder = TimestepEmbedder(hidden)
        self.prompt_embedder = (PromptEmbedder(config.prompt_tokens, config.prompt_dim, hidden)
                                if config.condition == "prompts" else None)
        self.mask_embedder = (MaskCodeEmbedder(mask_code_length or elements, hidden)
                              if config.condition == "mask" else None)
        self.blocks = nn.ModuleList(
            MDiTBlock(hidden, dims.heads, dims.mlp_ratio, axes, takes, kind)
            for kind, axes, takes in block_plan(config))
        self.final_layer = FinalLayer(hidden, channels * math.prod(self.patch_shape))
        self._initialise()

    def _initialise(self) -> None:
        def xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(xavier)
        if self.element_embed is not None:
            nn.init.normal_(self.element_embed, std=0.02)
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.final_layer.modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def conditioning(self, timesteps: torch.Tensor, prompts: torch.Tensor | None = None,
                     mask_code: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (timestep embedding ``(B, C)``, timestep + prompt/mask-code embedding ``(B, C)``)."""
        if prompts is not None and self.prompt_embedder is None:
            raise MribenchError(f"prompts given to a diffuser built with condition={self.config.condition!r}")
        if mask_code is not None and self.mask_embedder is None:
            raise MribenchError(f"mask code given to a diffuser built with condition={self.config.condition!r}")
        timestep = self.t_embedder(timesteps)
        if prompts is not None:
            return timestep, timestep + self.prompt_embedder(prompts)
        if mask_code is not None:
            return timestep, timestep + self.mask_embedder(mask_code)
        return timestep, timestep

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, prompts: torch.Tensor | None = None,
                mask_code: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise MribenchError(f"latents have shape {tuple(latents.shape)}; this diffuser was built for "
                                f"(B, {', '.join(map(str, self.latent_shape))})")
        x = self.patch_embed(patchify(latents, self.patch_shape)) + self.pos_embed
        if self.element_embed is not None:
            x = x + self.element_embed[:, None, :]
        timestep, conditioned = self.conditioning(timesteps, prompts, mask_code)
        for block in self.blocks:
            x = block(x, conditioned if block.takes_conditioning else timestep, self.grid)
        return unpatchify(self.final_layer(x, timestep), self.patch_shape, self.latent_shape)


# -- size presets ---------------------------------------------------------------------------------------------
MDIT3D_PRESETS: dict[str, MDiT3DSize] = {
    "MDiT3D-B": MDiT3DSize(hidden=768, depth=16, heads=12, patch=2),    # brain, paper: 173.3 M
    "MDiT3D-C": MDiT3DSize(hidden=384, depth=12, heads=6, patch=1),     # cardiac, paper's 33.0 M (released config)
    "MDiT3D-C576": MDiT3DSize(hidden=576, depth=12, heads=12, patch=1),  # the paper table's literal widths
    "MDiT3D-S": MDiT3DSize(hidden=192, depth=8, heads=6, patch=1),
    "MDiT3D-XS": MDiT3DSize(hidden=64, depth=4, heads=4, patch=2),           # cpu preset, brain
    "MDiT3D-XS-slice": MDiT3DSize(hidden=64, depth=4, heads=4, patch=(1, 2, 2)),  # cpu preset, slice-wise cardiac
    "MDiT3D-T": MDiT3DSize(hidden=48, depth=4, heads=4, patch=1),       # smoke preset / tests
}


# -- helpers --------------------------------------------------------------------------------------------------
def block_plan(config: MDiT3DConfig) -> list[tuple[str, tuple[str, ...], bool]]:
    """-> per block (kind, attention axes, takes conditioning). Factorised kinds alternate, secondary first."""
    depth = config.dims.depth
    if config.diffuser in ("dit", "dit3d"):
        return [("full", TOKEN_AXES, True)] * depth
    if config.layout == "modal":
        secondary, primary = ("spatial", ("depth", "plane")), ("modal", ("element",))
    else:
        secondary, primary = ("planar", ("plane",)), ("spatial", ("depth",))
    into_primary = config.inject in ("primary", "both")
    into_secondary = config.inject in ("secondary", "both")
    return [(*primary, into_primary) if index % 2 else (*secondary, into_secondary) for index in range(depth)]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(shift, x, 1 + scale)


def patchify(latents: torch.Tensor, patch_shape: tuple[int, int, int]) -> torch.Tensor:
    """``(B, E, c, d, h, w)`` -> ``(B, E, N, c * pd * ph * pw)``, tokens in ``(d', h', w')`` order."""
    pd, ph, pw = patch_shape
    return rearrange(latents, "b e c (d pd) (h ph) (w pw) -> b e (d h w) (c pd ph pw)", pd=pd, ph=ph, pw=pw)


def unpatchify(patches: torch.Tensor, patch_shape: tuple[int, int, int],
               latent_shape: tuple[int, int, int, int, int]) -> torch.Tensor:
    """Inverse of ``patchify``: ``(B, E, N, c * pd * ph * pw)`` -> ``(B, E, c, d, h, w)``."""
    _, channels, depth, height, width = latent_shape
    pd, ph, pw = patch_shape
    return rearrange(patches, "b e (d h w) (c pd ph pw) -> b e c (d pd) (h ph) (w pw)", c=channels, d=depth // pd,
                     h=height // ph, w=width // pw, pd=pd, ph=ph, pw=pw)


def sincos_features(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Positions ``(n,)`` -> ``(n, dim)``: cos then sin at ``dim // 2`` geometric frequencies (dim even)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                                 device=positions.device) / half)
    angles = positions.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_grid_table(hidden: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D sin-cos position table ``(N, hidden)`` for a ``(d', h', w')`` token grid in that order.

    Each axis gets ``2 * (hidden // 6)`` channels (d, then h, then w); leftover channels are zero.
    """
    per_axis = 2 * (hidden // 6)
    depth, height, width = grid
    coords = torch.stack(torch.meshgrid(torch.arange(depth), torch.arange(height), torch.arange(width),
                                        indexing="ij"), dim=-1).reshape(-1, 3)
    parts = [sincos_features(coords[:, axis], per_axis) for axis in range(3)]
    table = torch.cat(parts, dim=-1)
    return F.pad(table, (0, hidden - table.shape[1]))


def sincos_sequence_table(hidden: int, length: int) -> torch.Tensor:
    """Fixed 1D sin-cos position table ``(length, hidden)`` over a flattened token sequence (plain DiT)."""
    table = sincos_features(torch.arange(length), 2 * (hidden // 2))
    return F.pad(table, (0, hidden - table.shape[1]))


def count_trainable_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)
