"""CoPeDiT's stage I: the CoPeVAE tokenizer, trained once per dataset, preset and seed in the runner's shared folder.

Resumes mid-stage from an atomic checkpoint (mribench.training.TrainState), logs every step to a CSV file and shows
rich progress with losses and pretext accuracies. Under torchrun it trains with DistributedDataParallel (gloo on CPU,
NCCL on GPU); only rank 0 writes files. Every step draws its batch, availability (dual random sampling via
mribench.protocol.draw_training_availability), flips and crops from generators seeded by (seed, rank, step), so an
interrupted run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from monai.losses import PatchAdversarialLoss

from mribench.atomic import file_lock, wait_notice
from mribench.method import config_hash
from mribench.metrics.ssim import ssim
from mribench.protocol import derive_seed, draw_training_availability, seeded_rng
from mribench.tasks import TaskSpec
from mribench.training import (CSVLog, TrainState, atomic_torch_save, barrier, dist_info, load_checkpoint,
                               progress_task, seed_everything, warmup_cosine, wrap_ddp)
from mribench_copedit.data import TrainImages, flip_in_plane, random_crop, zero_fill
from mribench_copedit.presets import TokenizerConfig
from mribench_copedit.prompts import PretextTargets
from mribench_copedit.tokenizer import CoPeVAE, build_discriminator, build_perceptual, perceptual_weights


def tokenizer_folder(shared_dir: Path, preset_name: str, seed: int) -> Path:
    """Where stage I of (preset, seed) lives inside a dataset's shared folder."""
    return Path(shared_dir) / "copedit-tokenizer" / f"{preset_name}-seed{seed}"


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
            mask = draw_training_availability(rng, task, cfg.batch_size)
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


def restore_tokenizer(cfg: TokenizerConfig, task: TaskSpec, state: dict[str, Any]) -> CoPeVAE:
    """The frozen tokenizer whose ``state_dict()`` was ``state`` (kept in a checkpoint)."""
    tokenizer = build_tokenizer(cfg, task)
    tokenizer.load_state_dict(state)
    return freeze(tokenizer)


@torch.no_grad()
def tokenizer_report(model: CoPeVAE, task: TaskSpec, images: TrainImages, seed: int, split: str = "validation",
                     chunk: int = 4) -> dict[str, Any]:
    """Reconstruction PSNR (dB) / SSIM (data range 1; 3D per modality, 2D per cardiac slice, as the evaluators) and
    pretext accuracies on up to ``report_subjects`` held-out subjects of ``split``, with fixed training-range patterns.
    """
    n = min(model.cfg.report_subjects, len(images))
    rng = seeded_rng("copedit-report", seed)
    psnrs, ssims, accuracies = [], [], []
    for first in range(0, n, chunk):
        indices = list(range(first, min(first + chunk, n)))
        complete = images.batch(indices)
        mask = draw_training_availability(rng, task, len(indices))
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
