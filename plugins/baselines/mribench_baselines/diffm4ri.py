"""DiffM4RI (Ye et al., 2026): a latent diffusion model with modality inpainting.

- A per-element autoencoder (:mod:`mribench_baselines.latent`; brain: per modality, cardiac: per slice).
- A diffusion prior, a MONAI ``DiffusionModelUNet`` over the latent element stack, trained *unconditionally* on the
  complete latents (no mask, no conditioning; the LDM preset's prediction — noise, or x0 at ``cpu`` — over every
  element).
- Synthesis by inpainting in the style of RePaint (Lugmayr et al., 2022): at every step of the reverse chain the
  observed latents, noised to the current level, are re-imposed, the prior takes one DDIM step, and this is repeated
  ``resample_jumps`` more times by diffusing the result back one step (forward noise), so the missing latents
  harmonise with the observed ones; the observed latents are written back at the end.

Our choices, where our notes of the paper give no detail: a KL autoencoder (the paper's is a VQ-VAE) shared in form
with ``ldm``; a convolutional U-Net prior (the paper's is a 3D DiT); jumps of one step (RePaint's jump length 1);
stochastic DDIM steps (``eta`` 1, DDPM-like, as RePaint needs noise in the reverse step) over ``sample_steps``
steps; the observed latents are re-imposed before each step at its noise level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mribench_baselines.latent import (LatentBatch, LatentConfig, LatentDiffusionMethod, UNetConfig, build_unet,
                                       merged, noised, split, where_elements)
from mribench_baselines.ldm import PRESETS as LDM_PRESETS


@dataclass(frozen=True, kw_only=True)
class DiffM4RIConfig(LatentConfig):
    unet: UNetConfig
    resample_jumps: int  # extra passes per reverse step (RePaint's r - 1); 0 = plain re-imposed inpainting
    eta: float = 1.0  # DDIM noise weight of the reverse steps


def _like_ldm(preset: str, **fields) -> DiffM4RIConfig:
    """The LDM preset's autoencoder, U-Net and schedule (equal capacity), with DiffM4RI's own fields (its steps
    default to the LDM's)."""
    ldm = LDM_PRESETS[preset]
    fields = {"steps": ldm.steps, **fields}
    return DiffM4RIConfig(preset=preset, autoencoder=ldm.autoencoder, unet=ldm.unet,
                          batch_volumes=ldm.batch_volumes, lr=ldm.lr, warmup_steps=ldm.warmup_steps,
                          timesteps=ldm.timesteps, prediction=ldm.prediction, ema_decay=ldm.ema_decay,
                          save_every=ldm.save_every, infer_chunk=ldm.infer_chunk,
                          budget_capped=ldm.budget_capped, **fields)


PRESETS = {
    "smoke": _like_ldm("smoke", sample_steps=5, resample_jumps=1),
    # cpu: the LDM cpu preset's x0 prediction and autoencoder, with 4,800 prior steps. Behind the 300-step autoencoder
    # DiffM4RI's curve on validation subjects of phantom-brats-missing1 scored 19.95 dB at LDM's 2,400 steps, 20.61 dB
    # at 4,800 and 20.88 dB at 9,600 (a plateau); behind today's 1,200-step one 19.82 dB at 4,800 and 20.47 dB at
    # 9,600 (+0.65 dB, not converged; the 9,600-step fit passes the 15-minute cap), so the preset stays at 4,800
    # steps and is budget-capped with the LDM's (benchmarks/curves/). 20 steps x 3 passes at synthesis.
    "cpu": _like_ldm("cpu", sample_steps=20, resample_jumps=2, steps=4800),
    # paper: RePaint's 10 resamplings per step over 250 steps would be 2,500 network passes per volume; 50 steps
    # with 4 extra passes is ours.
    "paper": _like_ldm("paper", sample_steps=50, resample_jumps=4),
}


class DiffM4RI(LatentDiffusionMethod):
    name = "diffm4ri"
    display_name = "DiffM4RI"
    version = "0.1.0"
    summary = ("latent diffusion with modality inpainting: per-element autoencoder, unconditional prior on complete "
               "latents, RePaint-style resampling with the observed latents re-imposed (DiffM4RI)")
    presets = PRESETS
    trained_network = "prior"

    def build_networks(self) -> dict[str, nn.Module]:
        width = self.n_elements * self.latent_width
        return {"prior": build_unet(self.config.unet, self.task.problem, width, width)}

    def loss(self, batch: LatentBatch) -> torch.Tensor:
        """Unconditional: every element of the complete latents is noised and denoised (the mask is not used)."""
        t, x_t, target = self.noised_latents(batch.latents)
        return (self.nets["prior"](merged(x_t), t) - merged(target)).pow(2).mean()

    def sample(self, latents: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        scheduler = self.sampling_scheduler()
        prior, n = self.network(), self.n_elements
        stride = self.config.timesteps // self.config.sample_steps
        x = torch.randn_like(latents)
        for t in scheduler.timesteps:
            t_batch = t.repeat(x.shape[0])
            for attempt in range(self.config.resample_jumps + 1):
                x = where_elements(visible, noised(scheduler, latents, t_batch)[0], x)  # observed, at level t
                prediction = split(prior(merged(x), t_batch), n)
                previous, _ = scheduler.step(prediction, int(t), x, eta=self.config.eta)
                if attempt == self.config.resample_jumps or int(t) - stride < 0:
                    x = previous
                    break
                x = self._renoise(scheduler, previous, int(t), int(t) - stride)  # back to level t
        return where_elements(visible, latents, x)

    @staticmethod
    def _renoise(scheduler, sample: torch.Tensor, t: int, t_previous: int) -> torch.Tensor:
        """One forward jump q(x_t | x_{t_previous}) of the diffusion."""
        alpha = scheduler.alphas_cumprod[t] / scheduler.alphas_cumprod[t_previous]
        return alpha.sqrt() * sample + (1 - alpha).sqrt() * torch.randn_like(sample)
