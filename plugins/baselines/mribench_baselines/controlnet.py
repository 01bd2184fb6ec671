"""ControlNet (Zhang et al., 2023) on top of the frozen ``ldm``.

The ``ldm`` of the same dataset, preset and seed is reused (its published model in the runner's shared folder, see
:func:`mribench_baselines.ldm.shared_model_path`; trained first when absent) and frozen: its autoencoder, its latent
scale and its denoiser. Only the control branch trains: MONAI's ``ControlNet``, a trainable copy of the denoiser's
encoder and middle block (initialised from the frozen weights, zero-initialised output convolutions, so training
starts from the LDM itself) whose control input is the zero-filled image of the available elements (brain: the C
modalities as 3D channels; cardiac: the D slices as 2D channels), brought to the latent resolution by MONAI's
conditioning embedding. Its residuals are added to the frozen denoiser's skip connections and middle block. The
denoiser input, the loss (noise of the missing latents) and DDIM sampling are the LDM's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import ControlNet as MonaiControlNet
from torch import nn

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.tasks import TaskSpec
from mribench_baselines.elements import BRAIN
from mribench_baselines.latent import (LatentBatch, LatentConfig, LatentDiffusionMethod, build_unet,
                                       count_parameters, spatial_dims)
from mribench_baselines.training_data import TrainingData
from mribench_baselines.ldm import LDM, LDMConfig, PRESETS as LDM_PRESETS, shared_model_path


@dataclass(frozen=True, kw_only=True)
class ControlNetConfig(LatentConfig):
    """``ldm``: the LDM preset the control branch sits on; ``autoencoder`` and the noise schedule must be its own.
    ``steps``, ``lr``, ``ema_decay`` … are the control branch's; ``embedding`` the conditioning embedding widths
    (one stride-2 level per factor 2 of the autoencoder's compression)."""

    ldm: LDMConfig
    embedding: tuple[int, ...]

    def __post_init__(self) -> None:
        ldm = self.ldm
        super().__post_init__()
        if (self.autoencoder, self.timesteps, self.beta_start, self.beta_end, self.prediction) != (
                ldm.autoencoder, ldm.timesteps, ldm.beta_start, ldm.beta_end, ldm.prediction):
            raise ValueError("controlnet: the autoencoder, the noise schedule and the prediction must be the LDM's")
        if 2 ** (len(self.embedding) - 1) != ldm.autoencoder.compression:
            raise ValueError(f"controlnet: {len(self.embedding)} embedding levels do not reach the latent resolution "
                             f"(compression {ldm.autoencoder.compression})")


def on_ldm(ldm: LDMConfig, **fields: Any) -> ControlNetConfig:
    """A ControlNet preset over the LDM preset ``ldm`` (its autoencoder, schedule and DDIM steps)."""
    return ControlNetConfig(preset=ldm.preset, ldm=ldm, autoencoder=ldm.autoencoder, timesteps=ldm.timesteps,
                            beta_start=ldm.beta_start, beta_end=ldm.beta_end, prediction=ldm.prediction,
                            sample_steps=ldm.sample_steps,
                            infer_chunk=ldm.infer_chunk, budget_capped=ldm.budget_capped, **fields)


PRESETS = {
    "smoke": on_ldm(LDM_PRESETS["smoke"], embedding=(8, 16), steps=40, batch_volumes=4, lr=2e-3, ema_decay=0.5,
                    save_every=20),
    # cpu: the control branch's steps on the cpu LDM (sized by counted FLOPs, not yet by a validation curve).
    "cpu": on_ldm(LDM_PRESETS["cpu"], embedding=(8, 16, 16), steps=300, batch_volumes=2, lr=5e-4, warmup_steps=20,
                  ema_decay=0.99, save_every=100),
    # paper: ControlNet's conditioning embedding (16, 32, 96, 256) cut to f = 4's three levels; lr 1e-5 as the
    # ControlNet paper; the step count is ours.
    "paper": on_ldm(LDM_PRESETS["paper"], embedding=(16, 32, 96), steps=50_000, batch_volumes=8, lr=1e-5,
                    warmup_steps=1000, ema_decay=0.9999, save_every=2000),
}


def control_image(image: torch.Tensor, problem: str) -> torch.Tensor:
    """Zero-filled (B, C, D, H, W) → the control input: brain as is (C channels, 3D), cardiac (B, D, H, W)."""
    return image if problem == BRAIN else image[:, 0]


class ControlNet(LDM):
    name = "controlnet"
    display_name = "ControlNet"
    version = "0.1.0"
    summary = ("ControlNet: a trainable control branch (MONAI ControlNet) reading the zero-filled image, on the "
               "frozen ldm of the same dataset, preset and seed")
    presets = PRESETS
    reads_image = True
    reuses_models_of = ("ldm",)
    trained_network = "control"

    def __init__(self, config: ControlNetConfig, seed: int = 0):
        super().__init__(config, seed)
        self._frozen_denoiser: dict[str, torch.Tensor] | None = None
        self._control_input: torch.Tensor | None = None
        self._ldm_scale = 1.0

    @classmethod
    def training_steps(cls, config: ControlNetConfig) -> int:
        """The control branch's steps plus the LDM's it rests on (trained in this fit when not published yet)."""
        return config.steps + LDM.training_steps(config.ldm)

    def parameter_count(self) -> int:
        """The control branch only: the autoencoder and the denoiser are the frozen LDM's."""
        return count_parameters(self.nets["control"])

    # -- networks -------------------------------------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        n, c, problem = self.n_elements, self.latent_width, self.task.problem
        unet = self.config.ldm.unet
        denoiser = build_unet(unet, problem, 2 * n * c + n, n * c)  # the LDM's denoiser, frozen
        if self._frozen_denoiser is not None:
            denoiser.load_state_dict(self._frozen_denoiser)
        denoiser.eval().requires_grad_(False)
        control = MonaiControlNet(spatial_dims=spatial_dims(problem), in_channels=2 * n * c + n,
                                  num_res_blocks=unet.res_blocks, channels=unet.channels,
                                  attention_levels=(False,) * len(unet.channels), norm_num_groups=unet.norm_groups,
                                  conditioning_embedding_in_channels=self.task.channels if problem == BRAIN else
                                  self.task.preprocess.shape[0],
                                  conditioning_embedding_num_channels=self.config.embedding)
        control.load_state_dict(denoiser.state_dict(), strict=False)  # the trainable copy starts as the LDM
        return {"denoiser": denoiser, "control": control}

    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        """The latent-diffusion fit; unlike the LDM's, it publishes nothing in the shared folder."""
        LatentDiffusionMethod.fit(self, train, task, workdir, progress)

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        return {**super().describe(preset, task), "trained": "the control branch only (autoencoder and denoiser "
                                                             "are the frozen ldm's)"}

    def prepare(self, data: TrainingData, workdir: Path, progress) -> None:
        """Load the published ``ldm`` (same dataset, preset, seed), or train it first; freeze it."""
        path = shared_model_path(self.shared_dir, self.config.ldm, self.seed) if self.shared_dir else None
        if path is not None and path.exists():
            ldm = LDM.load(path, self.config.ldm, self.seed, data.task)
        else:
            ldm = LDM(self.config.ldm, seed=self.seed)
            ldm.shared_dir = self.shared_dir
            ldm.fit(data.train, data.task, Path(workdir) / "ldm", progress)
        if ldm.scale <= 0 or math.isnan(ldm.scale):
            raise MribenchError(f"controlnet: the ldm at {path or workdir} has no usable latent scale")
        self.autoencoder = ldm.autoencoder.eval().requires_grad_(False)
        self._frozen_denoiser = ldm.network().state_dict()
        self._ldm_scale = ldm.scale

    def latent_scale(self, latents: torch.Tensor) -> float:
        """The frozen LDM's own scale: its denoiser was trained on latents scaled by it."""
        return self._ldm_scale

    # -- the LDM with control residuals -------------------------------------------------------------------------
    def predict(self, net: nn.Module, inputs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        down, mid = net(inputs, t, controlnet_cond=self._control_input)
        prediction = self.nets["denoiser"](inputs, t, down_block_additional_residuals=down,
                                           mid_block_additional_residual=mid)
        return prediction.unflatten(1, (self.n_elements, -1))

    def loss(self, batch: LatentBatch) -> torch.Tensor:
        self._control_input = control_image(batch.image, self.task.problem)
        return super().loss(batch)

    def sample(self, latents: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        self._control_input = control_image(self._image, self.task.problem)
        return super().sample(latents, visible)
