"""CoPeDiT's two-stage trainer: stage I (CoPeVAE) then stage II (MDiT3D on cached latents).

Both stages resume mid-stage from an atomic checkpoint (mribench.training.TrainState), log every step to a CSV file
and show rich progress with losses and pretext accuracies. Under torchrun they train with DistributedDataParallel
(gloo on CPU, NCCL on GPU); only rank 0 writes files. Every step draws its batch, missing patterns (dual random
sampling via mribench.protocol.sample_training_mask), flips and diffusion noise from generators seeded by
(seed, rank, step), so an interrupted run continues exactly as an uninterrupted one.

Stage II never re-runs the tokenizer's autoencoder per step: each subject is encoded once per in-plane flip variant
(the encoder is not flip-equivariant, so flipping cached latents would put the targets off the tokenizer's manifold)
and the latents are cached in the workdir. Observed latents are the same tensors in training and at synthesis: every
element (brain modality, cardiac slice) is encoded on its own, so ``encode(zero-filled)`` equals ``encode(complete)``
wherever an element is observed. The prompt encoders — light 3D convs — run per step on the cached latents of the
sampled pattern's available elements (zero elsewhere), exactly as at synthesis.
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss

from mribench.atomic import file_lock, wait_notice
from mribench.data.base import SubjectSet
from mribench.errors import BadDataError
from mribench.method import config_hash
from mribench.metrics.ssim import ssim
from mribench.protocol import derive_seed, draw_missing, sample_training_mask, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import (
    EMA,
    CSVLog,
    TrainState,
    atomic_torch_save,
    barrier,
    dist_info,
    load_checkpoint,
    progress_task,
    seed_everything,
    unwrap,
    warmup_cosine,
    wrap_ddp,
)
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.mdit3d import MDiT3DConfig, build_diffuser
from mribench_copedit.presets import PROMPT_NAMES, DiffusionStageConfig, TokenizerConfig
from mribench_copedit.prompts import PretextTargets, mask_latents, observed_from_zero_filled
from mribench_copedit.tokenizer import CoPeVAE, build_discriminator, build_perceptual, latent_shape, perceptual_weights

MEMORY_BUDGET_BYTES = 2 * 1024**3
FLIP_VARIANTS = ((False, False), (True, False), (False, True), (True, True))  # (flip H, flip W); index 0 = none


class TrainImages:
    """Training volumes (C, D, H, W): held in memory when they fit ``MEMORY_BUDGET_BYTES``, else loaded per batch."""

    def __init__(self, train: SubjectSet, task: TaskSpec):
        self.train, self.task = train, task
        self.shape = (task.channels, *task.preprocess.shape)
        if len(train) == 0:
            raise BadDataError(f"task {task.name}: no training subjects")
        volume_bytes = 4 * math.prod(self.shape)
        self.memory = ([self._load(i) for i in range(len(train))]
                       if volume_bytes * len(train) <= MEMORY_BUDGET_BYTES else None)

    def __len__(self) -> int:
        return len(self.train)

    def _load(self, index: int) -> torch.Tensor:
        subject = self.train[index]
        if tuple(subject.image.shape) != self.shape:
            raise BadDataError(f"subject {subject.subject_id}: image shape {tuple(subject.image.shape)}, task "
                               f"{self.task.name} needs {self.shape}")
        return torch.from_numpy(np.array(subject.image, dtype=np.float32))

    def batch(self, indices) -> torch.Tensor:
        """(B, C, D, H, W) float32 for the given subject indices."""
        return torch.stack([self.memory[i] if self.memory is not None else self._load(i) for i in indices])


def flip_in_plane(tensor: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
    """Flip each sample's last two axes where ``flips`` (B, 2) bool says so (volumes and latents alike)."""
    out = tensor.clone()
    for index, (flip_h, flip_w) in enumerate(flips):
        dims = [d for d, flip in ((-2, flip_h), (-1, flip_w)) if flip]
        if dims:
            out[index] = tensor[index].flip(dims)
    return out


def random_crop(rng: np.random.Generator, plane: tuple[int, int], size: tuple[int, int] | None
                ) -> tuple[int, int, int, int] | None:
    """A random in-plane window (h0, w0, height, width) of ``size`` (clipped to the plane), or None."""
    if size is None:
        return None
    height, width = min(size[0], plane[0]), min(size[1], plane[1])
    return (int(rng.integers(0, plane[0] - height + 1)), int(rng.integers(0, plane[1] - width + 1)), height, width)


