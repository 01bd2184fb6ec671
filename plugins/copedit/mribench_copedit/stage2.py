"""CoPeDiT's stage II: the diffuser (MDiT3D) trained on cached latents of the frozen stage-I tokenizer.

Resumes mid-stage from an atomic checkpoint, logs every step to a CSV file and trains under torchrun with
DistributedDataParallel as stage I does; every step draws its batch, availability (dual random sampling via
mribench.protocol.draw_training_availability) and diffusion noise from generators seeded by (seed, rank, step).

Stage II never re-runs the tokenizer's autoencoder per step: each subject is encoded once per in-plane flip variant
(the encoder is not flip-equivariant, so flipping cached latents would put the targets off the tokenizer's manifold)
and the latents are cached in the workdir. Observed latents are the same tensors in training and at synthesis: every
element (brain modality, cardiac slice) is encoded on its own, so ``encode(zero-filled)`` equals ``encode(complete)``
wherever an element is observed. The prompt encoders — light 3D convs — run per step on the cached latents of the
sampled pattern's available elements (zero elsewhere), exactly as at synthesis.
"""
from __future__ import annotations

import dataclasses
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mribench.method import config_hash
from mribench.protocol import derive_seed, draw_training_availability, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import (EMA, CSVLog, TrainState, atomic_torch_save, barrier, dist_info, load_checkpoint,
                               progress_task, seed_everything, unwrap, warmup_cosine, wrap_ddp)
from mribench_copedit.data import FLIP_VARIANTS, TrainImages, flip_in_plane
from mribench_copedit.diffusers import build_network, conditioning
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.presets import DIFFUSER_NAMES, DiffusionStageConfig
from mribench_copedit.prompts import mask_latents
from mribench_copedit.tokenizer import CoPeVAE


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
    with progress_task(progress, f"{DIFFUSER_NAMES[cfg.diffuser]} (stage II)", cfg.steps, start) as advance:
        for step in range(start, cfg.steps):
            started = time.perf_counter()
            rng = seeded_rng("copedit-stage2", seed, info.rank, step)
            generator = torch.Generator().manual_seed(derive_seed("copedit-stage2-noise", seed, info.rank, step))
            indices = rng.integers(0, len(images), cfg.batch_size)
            raw = latents[indices, rng.integers(0, variants, cfg.batch_size)]
            mask = draw_training_availability(rng, task, cfg.batch_size)
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
