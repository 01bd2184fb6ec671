"""What the latent-diffusion baselines (LDM, ControlNet, DiffM4RI) share: the per-element KL autoencoder, the latent
element stack, and a two-stage resumable fit (autoencoder, then the stage that learns the diffusion).

Elements are encoded on their own, so an observed element's latents never depend on a missing one:
- brain (B, C, D, H, W): each modality as a 1-channel 3D volume through a 3D MONAI ``AutoencoderKL``
  → latents (B, N=C, c, D/f, H/f, W/f);
- cardiac (B, 1, D, H, W): each slice as a 1-channel 2D image through a 2D ``AutoencoderKL`` (slice-wise, no
  through-plane compression, as CoPeDiT's cardiac tokenizer) → latents (B, N=D, c, H/f, W/f).
So both problems give a *latent element stack* (B, N, c, *S) whose element n is missing exactly when the image's
element n is. The diffusion networks see it with elements and latent channels merged: (B, N·c, *S), 3D for brain,
2D for cardiac. Here c = ``latent_channels`` and f = 2^(len(channels) - 1).

Our choices, where the papers' settings do not fit a CPU benchmark: the autoencoder trains on random patches
(it is fully convolutional, no attention) with an L1 + KL loss and no perceptual or adversarial term; the diffusion
stages read the posterior means of the frozen encoder, scaled to unit variance (Rombach et al.'s scale factor),
computed once per fit over the training set.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler
from torch import nn

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.method import Method, config_hash
from mribench.protocol import Batch, draw_training_availability, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import EMA, CSVLog, TrainState, progress_task, warmup_cosine
from mribench_baselines.element_method import optimizer_step
from mribench_baselines.elements import BRAIN
from mribench_baselines.training_data import TrainingData


PREDICTIONS = ("epsilon", "v_prediction", "sample")


# -- configs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoencoderConfig:
    """The per-element ``AutoencoderKL`` and its training (stage I)."""

    channels: tuple[int, ...]  # widths per level; compression f = 2^(levels - 1)
    latent_channels: int
    norm_groups: int
    steps: int
    batch_units: int  # element volumes (brain) or slices (cardiac) per step
    patch: int  # in-plane patch side (brain volumes also crop ``patch`` slices, at most their depth)
    lr: float
    kl_weight: float = 1e-6

    @property
    def compression(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class UNetConfig:
    """A MONAI ``DiffusionModelUNet`` (and, for ControlNet, its control branch) over the latent element stack."""

    channels: tuple[int, ...]
    norm_groups: int
    res_blocks: int = 1


@dataclass(frozen=True, kw_only=True)
class LatentConfig:
    """Fields of every latent-diffusion baseline. ``steps`` counts the stage the step hook follows."""

    preset: str
    autoencoder: AutoencoderConfig
    steps: int  # steps of the diffusion stage (LDM, DiffM4RI: the denoiser; ControlNet: the control branch)
    batch_volumes: int  # latent stacks (volumes) per diffusion step
    lr: float
    timesteps: int
    sample_steps: int  # DDIM steps at synthesis
    warmup_steps: int = 0
    ema_decay: float = 0.999
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    # what the network predicts: "epsilon" (the noise, the LDM paper's), "v_prediction" (Salimans & Ho's velocity,
    # robust with few training steps) or "sample" (x0)
    prediction: str = "epsilon"
    save_every: int = 200
    infer_chunk: int = 2  # volumes per synthesis pass
    budget_capped: bool = False

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")


# -- the autoencoder ------------------------------------------------------------------------------------------
def spatial_dims(problem: str) -> int:
    return 3 if problem == BRAIN else 2


def build_autoencoder(cfg: AutoencoderConfig, problem: str) -> AutoencoderKL:
    levels = len(cfg.channels)
    return AutoencoderKL(spatial_dims=spatial_dims(problem), in_channels=1, out_channels=1, num_res_blocks=1,
                         channels=cfg.channels, attention_levels=(False,) * levels,
                         latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_groups,
                         with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)


def check_shape(task: TaskSpec, cfg: AutoencoderConfig, method: str) -> None:
    """The compressed axes (brain: D, H, W; cardiac: H, W) must be divisible by the compression."""
    d, h, w = task.preprocess.shape
    compressed = (d, h, w) if task.problem == BRAIN else (h, w)
    if any(s % cfg.compression for s in compressed):
        raise MribenchError(f"{method}: preprocess shape {(d, h, w)} of task {task.name} must be divisible by "
                            f"{cfg.compression} on {'every axis' if task.problem == BRAIN else 'H and W'}")


def encode(autoencoder: AutoencoderKL, volumes: torch.Tensor, problem: str) -> torch.Tensor:
    """(B, C, D, H, W) in [0, 1] → posterior means, latent element stack (B, N, c, *S)."""
    b = volumes.shape[0]
    units = volumes.reshape(-1, 1, *volumes.shape[2:]) if problem == BRAIN else volumes.reshape(-1, 1,
                                                                                                *volumes.shape[3:])
    mu, _ = autoencoder.encode(units * 2 - 1)
    return mu.reshape(b, -1, *mu.shape[1:])


def decode(autoencoder: AutoencoderKL, latents: torch.Tensor, problem: str) -> torch.Tensor:
    """Latent element stack (B, N, c, *S) → volumes (B, C, D, H, W) in [0, 1] (unclamped)."""
    b, n = latents.shape[:2]
    units = (autoencoder.decode(latents.flatten(0, 1)) + 1) / 2  # (B·N, 1, *spatial)
    if problem == BRAIN:
        return units.reshape(b, n, *units.shape[2:])
    return units.reshape(b, 1, n, *units.shape[2:])


def element_availability(mask: torch.Tensor, problem: str) -> torch.Tensor:
    """Availability (B, C, D) → per latent element (B, N): brain modalities, cardiac slices."""
    return mask[:, :, 0] if problem == BRAIN else mask[:, 0]


def element_maps(visible: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The binary mask code (B, N) as constant maps (B, N, *S) shaped like the merged latents ``like``."""
    return visible.float().reshape(*visible.shape, *(1,) * (like.dim() - 2)).expand(*visible.shape, *like.shape[2:])


