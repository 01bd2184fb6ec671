"""The downstream segmenter behind ``dice`` and ``fd-seg``: a MONAI SegResNet trained once per (dataset, preset)
on the complete real training data, cached and hashed like any other extractor.

Regions are predicted as independent sigmoid channels: brain WT = {1, 2, 4}, TC = {1, 4}, ET = {4}; cardiac
RV = {1}, MYO = {2}, LV = {3}. Variants: ``full`` (all modalities) and, for brain, one per set of available
modalities (``avail-T1+T2+FLAIR`` ...), trained lazily when a test pattern needs it — the paper's "Missing"
baseline. Checkpoints: ``cache_dir()/segmenters/<task.model_key>-<training data key>/<preset>-<config hash>/
<variant>.pt``, written atomically and reproducibly (the same weights give the same bytes), resumable (TrainState)
and trained under a lock (one process trains, another waits); results record the segmenter's name and the SHA-256 of
the finished file — never its path, which differs from cache to cache.

Training draws, at each step, ``slices`` 2D slices of ``batch_size`` training subjects, a ``foreground_share`` of
them among the slices that show a labelled region (a third of the slices of a BraTS-like volume show no tumour and
the regions cover ~1 % of the voxels), and minimises Dice + cross-entropy with the Dice computed over the whole batch
(a per-slice Dice is ~1 on every slice without the region whatever the network does, which is what kept the first
``cpu`` preset at a loss of ~0.98), at a constant learning rate; it predicts with a moving average of its weights
(``ema_decay``). When the protocol's validation subjects are given, the finished network's mean
Dice on them (:func:`mean_dice`) is stored in the checkpoint and travels with the segmenter, so a reader can
tell whether the Dice table measures the methods or a segmenter that learned nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mribench.atomic import file_lock, sweep_temporaries_of, wait_notice
from mribench.data.base import cache_dir
from mribench.errors import MribenchError
from mribench.metrics.features import sha256_of
from mribench.seeding import derive_seed, seeded_rng
from mribench.threads import SEGMENTER_THREADS, torch_threads
from mribench.training import EMA, TrainState, load_checkpoint, progress_task, seed_everything

BRAIN_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
CARDIAC_REGIONS: dict[str, tuple[int, ...]] = {"RV": (1,), "MYO": (2,), "LV": (3,)}


@dataclass(frozen=True)
class SegmenterConfig:
    """SegResNet size and training schedule of one preset."""

    init_filters: int
    blocks_down: tuple[int, ...]
    blocks_up: tuple[int, ...]
    steps: int
    batch_size: int
    lr: float
    save_every: int
    # > 0: a 2D network over axial/short-axis slices, trained on this many random slices per step (3D convolutions
    # are ~10x slower than 2D ones on a CPU); 0: a 3D network over whole volumes.
    slices: int = 0
    # 2D only: share of each step's slices drawn among the slices showing a labelled region (the rest: any slice)
    foreground_share: float = 0.0
    # the segmenter predicts with an exponential moving average of its weights (0: the last weights); at a constant
    # learning rate it removes the step-to-step noise of the last weights
    ema_decay: float = 0.0


PRESETS: dict[str, SegmenterConfig] = {
    "smoke": SegmenterConfig(init_filters=4, blocks_down=(1, 1), blocks_up=(1,), steps=6, batch_size=2, lr=3e-3,
                             save_every=3, slices=8, foreground_share=0.75),
    # benchmarks/curves/segmenter-*-cpu-full.{csv,png}: twice the steps gains +0.009 validation Dice on the cardiac
    # twin (plateau), +0.025 on the BraTS twin (ET still rising: not yet on its plateau); ~2.6 CPU min a variant
    "cpu": SegmenterConfig(init_filters=8, blocks_down=(1, 2, 2), blocks_up=(1, 1), steps=600, batch_size=2,
                           lr=1e-2, save_every=50, slices=16, foreground_share=0.75, ema_decay=0.98),
    "paper": SegmenterConfig(init_filters=16, blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), steps=20000,
                             batch_size=2, lr=1e-4, save_every=500),
}


def regions_for(problem: str) -> dict[str, tuple[int, ...]]:
    return BRAIN_REGIONS if problem == "missing-modality" else CARDIAC_REGIONS


def region_targets(label: torch.Tensor, regions: dict[str, tuple[int, ...]]) -> torch.Tensor:
    """(..., D, H, W) integer label → (..., R, D, H, W) float binary region maps."""
    label = torch.as_tensor(label).long()
    return torch.stack([torch.isin(label, torch.tensor(values)) for values in regions.values()], dim=-4).float()


def variant_name(channels: list[int], element_names: list[str], n_channels: int) -> str:
    if len(channels) == n_channels:
        return "full"
    return "avail-" + "+".join(element_names[c] for c in channels)


class Segmenter:
    """A trained SegResNet on a subset of input channels (3D, or 2D applied slice by slice).

    ``predict(image)`` (C_in, D, H, W) in [0, 1] → (R, D, H, W) bool; ``features(image)`` → (F,) global mean of
    the deepest encoder features. Inputs are zero-padded to a multiple of the network's total stride.
    ``validation_dice``: :func:`mean_dice` on the protocol's validation subjects when it was trained, or None.
    """

    def __init__(self, net: torch.nn.Module, channels: list[int], regions: dict[str, tuple[int, ...]],
                 stride: int, info: dict[str, str], slicewise: bool = False,
                 validation_dice: dict[str, float] | None = None):
        self.net = net.eval()
        self.channels = channels
        self.regions = regions
        self.stride = stride
        self.info = info
        self.slicewise = slicewise
        self.validation_dice = validation_dice

    def _network_input(self, image: torch.Tensor) -> torch.Tensor:
        """(C, D, H, W) → (1, C_in, D, H, W), or (D, C_in, H, W) slices for a 2D network; padded."""
        volume = image[None, self.channels].float()
        return _pad(volume[0].transpose(0, 1) if self.slicewise else volume, self.stride)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        d, h, w = image.shape[-3:]
        logits = self.net(self._network_input(image))
        logits = logits.transpose(0, 1) if self.slicewise else logits[0]
        return logits[:, :d, :h, :w] > 0

    @torch.no_grad()
    def features(self, image: torch.Tensor) -> torch.Tensor:
        deepest, _ = self.net.encode(self._network_input(image))
        return deepest.mean(dim=0).flatten(1).mean(dim=1) if self.slicewise else deepest.mean(dim=(2, 3, 4))[0]


def initial_network(task: Any, preset: str, channels: list[int]) -> torch.nn.Module:
    """The untrained network of (task.model_key, preset, input channels), from its own derived seed."""
    variant = variant_name(channels, task.element_names, task.channels)
    seed_everything(derive_seed("mribench-segmenter", task.model_key, preset, variant))
    return _build(PRESETS[preset], len(channels), len(regions_for(task.problem)))


def _build(config: SegmenterConfig, in_channels: int, out_channels: int) -> torch.nn.Module:
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=2 if config.slices else 3, init_filters=config.init_filters, in_channels=in_channels,
                     out_channels=out_channels, blocks_down=config.blocks_down, blocks_up=config.blocks_up,
                     norm=("GROUP", {"num_groups": min(8, config.init_filters)}))


_LOADED: dict[Path, Segmenter] = {}


def segmenter_path(task: Any, train: Any, preset: str, variant: str) -> Path:
    """Keyed by the training data (``train.identity``: subject IDs and data fingerprint, so another data root trains
    its own segmenter) and by the preset's config (changing a preset trains new segmenters instead of refusing old
    ones)."""
    config_key = hashlib.sha256(json.dumps(asdict(PRESETS[preset]), sort_keys=True).encode()).hexdigest()[:12]
    return (cache_dir() / "segmenters" / f"{task.model_key}-{train.identity[:12]}" / f"{preset}-{config_key}"
            / f"{variant}.pt")


def region_dice(prediction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """MONAI DiceMetric of binary region maps (R, D, H, W) → (R,); a region empty in both counts as 1."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    return metric(prediction[None].float(), reference[None].float())[0]


