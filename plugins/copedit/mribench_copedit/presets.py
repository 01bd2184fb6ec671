"""CoPeDiT configurations: one dataclass per stage, a brain and a cardiac pair per preset (smoke / cpu / paper).

The paper's settings (../shared/paper-notes.md): CoPeVAE-B channels (256, 384, 512) for brain, -C (32, 64, 128)
for cardiac; codebook 8192, latent dim 8, prompt dim 512; stage I Adam 1e-4, batch 8 (B) / 64 (C), 400k / 100k
steps; stage II MDiT3D-B / -C, AdamW 5e-5, batch 32 / 64, 100k steps, EMA 0.9999, DDIM 200 / 250 steps.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from mribench.errors import MribenchError

PROMPT_NAMES = ("count", "position", "assessment")
# The diffusers stage II can train (``DiffusionStageConfig.diffuser``; the paper's diffuser ablation), each with the
# paper's spelling (progress lines, the ablation table's rows).
DIFFUSER_NAMES = {"mdit3d": "MDiT3D", "unet3d": "3D U-Net", "dit": "DiT", "dit3d": "DiT-3D"}


@dataclass(frozen=True)
class TokenizerConfig:
    """Stage I: CoPeVAE (VQ autoencoder per element) + three prompt encoders and pretext heads.

    channels: encoder/decoder widths of the levels; the first log2(``compression``) levels have stride 2, the others
        stride 1 (the paper: three stride-2 levels, 8×8×8).
    compression: down-sampling factor of every compressed axis (a power of two).
    slice_wise: encode each slice as a 2D image (cardiac): no through-plane compression nor mixing, so a latent slice
        is built from exactly one image slice and observed latents never depend on missing slices. The paper's
        tokenizer compresses cardiac stacks 8× through-plane, which makes latent slices straddle missing runs that
        may start anywhere; mribench tokenizes them slice-wise at every preset (``mribench_copedit`` README).
    quantize: VQ codebook (the paper's VQGAN) or continuous latents (the ``cpu`` brain preset's choice).
    num_res_layers / num_res_channels: residual units per level and their width (MONAI's default: 3 of 256).
    prompt_channels: widths of the prompt encoders' 3D convs; they read the encoder's latents of the available
        elements (the paper's §3.2), never an image or a mask.
    Loss weights: L1, VQ, perceptual (only when pretrained weights are on disk), adversarial (LSGAN patch
    discriminator, from ``adversarial_start`` on), pretext (= count · CE + position · CE/BCE + contrastive · InfoNCE).
    crop: in-plane (height, width) of the random window the autoencoder trains on (None = whole volume); the prompt
        encoders always see the whole volume. The cpu preset uses it to train 4× cheaper.
    """

    channels: tuple[int, ...] = (32, 64, 128)
    compression: int = 8
    slice_wise: bool = False
    quantize: bool = True
    num_res_layers: int = 3
    num_res_channels: int | tuple[int, ...] = 256
    codebook_size: int = 8192
    latent_dim: int = 8
    prompt_dim: int = 512
    prompt_channels: tuple[int, int, int] = (32, 64, 128)
    discriminator_channels: int = 32
    discriminator_layers: int = 3
    weight_l1: float = 1.0
    weight_vq: float = 1.0
    weight_perceptual: float = 0.05
    weight_adversarial: float = 0.01
    weight_pretext: float = 0.01
    weight_count: float = 1.0
    weight_position: float = 0.5
    weight_contrastive: float = 0.5
    temperature: float = 0.2
    adversarial_start: int = 10_000
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 1000
    steps: int = 100_000
    batch_size: int = 64
    grad_clip: float = 1.0
    bf16: bool = False
    save_every: int = 1000
    flip_augment: bool = True
    crop: tuple[int, int] | None = None
    report_subjects: int = 16

    def __post_init__(self) -> None:
        levels = self.compression.bit_length() - 1
        if self.compression < 1 or 2 ** levels != self.compression or levels > len(self.channels):
            raise MribenchError(f"copedit compression {self.compression}: a power of two with at most "
                                f"{len(self.channels)} stride-2 levels (one per channel width)")
        if self.crop is not None and any(size % self.compression or size < 2 * self.compression
                                         for size in self.crop):
            raise MribenchError(f"copedit crop {self.crop}: each side must be a multiple of {self.compression} "
                                f"and at least {2 * self.compression}")

    @property
    def depth_compression(self) -> int:
        """Compression along the slice axis: 1 when slice-wise."""
        return 1 if self.slice_wise else self.compression


@dataclass(frozen=True)
class DiffusionStageConfig:
    """Stage II: MDiT3D on cached latents (noise only on missing latents, x0-prediction MSE, DDIM sampling).

    network: a size key of ``mribench_copedit.mdit3d.MDIT3D_PRESETS``.
    inject: where the conditioning enters MDiT3D (``primary`` = Modal / cardiac Spatial blocks, the paper;
        ``secondary``; ``both``).
    diffuser: ``mdit3d`` | ``unet3d`` | ``dit`` | ``dit3d`` (the paper's diffuser ablation).
    condition: ``prompts`` (CoPeDiT), ``mask`` (binary codes derived from the zero-filled input instead of
        prompts, ablation) or ``none`` (prompts off, ablation).
    prompts_used: which of ``count``, ``position``, ``assessment`` prompts reach the network; the others are
        zeroed (the "w/o one prompt" ablations).
    joint_loss: regress all latents (the paper's joint reconstruction + synthesis objective, Eq. 5) or only the
        missing ones (ablation).
    flip_augment: in-plane flips; latents are encoded once per flip variant (the encoder is not flip-equivariant).
    """

    network: str = "MDiT3D-C"
    inject: str = "primary"
    diffuser: str = "mdit3d"
    condition: str = "prompts"
    prompts_used: tuple[str, ...] = PROMPT_NAMES
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 1000
    steps: int = 100_000
    batch_size: int = 64
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    bf16: bool = False
    sample_steps: int = 250
    save_every: int = 1000
    flip_augment: bool = True
    joint_loss: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.prompts_used) - set(PROMPT_NAMES)
        if unknown:
            raise MribenchError(f"copedit prompts_used: unknown {sorted(unknown)}; expected some of {PROMPT_NAMES}")


@dataclass(frozen=True)
class ProblemConfig:
    tokenizer: TokenizerConfig
    diffusion: DiffusionStageConfig


@dataclass(frozen=True)
class CoPeDiTConfig:
    """One preset: the brain (missing-modality) and cardiac (missing-slice) settings."""

    preset: str
    brain: ProblemConfig
    cardiac: ProblemConfig

    def for_problem(self, problem: str) -> ProblemConfig:
        return self.brain if problem == "missing-modality" else self.cardiac

    def with_diffusion(self, **changes) -> CoPeDiTConfig:
        """The same preset with stage II fields changed for both problems (ablation switches)."""
        return replace(self, brain=replace(self.brain, diffusion=replace(self.brain.diffusion, **changes)),
                       cardiac=replace(self.cardiac, diffusion=replace(self.cardiac.diffusion, **changes)))


_SMOKE_TOKENIZER = TokenizerConfig(
    channels=(8, 8, 16), num_res_layers=1, num_res_channels=8, codebook_size=64, prompt_dim=16,
    prompt_channels=(8, 16, 16), discriminator_channels=8, discriminator_layers=2, adversarial_start=6, warmup_steps=2,
    steps=12, batch_size=2, save_every=4, lr=2e-3, report_subjects=4)
_SMOKE_DIFFUSION = DiffusionStageConfig(
    network="MDiT3D-T", warmup_steps=2, steps=16, batch_size=2, ema_decay=0.9, sample_steps=4, save_every=4,
    lr=1e-3)

# cpu: where it departs from the paper, and why (README "CoPeDiT at the cpu preset"):
# - tokenizer 4x compression instead of 8 (8x8x8 at these widths caps reconstruction at ~19 dB: a capacity limit,
#   not a quantisation one) and continuous latents for brain (+1.8 dB over VQ at 4x4x4 in the same budget);
# - widths 16/32/32 with one residual unit, in-plane crops of 32x32, 3,200 stage-I steps: the stage-I sweep on the
#   validation subjects of phantom-brats-missing3 (benchmarks/curves/copedit-tokenizer-sweep.md) reconstructs them
#   at 22.8 dB with widths 8/16/16 and 800 steps, 26.5 dB at 3,200 steps, 25.6 dB with widths 16/32/32 at 1,600 and
#   27.7 dB at 3,200 (about 6 min on 2 idle cores); 48x48 crops cost twice the time per step;
# - MDiT3D-XS (0.3 M parameters: 64 wide, 4 blocks, patch 2; (1, 2, 2) on slice-wise cardiac latents), batch 2,
#   EMA 0.995, 25 DDIM steps: sized to fit the 15-min training budget on 2 cores. Stage II 1,200 steps: its
#   validation curve behind this tokenizer (benchmarks/curves/phantom-brats-missing3/copedit-cpu) gains +0.495 dB
#   at 2,400 steps, a plateau by the 0.5 dB rule; the stage-II sweep (benchmarks/curves/copedit-stage2-sweep.md)
#   found no cheaper gain: lr 1e-3 -0.08 dB, 128 wide +0.40 dB at 2.3x the time, 10-100 DDIM steps within 0.1 dB.
# Cardiac latents are slice-wise at every preset (the fix of a straddling defect, not a cpu shortcut).
_CPU_TOKENIZER = TokenizerConfig(
    channels=(16, 32, 32), compression=4, quantize=False, num_res_layers=1, num_res_channels=(16, 32, 32),
    codebook_size=256, prompt_dim=64, prompt_channels=(16, 32, 64), discriminator_channels=8, discriminator_layers=2,
    adversarial_start=2400, warmup_steps=20, steps=3200, batch_size=2, save_every=100, lr=1e-3, crop=(32, 32))
_CPU_DIFFUSION = DiffusionStageConfig(
    network="MDiT3D-XS", warmup_steps=50, steps=1200, batch_size=2, ema_decay=0.995, sample_steps=25,
    save_every=100, lr=5e-4)

PRESETS: dict[str, CoPeDiTConfig] = {
    "smoke": CoPeDiTConfig("smoke", ProblemConfig(_SMOKE_TOKENIZER, _SMOKE_DIFFUSION),
                           ProblemConfig(replace(_SMOKE_TOKENIZER, slice_wise=True), _SMOKE_DIFFUSION)),
    "cpu": CoPeDiTConfig("cpu", ProblemConfig(_CPU_TOKENIZER, _CPU_DIFFUSION),
                         ProblemConfig(replace(_CPU_TOKENIZER, slice_wise=True),
                                       replace(_CPU_DIFFUSION, network="MDiT3D-XS-slice"))),
    "paper": CoPeDiTConfig(
        "paper",
        brain=ProblemConfig(
            TokenizerConfig(channels=(256, 384, 512), batch_size=8, steps=400_000, adversarial_start=50_000),
            DiffusionStageConfig(network="MDiT3D-B", batch_size=32, sample_steps=200, bf16=True)),
        cardiac=ProblemConfig(
            TokenizerConfig(channels=(32, 64, 128), num_res_channels=128, slice_wise=True, batch_size=64,
                            steps=100_000, adversarial_start=10_000),
            DiffusionStageConfig(network="MDiT3D-C", batch_size=64, sample_steps=250, bf16=True)),
    ),
}
