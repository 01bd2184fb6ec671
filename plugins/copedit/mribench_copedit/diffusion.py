"""Gaussian diffusion over CoPeVAE latents with noise on the missing latents only (CoPeDiT stage II).

Shapes. Latents ``x0`` are ``(B, E, c, d, h, w)`` (see ``mdit3d``). The latent availability is bool, True where a
latent is observed, and broadcastable to the latents after ``expand_availability``: ``(B, E)`` (brain: whole
modalities), ``(B, E, d)`` (cardiac: latent slices along the slice axis) or already 6-D.

Process. 500 timesteps, scaled-linear betas 0.0015 -> 0.0195 (``sqrt(beta)`` linear), taken from MONAI's
``DDPMScheduler`` (schedule ``scaled_linear_beta``), whose ``add_noise`` also forms ``x_t``. Missing latents are
noised, available ones stay clean; the model predicts x0 and is trained with MSE on all latents (joint objective)
or on the missing ones only (ablation).

Sampling is deterministic DDIM (eta = 0) written here rather than with MONAI's ``DDIMScheduler``: its ``step``
takes the previous timestep as ``t - T // steps``, which disagrees with its own ``set_timesteps`` grid whenever
``steps`` does not divide ``T`` (the paper's 200 of 500 steps), and the observed latents must be re-imposed on both
the x0 estimate and ``x_{t-1}`` at every step anyway. Given the same ``torch.Generator`` state, results repeat.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.schedulers import DDPMScheduler

from mribench.errors import MribenchError

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""model_fn(x_t ``(B, E, c, d, h, w)``, timesteps ``(B,)`` long) -> x0 prediction, same shape as x_t."""


class GaussianDiffusion:
    """Forward noising, x0-prediction loss and DDIM sampling with observed latents held clean."""

    def __init__(self, num_timesteps: int = 500, beta_start: float = 0.0015, beta_end: float = 0.0195):
        self.num_timesteps = num_timesteps
        self.scheduler = DDPMScheduler(num_train_timesteps=num_timesteps, schedule="scaled_linear_beta",
                                       beta_start=beta_start, beta_end=beta_end, prediction_type="sample",
                                       clip_sample=False)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.double()

    def q_sample(self, x0: torch.Tensor, latent_availability: torch.Tensor, timesteps: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
        """x_t: missing latents noised to step ``timesteps`` ``(B,)``, available latents kept equal to x0."""
        available = expand_availability(latent_availability, x0.shape)
        noisy = self.scheduler.add_noise(x0, noise, timesteps)
        return torch.where(available, x0, noisy)

    def training_loss(self, model_fn: ModelFn, x0: torch.Tensor, latent_availability: torch.Tensor,
                      generator: torch.Generator | None = None, missing_only: bool = False) -> torch.Tensor:
        """Scalar MSE between ``model_fn(x_t, t)`` and x0; t uniform in [0, T).

        By default over all latents: the paper's joint reconstruction and synthesis objective (its Eq. 5, after
        M2DN). ``missing_only`` restricts it to the missing latents (ablation); a batch without missing latents then
        gives a zero loss (still connected to the graph).
        """
        batch = x0.shape[0]
        timesteps = torch.randint(0, self.num_timesteps, (batch,), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, latent_availability, timesteps, noise)
        prediction = model_fn(x_t, timesteps)
        squared_error = (prediction - x0).square()
        if not missing_only:
            return squared_error.mean()
        missing = ~expand_availability(latent_availability, x0.shape)
        return (squared_error * missing).sum() / missing.expand_as(x0).sum().clamp_min(1)

    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        """``steps`` descending timesteps from T-1 to 0, evenly spaced and rounded."""
        if not 1 <= steps <= self.num_timesteps:
            raise MribenchError(f"DDIM steps={steps}; expected 1..{self.num_timesteps}")
        return torch.linspace(self.num_timesteps - 1, 0, steps).round().long()

    @torch.no_grad()
    def ddim_sample(self, model_fn: ModelFn, observed: torch.Tensor, latent_availability: torch.Tensor,
                    steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from noise on the missing latents; -> x0 ``(B, E, c, d, h, w)``.

        ``observed`` holds the available latents (any value, e.g. zero, where missing); they are re-imposed on x_t
        and on the x0 estimate at every step, so the result equals ``observed`` exactly where available.
        """
        available = expand_availability(latent_availability, observed.shape)
        noise = torch.randn(observed.shape, generator=generator, device=observed.device, dtype=observed.dtype)
        x_t = torch.where(available, observed, noise)
        timesteps = self.ddim_timesteps(steps)
        x0_estimate = observed
        for index, step in enumerate(timesteps.tolist()):
            batch_steps = torch.full((observed.shape[0],), step, dtype=torch.long, device=observed.device)
            x0_estimate = torch.where(available, observed, model_fn(x_t, batch_steps))
            if index + 1 == len(timesteps):
                break
            alpha = self.alphas_cumprod[step].item()
            alpha_prev = self.alphas_cumprod[timesteps[index + 1]].item()
            epsilon = (x_t - alpha ** 0.5 * x0_estimate) / (1 - alpha) ** 0.5
            x_t = torch.where(available, observed, alpha_prev ** 0.5 * x0_estimate + (1 - alpha_prev) ** 0.5 * epsilon)
        return x0_estimate


def expand_availability(latent_availability: torch.Tensor, latent_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Bool availability ``(B, E)`` | ``(B, E, d)`` | 6-D broadcastable -> 6-D bool broadcastable to the latents."""
    batch, elements, _, depth = latent_shape[:4]
    available = latent_availability.bool()
    if available.ndim == 2:
        available = available[:, :, None, None, None, None]
    elif available.ndim == 3:
        if available.shape[2] != depth:
            raise MribenchError(f"latent availability has {available.shape[2]} slices; the latents have {depth}")
        available = available[:, :, None, :, None, None]
    if available.ndim != 6 or available.shape[:2] != (batch, elements):
        raise MribenchError(f"latent availability of shape {tuple(latent_availability.shape)} does not fit "
                            f"latents of shape {tuple(latent_shape)}; expected (B, E), (B, E, d) or 6-D")
    return available