def mean_dice(segmenter: Segmenter, subjects: Any) -> dict[str, float]:
    """Mean Dice of ``segmenter`` on its input channels of ``subjects`` (a SubjectSet with labels): region → mean
    over subjects, plus ``mean`` (over regions)."""
    scores = torch.stack([region_dice(segmenter.predict(torch.from_numpy(np.array(s.image, dtype=np.float32))),
                                      region_targets(torch.from_numpy(np.array(s.label)), segmenter.regions).bool())
                          for s in subjects])
    per_region = {region: float(v) for region, v in zip(segmenter.regions, scores.mean(dim=0).tolist())}
    return {**per_region, "mean": float(np.mean(list(per_region.values())))}


def get_segmenter(task: Any, train: Any, preset: str, channels: list[int], progress=None,
                  validation: Any = None) -> Segmenter:
    """The cached segmenter of (task.model_key, training data, preset, input channels); trained on ``train`` when
    absent, by one process at a time (a second one waits for the first and then loads its file).

    train: SubjectSet of complete training subjects with labels. validation: the protocol's validation subjects
    (with labels), scored once when the network is trained; its Dice is ``Segmenter.validation_dice`` (None when
    no validation subject was given at training time).
    """
    if preset not in PRESETS:
        raise MribenchError(f"unknown segmenter preset {preset!r}; known: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    regions = regions_for(task.problem)
    variant = variant_name(channels, task.element_names, task.channels)
    path = segmenter_path(task, train, preset, variant)
    if path in _LOADED:
        return _LOADED[path]
    identity = {"config": asdict(config), "channels": channels, "regions": regions, "model_key": task.model_key}
    config_hash = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    net = initial_network(task, preset, channels)
    stride = 2 ** (len(config.blocks_down) - 1)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    ema = EMA(net, config.ema_decay)
    state = TrainState(path, config_hash, model=net, opt=opt, ema=ema)
    say = wait_notice(progress.console if progress is not None else None)
    with file_lock(path.with_name(f".{path.name}.lock"), on_wait=say):
        sweep_temporaries_of(path)
        start = state.resume()
        if start < config.steps:
            with torch_threads(SEGMENTER_THREADS):
                train_network(net, opt, ema, state, start, config, train, channels, regions, stride, progress,
                              f"segmenter {variant}")
            if validation is not None and len(validation) > 0:
                scored = Segmenter(ema.model, channels, regions, stride, {}, slicewise=bool(config.slices))
                state.extra["validation_dice"] = mean_dice(scored, validation)
                state.save(config.steps)
        payload = load_checkpoint(path, expect={"config_hash": config_hash})
        digest = sha256_of(path)
    net.load_state_dict(payload["objects"]["ema"])
    # identity = name + content hash: never the file's path, which differs from cache to cache
    info = {"name": f"segmenter-{preset}-{variant}", "sha256": digest, "pin": "trained by mribench"}
    _LOADED[path] = Segmenter(net, channels, regions, stride, info, slicewise=bool(config.slices),
                              validation_dice=payload.get("extra", {}).get("validation_dice"))
    return _LOADED[path]


def train_network(net, opt, ema: EMA, state: TrainState, start: int, config: SegmenterConfig, train,
                  channels: list[int], regions: dict[str, tuple[int, ...]], stride: int, progress, description: str,
                  after_step: Callable[[int], None] | None = None) -> None:
    """Train ``net`` (and its average ``ema``) from step ``start`` to ``config.steps`` on ``train``, checkpointing
    through ``state``; ``after_step(step)`` (steps counted from 1) is called after each step, e.g. to score a
    learning curve."""
    from monai.losses import DiceCELoss

    if len(train) == 0:
        raise MribenchError("cannot train the downstream segmenter: the training split is empty")
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    net.train()
    # metrics may be asked for a segmenter from inside torch.no_grad() (lazy Missing variants)
    with torch.enable_grad(), progress_task(progress, description, total=config.steps, completed=start) as advance:
        for step in range(start, config.steps):
            rng = seeded_rng("mribench-segmenter-batch", description, step)
            subjects = [train[int(i)] for i in rng.integers(0, len(train), config.batch_size)]
            if any(s.label is None for s in subjects):
                raise MribenchError(f"subject {next(s.subject_id for s in subjects if s.label is None)} has no label; "
                                    "the downstream segmenter needs labels")
            images = torch.from_numpy(np.stack([s.image[channels] for s in subjects])).float()
            targets = region_targets(torch.from_numpy(np.stack([s.label for s in subjects])), regions)
            if config.slices:  # (B, C, D, H, W) → (slices, C, H, W)
                images, targets = (t.transpose(1, 2).flatten(0, 1) for t in (images, targets))
                chosen = torch.from_numpy(draw_slices(rng, targets.flatten(1).amax(dim=1).numpy() > 0,
                                                      config.slices, config.foreground_share))
                images, targets = images[chosen], targets[chosen]
            loss = loss_fn(net(_pad(images, stride)), _pad(targets, stride))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(net)
            state.maybe_save(step + 1, config.save_every, config.steps)
            advance(loss=loss.item())
            if after_step is not None:
                after_step(step + 1)
    net.eval()


def draw_slices(rng: np.random.Generator, foreground: np.ndarray, count: int, foreground_share: float) -> np.ndarray:
    """Indices of ``count`` distinct slices (at most all of them): ``round(count * foreground_share)`` among the
    slices where ``foreground`` (bool per slice) is True (all of them when fewer), the rest among the others."""
    count = min(count, foreground.size)
    labelled = np.flatnonzero(foreground)
    wanted = min(int(round(count * foreground_share)), labelled.size)
    first = rng.choice(labelled, wanted, replace=False)
    others = np.setdiff1d(np.arange(foreground.size), first)
    return np.concatenate([first, rng.choice(others, count - wanted, replace=False)])


def _pad(batch: torch.Tensor, stride: int) -> torch.Tensor:
    """Zero-pad the trailing spatial axes (all but the first two) of ``batch`` up to multiples of ``stride``."""
    padding: list[int] = []
    for size in reversed(batch.shape[2:]):
        padding += [0, (-size) % stride]
    return F.pad(batch, padding)