def zero_fill(complete: torch.Tensor, availability_mask: torch.Tensor) -> torch.Tensor:
    return complete * availability_mask[..., None, None].to(complete.dtype)


# -- stage I -----------------------------------------------------------------------------------------------------
def tokenizer_hash(cfg: TokenizerConfig, task: TaskSpec, perceptual: dict[str, str] | None) -> str:
    """Identity of a trained tokenizer: its config, the data/protocol it saw and the perceptual weights."""
    return config_hash({"tokenizer": dataclasses.asdict(cfg), "task_model_key": task.model_key,
                        "perceptual": perceptual["sha256"] if perceptual else "off"})


def build_tokenizer(cfg: TokenizerConfig, task: TaskSpec) -> CoPeVAE:
    return CoPeVAE(cfg, task.problem, task.channels, task.preprocess.shape, task.n_elements)


def train_tokenizer(cfg: TokenizerConfig, task: TaskSpec, images: TrainImages, folder: Path, seed: int,
                    progress=None) -> tuple[CoPeVAE, dict[str, Any]]:
    """Stage I in ``folder`` (resumable). Returns the frozen tokenizer (eval mode) and its identity facts
    (``tokenizer_hash``, ``perceptual``); its quality is measured on validation subjects by ``tokenizer_report``.

    Reuses ``folder/tokenizer.pt`` when it exists (refusing one written with another configuration). The folder is
    shared by every method of the dataset, preset and seed (CoPeDiT, its ablation variants, the +Prompts baselines):
    ``tokenizer_lock`` makes a second concurrent run wait for the first to finish stage I, then read its tokenizer.
    """
    folder = Path(folder)
    with tokenizer_lock(folder, wait_notice(getattr(progress, "console", None))):
        return _train_or_load_tokenizer(cfg, task, images, folder, seed, progress)