def merged(latents: torch.Tensor) -> torch.Tensor:
    """(B, N, c, *S) → (B, N·c, *S)."""
    return latents.flatten(1, 2)


def split(merged_latents: torch.Tensor, n_elements: int) -> torch.Tensor:
    """(B, N·c, *S) → (B, N, c, *S)."""
    return merged_latents.unflatten(1, (n_elements, -1))


def where_elements(keep: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per element (B, N) bool: ``a`` where True, ``b`` elsewhere, on latent element stacks (B, N, c, *S)."""
    return torch.where(keep.reshape(*keep.shape, *(1,) * (max(a.dim(), b.dim()) - 2)), a, b)


def build_unet(cfg: UNetConfig, problem: str, in_channels: int, out_channels: int) -> DiffusionModelUNet:
    return DiffusionModelUNet(spatial_dims=spatial_dims(problem), in_channels=in_channels, out_channels=out_channels,
                              num_res_blocks=cfg.res_blocks, channels=cfg.channels,
                              attention_levels=(False,) * len(cfg.channels), norm_num_groups=cfg.norm_groups)


def ddim(config: LatentConfig) -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=config.timesteps, schedule="scaled_linear_beta",
                         beta_start=config.beta_start, beta_end=config.beta_end, prediction_type=config.prediction,
                         clip_sample=False)


# -- training data ------------------------------------------------------------------------------------------
def autoencoder_units(data: TrainingData, rng: np.random.Generator, cfg: AutoencoderConfig) -> torch.Tensor:
    """A stage I batch: random patches of single elements, (U, 1, pd, p, p) brain or (U, 1, p, p) cardiac."""
    units = []
    for _ in range(cfg.batch_units):
        volume = data.volume(int(rng.integers(len(data))))  # (C, D, H, W)
        c, d, h, w = volume.shape
        p = min(cfg.patch, h, w)
        y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        if data.problem == BRAIN:
            pd = min(cfg.patch, d)
            z = int(rng.integers(d - pd + 1))
            units.append(volume[int(rng.integers(c)), z:z + pd, y:y + p, x:x + p][None])
        else:
            units.append(volume[0, int(rng.integers(d)), y:y + p, x:x + p][None])
    return torch.stack(units)


@dataclass
class LatentBatch:
    """A diffusion-stage batch: latents (B, N, c, *S) of complete volumes (scaled), the drawn availability (B, N)
    and the zero-filled volumes (B, C, D, H, W) for methods whose network reads the image (ControlNet)."""

    latents: torch.Tensor
    visible: torch.Tensor
    image: torch.Tensor


# -- the generic method -------------------------------------------------------------------------------------
class LatentDiffusionMethod(Method):
    """Stage I: the per-element autoencoder; stage II: the network a subclass trains over the frozen latents.

    Subclass hooks: ``build_networks() -> dict`` (the stage II networks, built from ``self.task``),
    ``trained_network`` (name of the network stage II optimises, EMA'd for synthesis), ``loss(batch) -> tensor`` and
    ``sample(latents, visible) -> latents`` (observed latents (B, N, c, *S), zero where missing, availability
    (B, N); returns the completed stack). ``reads_image`` subclasses get the zero-filled image in their batches.
    """

    family = "diffusion"
    calls_step_hook = True
    trained_network: ClassVar[str]
    reads_image: ClassVar[bool] = False  # whether ``loss`` reads ``LatentBatch.image`` (built only then)

    def __init__(self, config: LatentConfig, seed: int = 0):
        super().__init__(config, seed)
        self.task: TaskSpec | None = None
        self.autoencoder: AutoencoderKL | None = None
        self.scale = 1.0  # latent scale factor: 1 / std of the training latents
        self.nets: dict[str, nn.Module] = {}
        self.ema: EMA | None = None
        self._image: torch.Tensor | None = None  # the zero-filled batch during synthesis (ControlNet reads it)

    # -- hooks --------------------------------------------------------------------------------------------
    def build_networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def loss(self, batch: LatentBatch) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, latents: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, data: TrainingData, workdir: Path, progress) -> None:
        """Stage I (and anything else before stage II); default: train this method's own autoencoder."""
        self.autoencoder = fit_autoencoder(self.config.autoencoder, data, workdir, self.seed, self.name, progress)

    # -- the diffusion schedule of ``loss`` and ``sample`` -----------------------------------------------------
    def noised_latents(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: random timesteps (B,), the latents (B, N, c, *S) noised to them and the network's target there
        (the noise drawn, the velocity or the latents themselves, per the config's ``prediction``)."""
        t = random_timesteps(self.config, latents.shape[0])
        scheduler = ddim(self.config)
        x_t, noise = noised(scheduler, latents, t)
        if self.config.prediction == "epsilon":
            return t, x_t, noise
        if self.config.prediction == "v_prediction":
            return t, x_t, scheduler.get_velocity(latents, noise, t)
        return t, x_t, latents

    def sampling_scheduler(self) -> DDIMScheduler:
        """Synthesis: the DDIM scheduler set to the config's ``sample_steps``."""
        scheduler = ddim(self.config)
        scheduler.set_timesteps(self.config.sample_steps)
        return scheduler

    # -- description -----------------------------------------------------------------------------------------
    @property
    def n_elements(self) -> int:
        return self.task.n_elements

    @property
    def latent_width(self) -> int:
        return self.config.autoencoder.latent_channels

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        from mribench.tasks import get_task

        task = task or get_task("phantom-brats-missing1")
        method = cls(cls.preset_config(preset, task.problem))
        method.task = task
        facts: dict[str, Any] = {"elements": task.n_elements, "task": task.name,
                                 "backbone": f"{spatial_dims(task.problem)}D over the latent element stack"}
        facts.update({f"params_{name}": count_parameters(net) for name, net in method.all_networks().items()})
        return facts

    def all_networks(self) -> dict[str, nn.Module]:
        """Every network of the method for ``describe``: the autoencoder and the stage II networks."""
        return {"autoencoder": build_autoencoder(self.config.autoencoder, self.task.problem), **self.build_networks()}

    @classmethod
    def training_steps(cls, config: LatentConfig) -> int:
        return config.autoencoder.steps + config.steps

    def parameter_count(self) -> int:
        return count_parameters(self.autoencoder) + count_parameters(self.nets[self.trained_network])

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        workdir = Path(workdir)
        check_shape(task, self.config.autoencoder, self.name)
        self.task = task
        data = TrainingData(train, task)
        self.prepare(data, workdir, progress)
        latents = self._training_latents(data, progress)
        self.nets = self.build_networks()
        net = self.nets[self.trained_network]
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=self.config.lr)
        total = self.config.steps
        sched = warmup_cosine(opt, self.config.warmup_steps, total)
        self.ema = EMA(net, self.config.ema_decay)
        state = TrainState(workdir / "diffusion.pt", config_hash(self.config), net=net, opt=opt, sched=sched,
                           ema=self.ema)
        start = state.resume()
        training_seconds = float(state.extra.get("training_seconds", 0.0))
        log = CSVLog(workdir / "losses.csv")
        net.train()
        with progress_task(progress, f"{self.name}: diffusion", total, start) as advance:
            for step in range(start, total):
                started = time.perf_counter()
                rng = seeded_rng("latent-batch", self.name, self.seed, step)
                loss = self.loss(self._batch(data, latents, rng))
                optimizer_step(opt, loss)
                sched.step()
                self.ema.update(net)
                log.write(step=step + 1, mse=loss.item())
                advance(mse=loss.item())
                training_seconds += time.perf_counter() - started
                self.after_training_step(step + 1, training_seconds)
                state.extra["training_seconds"] = training_seconds
                state.maybe_save(step + 1, self.config.save_every, total)
        for module in self.nets.values():
            module.eval()

    def _training_latents(self, data: TrainingData, progress) -> torch.Tensor:
        """Scaled posterior means of every training volume (n, N, c, *S); sets ``self.scale``."""
        latents = []
        with torch.no_grad(), progress_task(progress, f"{self.name}: encoding the training set", len(data)) as adv:
            for index in range(len(data)):
                latents.append(encode(self.autoencoder, data.volume(index)[None], data.problem))
                adv()
        stacked = torch.cat(latents)
        self.scale = self.latent_scale(stacked)
        return stacked * self.scale

    def latent_scale(self, latents: torch.Tensor) -> float:
        """The factor that brings the training latents to unit variance (Rombach et al.'s scale factor)."""
        return float(1 / latents.std().clamp_min(1e-6))

    def _batch(self, data: TrainingData, latents: torch.Tensor, rng: np.random.Generator) -> LatentBatch:
        indices = [int(rng.integers(len(data))) for _ in range(self.config.batch_volumes)]
        masks = draw_training_availability(rng, data.task, len(indices))  # (B, C, D)
        volumes = torch.stack([data.volume(i) for i in indices]) if self.reads_image else None
        image = volumes * masks[:, :, :, None, None].float() if volumes is not None else None
        return LatentBatch(latents[indices], element_availability(masks, data.problem), image)

    @contextmanager
    def synthesis_ready(self) -> Iterator[None]:
        """Networks in eval mode, the EMA weights in use (as after fit); training mode restored on exit."""
        trained = self.nets[self.trained_network]
        trained.eval()
        try:
            yield
        finally:
            trained.train()

    def network(self) -> nn.Module:
        """The stage II network synthesis uses: the EMA copy while it exists (fit), the loaded one after load."""
        return self.ema.model if self.ema is not None else self.nets[self.trained_network]

    # -- synthesis ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def synthesize(self, batch: Batch) -> torch.Tensor:
        """(B, C, D, H, W) in [0, 1] with missing elements filled; observed elements are written back."""
        problem, chunk = self.task.problem, self.config.infer_chunk
        outputs = []
        for i in range(0, batch.image.shape[0], chunk):
            image, mask = batch.image[i:i + chunk].float(), batch.availability_mask[i:i + chunk].bool()
            visible = element_availability(mask, problem)
            observed = where_elements(visible, encode(self.autoencoder, image, problem) * self.scale,
                                      torch.zeros(()))
            self._image = image
            try:
                completed = self.sample(observed, visible)
            finally:
                self._image = None
            decoded = decode(self.autoencoder, completed / self.scale, problem).clamp(0, 1)
            outputs.append(torch.where(mask[..., None, None].expand_as(image), image, decoded))
        return torch.cat(outputs)

    # -- state ----------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"n_elements": self.task.n_elements, "scale": self.scale,
                "autoencoder": self.autoencoder.state_dict(),
                "nets": {name: (self.network() if name == self.trained_network else net).state_dict()
                         for name, net in self.nets.items()}}

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        if int(state["n_elements"]) != task.n_elements:
            raise MribenchError(f"task {task.name}: checkpoint has {state['n_elements']} elements, task has "
                                f"{task.n_elements}")
        self.task, self.scale = task, float(state["scale"])
        self.autoencoder = build_autoencoder(self.config.autoencoder, task.problem)
        self.autoencoder.load_state_dict(state["autoencoder"])
        self.autoencoder.eval().requires_grad_(False)
        self.nets = self.build_networks()
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
            net.eval()
        self.ema = None


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def fit_autoencoder(cfg: AutoencoderConfig, data: TrainingData, workdir: Path, seed: int, method: str,
                    progress) -> AutoencoderKL:
    """Stage I, resumable in ``workdir / "autoencoder.pt"``: L1 reconstruction + KL on random element patches.

    Returns the frozen autoencoder in eval mode.
    """
    autoencoder = build_autoencoder(cfg, data.problem)
    opt = torch.optim.AdamW(autoencoder.parameters(), lr=cfg.lr)
    state = TrainState(Path(workdir) / "autoencoder.pt", config_hash(cfg), autoencoder=autoencoder, opt=opt)
    start = state.resume()
    log = CSVLog(Path(workdir) / "autoencoder_losses.csv")
    autoencoder.train()
    with progress_task(progress, f"{method}: autoencoder", cfg.steps, start) as advance:
        for step in range(start, cfg.steps):
            units = autoencoder_units(data, seeded_rng("autoencoder-batch", method, seed, step), cfg) * 2 - 1
            reconstruction, mu, sigma = autoencoder(units)
            l1 = F.l1_loss(reconstruction, units)
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2).clamp_min(1e-12)) - 1).flatten(1).sum(1)
            optimizer_step(opt, l1 + cfg.kl_weight * kl.mean())
            log.write(step=step + 1, l1=l1.item(), kl=kl.mean().item())
            advance(l1=l1.item())
            state.maybe_save(step + 1, max(1, cfg.steps // 4), cfg.steps)
    return autoencoder.eval().requires_grad_(False)


def noised(scheduler: DDIMScheduler, latents: torch.Tensor, timesteps: torch.Tensor) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Forward diffusion of a latent element stack: (x_t, the noise)."""
    noise = torch.randn_like(latents)
    return scheduler.add_noise(latents, noise, timesteps), noise


def random_timesteps(config: LatentConfig, n: int) -> torch.Tensor:
    return torch.randint(0, config.timesteps, (n,))


def missing_mse(prediction: torch.Tensor, target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """MSE over the missing elements of latent element stacks (B, N, c, *S)."""
    missing = ~visible.reshape(*visible.shape, *(1,) * (target.dim() - 2)).expand_as(target)
    return (prediction - target).pow(2)[missing].mean()