@contextmanager
def tokenizer_lock(folder: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive file lock beside ``folder`` (``.<name>.lock``), held by the main rank only: torchrun's other ranks
    wait at the barrier, so every rank decides train-or-load only once rank 0 holds the lock."""
    lock = folder.with_name(f".{folder.name}.lock")
    with file_lock(lock, on_wait) if dist_info().is_main else nullcontext():
        barrier()
        yield


def _train_or_load_tokenizer(cfg: TokenizerConfig, task: TaskSpec, images: TrainImages, folder: Path, seed: int,
                             progress) -> tuple[CoPeVAE, dict[str, Any]]:
    perceptual_info = perceptual_weights()
    identity = tokenizer_hash(cfg, task, perceptual_info)
    final = folder / "tokenizer.pt"
    seed_everything(seed)
    model = build_tokenizer(cfg, task)
    if final.exists():
        payload = load_checkpoint(final, expect={"config_hash": identity})
        model.load_state_dict(payload["state"])
        return freeze(model), payload["facts"]

    info = dist_info()
    discriminator = build_discriminator(cfg)
    perceptual = build_perceptual(perceptual_info, cfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, betas=cfg.betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=cfg.betas)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, cfg.steps)
    scheduler_d = warmup_cosine(optimizer_d, cfg.warmup_steps, max(1, cfg.steps - cfg.adversarial_start))
    state = TrainState(folder / "stage1.pt", identity, model=model, discriminator=discriminator,
                       optimizer=optimizer, optimizer_d=optimizer_d, scheduler=scheduler, scheduler_d=scheduler_d)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    start = state.resume()
    ddp_model, ddp_discriminator = wrap_ddp(model), wrap_ddp(discriminator)
    adversarial = PatchAdversarialLoss(criterion="least_squares")
    log = CSVLog(folder / "stage1.csv")
    model.train()
    with progress_task(progress, "CoPeVAE (stage I)", cfg.steps, start) as advance:
        for step in range(start, cfg.steps):
            rng = seeded_rng("copedit-stage1", seed, info.rank, step)
            indices = rng.integers(0, len(images), cfg.batch_size)
            complete = images.batch(indices)
            if cfg.flip_augment:
                complete = flip_in_plane(complete, rng.random((cfg.batch_size, 2)) < 0.5)
            mask = sample_training_mask(rng, task, cfg.batch_size)
            crop = random_crop(rng, complete.shape[-2:], cfg.crop)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                out = ddp_model(complete, mask, crop)
            reconstruction = out["reconstruction"].float()
            if crop is not None:
                complete = complete[..., crop[0]:crop[0] + crop[2], crop[1]:crop[1] + crop[3]]
            l1 = (reconstruction - complete).abs().mean()
            pretext = (cfg.weight_count * out["pretext"]["count"] + cfg.weight_position * out["pretext"]["position"]
                       + cfg.weight_contrastive * out["pretext"]["contrastive"])
            loss = cfg.weight_l1 * l1 + cfg.weight_vq * out["vq"] + cfg.weight_pretext * pretext
            extras: dict[str, Any] = {"perceptual": "", "adv_g": "", "adv_d": ""}  # CSV cells of terms not yet on
            if perceptual is not None:
                perceptual_loss = perceptual(model.as_units(reconstruction), model.as_units(complete))
                loss = loss + cfg.weight_perceptual * perceptual_loss
                extras["perceptual"] = float(perceptual_loss.detach())
            adversarial_on = step >= cfg.adversarial_start
            if adversarial_on:
                discriminator.requires_grad_(False)  # generator term: gradients reach the decoder only
                generator_adv = adversarial(discriminator(model.as_units(reconstruction))[-1], target_is_real=True,
                                            for_discriminator=False)
                discriminator.requires_grad_(True)
                loss = loss + cfg.weight_adversarial * generator_adv
                extras["adv_g"] = float(generator_adv.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            finite = bool(torch.isfinite(grad_norm))
            if finite:  # as a mixed-precision loss scaler does: a non-finite gradient skips the update
                optimizer.step()
            scheduler.step()
            revived = (model.revive_dead_codes(
                out["encodings"], torch.Generator().manual_seed(derive_seed("copedit-codes", seed, step)))
                if cfg.quantize else 0)
            if adversarial_on:
                real, fake = model.as_units(complete), model.as_units(reconstruction.detach())
                logits = ddp_discriminator(torch.cat([real, fake]))[-1]  # one forward: DDP needs one per backward
                loss_d = 0.5 * (adversarial(logits[:len(real)], target_is_real=True, for_discriminator=True)
                                + adversarial(logits[len(real):], target_is_real=False, for_discriminator=True))
                optimizer_d.zero_grad(set_to_none=True)
                loss_d.backward()
                torch.nn.utils.clip_grad_norm_(discriminator.parameters(), cfg.grad_clip)
                optimizer_d.step()
                scheduler_d.step()
                extras["adv_d"] = float(loss_d.detach())
            row = {"step": step + 1, "loss": float(loss.detach()), "l1": float(l1.detach()),
                   "vq": float(out["vq"].detach()), **{k: float(v.detach()) for k, v in out["pretext"].items()},
                   **out["accuracies"], **extras, "grad_norm": float(grad_norm), "skipped_update": int(not finite),
                   "revived_codes": revived, "lr": scheduler.get_last_lr()[0]}
            log.write(**row)
            state.maybe_save(step + 1, cfg.save_every, cfg.steps)
            advance(loss=row["loss"], l1=row["l1"], count_acc=row["count_acc"], pos_acc=row["position_acc"],
                    assess_acc=row["assessment_acc"])
    freeze(model)
    facts = {"tokenizer_hash": identity,
             "perceptual": perceptual_info or "off (no $MRIBENCH_WEIGHTS/resnet50-imagenet.pth)"}
    if info.is_main:
        atomic_torch_save({"config_hash": identity, "state": model.state_dict(), "facts": facts}, final)
    barrier()
    return model, facts


def freeze(model: CoPeVAE) -> CoPeVAE:
    return model.eval().requires_grad_(False)


@torch.no_grad()
def tokenizer_report(model: CoPeVAE, task: TaskSpec, images: TrainImages, seed: int, split: str = "validation",
                     chunk: int = 4) -> dict[str, Any]:
    """Reconstruction PSNR (dB) / SSIM (data range 1; 3D per modality, 2D per cardiac slice, as the evaluators) and
    pretext accuracies on up to ``report_subjects`` held-out subjects of ``split``, with fixed training-range patterns.
    """
    n = min(model.cfg.report_subjects, len(images))
    rng = seeded_rng("copedit-report", seed)
    lo, hi = task.train_missing
    psnrs, ssims, accuracies = [], [], []
    for first in range(0, n, chunk):
        indices = list(range(first, min(first + chunk, n)))
        complete = images.batch(indices)
        mask = torch.from_numpy(np.stack([
            draw_missing(rng, task.problem, task.channels, task.preprocess.shape[0], int(rng.integers(lo, hi + 1)))
            for _ in indices]))
        reconstruction = model.decode(model.encode(complete)).clamp(0, 1)
        mse = (reconstruction - complete).square().flatten(2).mean(2).clamp_min(1e-10)  # (B, C)
        psnrs.append((-10 * torch.log10(mse)).flatten())
        if task.problem == "missing-modality":
            units = (reconstruction.flatten(0, 1)[:, None], complete.flatten(0, 1)[:, None], 3)
        else:
            units = (reconstruction.flatten(0, 2)[:, None], complete.flatten(0, 2)[:, None], 2)
        ssims.append(ssim(units[0], units[1], spatial_dims=units[2]).flatten())
        targets = PretextTargets.from_mask(mask, task.problem, model.cfg.depth_compression)
        prompts = model.prompts(zero_fill(complete, mask))
        accuracies.append(model.heads.losses(prompts, model.encode_continuous(complete), targets)[1] | {
            "n": len(indices)})
    weights = torch.tensor([a.pop("n") for a in accuracies], dtype=torch.float64)
    mean_accuracy = {key: float(sum(w * a[key] for w, a in zip(weights, accuracies)) / weights.sum())
                     for key in accuracies[0]}
    return {"reconstruction_psnr": float(torch.cat(psnrs).mean()), "reconstruction_ssim": float(torch.cat(ssims).mean()),
            **mean_accuracy, "report_subjects": n, "report_split": split}


# -- stage II ----------------------------------------------------------------------------------------------------
def diffuser_config(cfg: DiffusionStageConfig, tokenizer_cfg: TokenizerConfig, task: TaskSpec) -> MDiT3DConfig:
    return MDiT3DConfig(size=cfg.network, layout="modal" if task.problem == "missing-modality" else "planar",
                        inject=cfg.inject, condition=cfg.condition, diffuser=cfg.diffuser,
                        prompt_tokens=len(PROMPT_NAMES), prompt_dim=tokenizer_cfg.prompt_dim)


def build_network(cfg: DiffusionStageConfig, tokenizer_cfg: TokenizerConfig, task: TaskSpec) -> torch.nn.Module:
    """The stage II diffuser; a mask code has one entry per modality (brain) or per slice (cardiac)."""
    code_length = task.channels if task.problem == "missing-modality" else task.preprocess.shape[0]
    shape = latent_shape(tokenizer_cfg, task.channels, task.preprocess.shape)
    return build_diffuser(diffuser_config(cfg, tokenizer_cfg, task), shape, code_length)


def conditioning(tokenizer: CoPeVAE, available_latents: torch.Tensor, element_availability: torch.Tensor,
                 cfg: DiffusionStageConfig, problem: str) -> dict[str, torch.Tensor]:
    """Keyword inputs of the diffuser: prompts from the available latents (unused ones zeroed), a binary mask code
    (ablation) or nothing (prompts off). At synthesis both inputs come from the zero-filled image alone."""
    if cfg.condition == "prompts":
        prompts = tokenizer.prompts_from_latents(available_latents)
        keep = torch.tensor([name in cfg.prompts_used for name in PROMPT_NAMES], dtype=prompts.dtype)
        return {"prompts": prompts * keep[None, :, None]}
    if cfg.condition == "mask":
        code = element_availability[:, :, 0] if problem == "missing-modality" else element_availability[:, 0, :]
        return {"mask_code": code.float()}
    return {}


@torch.no_grad()
def encode_subjects(tokenizer: CoPeVAE, images: TrainImages, variants: int, progress=None) -> torch.Tensor:
    """Latents of every training subject, once per flip variant: (N, V, E, c, d, h, w), variant 0 unflipped."""
    latents = []
    with progress_task(progress, "encode latents", len(images)) as advance:
        for index in range(len(images)):
            image = images.batch([index])
            latents.append(torch.cat([tokenizer.encode(flip_in_plane(image, np.array([flips])))
                                      for flips in FLIP_VARIANTS[:variants]]))
            advance()
    return torch.stack(latents)


def cached_latents(tokenizer: CoPeVAE, images: TrainImages, variants: int, path: Path, identity: str,
                   progress=None) -> torch.Tensor:
    """Latents from ``path`` when written by this tokenizer, else encoded by rank 0, saved, and read by all."""
    path = Path(path)
    identity = config_hash({"tokenizer": identity, "variants": variants})
    if not path.exists():
        if dist_info().is_main:
            atomic_torch_save({"config_hash": identity,
                               "latents": encode_subjects(tokenizer, images, variants, progress)}, path)
        barrier()
    return load_checkpoint(path, expect={"config_hash": identity})["latents"]


def train_diffusion(cfg: DiffusionStageConfig, tokenizer: CoPeVAE, tokenizer_identity: str, task: TaskSpec,
                    images: TrainImages, workdir: Path, seed: int, progress=None, after_step=None
                    ) -> tuple[torch.nn.Module, float]:
    """Stage II in ``workdir`` (resumable). Returns (EMA diffuser in eval mode, latent scale).

    ``after_step(step, training_seconds, ema_network, latent_scale)``, when given, is called after every step (before
    the checkpoint) with the EMA diffuser in eval mode and stage II's wall time so far (carried across resumes,
    the hook's own time excluded); the method's step hook (``mribench curve``) fires there.
    """
    workdir = Path(workdir)
    info = dist_info()
    variants = len(FLIP_VARIANTS) if cfg.flip_augment else 1
    latents = cached_latents(tokenizer, images, variants, workdir / "latents.pt", tokenizer_identity, progress)
    latent_scale = float(latents[:, 0].std().clamp_min(1e-6))
    seed_everything(derive_seed("copedit-stage2", seed))
    network = build_network(cfg, tokenizer.cfg, task)
    ema = EMA(network, cfg.ema_decay)
    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = warmup_cosine(optimizer, cfg.warmup_steps, cfg.steps)
    identity = config_hash({"diffusion": dataclasses.asdict(cfg), "tokenizer": tokenizer_identity})
    state = TrainState(workdir / "stage2.pt", identity, network=network, ema=ema, optimizer=optimizer,
                       scheduler=scheduler)
    start = state.resume()
    training_seconds = float(state.extra.get("training_seconds", 0.0))
    ddp_network = wrap_ddp(network)
    diffusion = GaussianDiffusion()
    log = CSVLog(workdir / "stage2.csv")
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    network.train()
    with progress_task(progress, "MDiT3D (stage II)", cfg.steps, start) as advance:
        for step in range(start, cfg.steps):
            started = time.perf_counter()
            rng = seeded_rng("copedit-stage2", seed, info.rank, step)
            generator = torch.Generator().manual_seed(derive_seed("copedit-stage2-noise", seed, info.rank, step))
            indices = rng.integers(0, len(images), cfg.batch_size)
            raw = latents[indices, rng.integers(0, variants, cfg.batch_size)]
            mask = sample_training_mask(rng, task, cfg.batch_size)
            available = tokenizer.latent_availability(mask)
            with torch.no_grad():
                inputs = conditioning(tokenizer, mask_latents(raw, available), mask, cfg, task.problem)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = diffusion.training_loss(partial(ddp_network, **inputs), raw / latent_scale, available,
                                               generator, missing_only=not cfg.joint_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update(network)
            log.write(step=step + 1, loss=float(loss.detach()), grad_norm=float(grad_norm),
                      lr=scheduler.get_last_lr()[0])
            advance(loss=float(loss.detach()), grad_norm=float(grad_norm))
            training_seconds += time.perf_counter() - started
            if after_step is not None:
                after_step(step + 1, training_seconds, unwrap(ema.model).eval(), latent_scale)
            state.extra["training_seconds"] = training_seconds
            state.maybe_save(step + 1, cfg.save_every, cfg.steps)
    return unwrap(ema.model).eval(), latent_scale


@torch.no_grad()
def sample(network: torch.nn.Module, tokenizer: CoPeVAE, latent_scale: float, cfg: DiffusionStageConfig,
           zero_filled: torch.Tensor, problem: str, generator: torch.Generator, prompts: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Complete volumes (B, C, D, H, W) in [0, 1] from zero-filled ones, without any availability mask.

    The observed elements are recognised in the input itself (all-zero modality channels / slices, see
    ``observed_from_zero_filled``); their latents (the same tensors stage II trained on) are held fixed during DDIM,
    the prompts read them, and their voxels are returned as given. ``prompts`` (B, 3, P), when given, replace the ones
    read from the input (the prompt analyses: corruption, interventions).
    """
    observed = observed_from_zero_filled(zero_filled, problem)
    available_latents, availability = tokenizer.available_latents(zero_filled)
    inputs = (conditioning(tokenizer, available_latents, observed, cfg, problem) if prompts is None
              else {"prompts": prompts})
    x0 = GaussianDiffusion().ddim_sample(partial(network, **inputs), available_latents / latent_scale, availability,
                                         cfg.sample_steps, generator)
    volumes = tokenizer.decode(x0 * latent_scale).clamp(0, 1)
    return torch.where(observed[..., None, None], zero_filled, volumes)
