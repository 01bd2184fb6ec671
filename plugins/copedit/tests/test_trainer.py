"""The two training stages (stage1.py, stage2.py): exact resume after interruption, refusal of foreign checkpoints,
latents encoded once, CSV logs, and the prompt-side ablation switches."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch
from mribench_copedit.presets import PRESETS
from mribench_copedit.data import FLIP_VARIANTS, TrainImages, random_crop, zero_fill
from mribench_copedit.diffusers import build_network, conditioning
from mribench_copedit.stage1 import train_tokenizer
from mribench_copedit.stage2 import train_diffusion

from mribench.protocol import infer_availability

from mribench.errors import CheckpointMismatchError, MribenchError
from mribench.protocol import draw_training_availability

TOKENIZER = dataclasses.replace(PRESETS["smoke"].brain.tokenizer, steps=6, save_every=2, adversarial_start=2,
                                crop=(16, 16))
DIFFUSION = dataclasses.replace(PRESETS["smoke"].brain.diffusion, steps=6, save_every=2)


class Interrupted(Exception):
    pass


class StopAfter:
    """Stands in for a rich Progress: raises ``Interrupted`` once ``steps`` steps of the named bar are done."""

    def __init__(self, description: str, steps: int):
        self.description, self.steps, self.bars, self.done = description, steps, {}, 0

    def add_task(self, description, total, completed, info):
        self.bars[len(self.bars)] = description
        return len(self.bars) - 1

    def update(self, task_id, advance, info):
        if self.bars[task_id] == self.description:
            self.done += advance
            if self.done >= self.steps:
                raise Interrupted


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


@pytest.fixture(scope="module")
def brain():
    from copedit_tiny import make_subjects, make_task

    task = make_task("missing-modality")
    return task, TrainImages(make_subjects(task, 4), task)


def test_stage1_resumes_exactly_and_refuses_other_configs(brain, tmp_path):
    task, images = brain
    straight, _ = train_tokenizer(TOKENIZER, task, images, tmp_path / "straight", seed=0)
    with pytest.raises(Interrupted):
        train_tokenizer(TOKENIZER, task, images, tmp_path / "resumed", seed=0, progress=StopAfter("CoPeVAE (stage I)", 3))
    with pytest.raises(CheckpointMismatchError):
        train_tokenizer(dataclasses.replace(TOKENIZER, lr=1e-2), task, images, tmp_path / "resumed", seed=0)
    resumed, _ = train_tokenizer(TOKENIZER, task, images, tmp_path / "resumed", seed=0)
    assert_same_state(straight.state_dict(), resumed.state_dict())
    with pytest.raises(CheckpointMismatchError):  # the finished tokenizer is refused by another config too
        train_tokenizer(dataclasses.replace(TOKENIZER, weight_count=0.0), task, images, tmp_path / "straight", seed=0)
    with (tmp_path / "straight" / "stage1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == list(range(1, TOKENIZER.steps + 1))
    assert {"l1", "vq", "count_acc", "position_acc", "assessment_acc", "adv_d"} <= set(rows[0])
    assert rows[-1]["adv_d"] != "" and rows[0]["adv_d"] == ""  # the discriminator starts after its warm-up


def test_stage2_resumes_exactly_and_encodes_each_subject_once(brain, tmp_path, monkeypatch):
    task, images = brain
    tokenizer, report = train_tokenizer(TOKENIZER, task, images, tmp_path / "tokenizer", seed=0)
    variants = len(FLIP_VARIANTS) if DIFFUSION.flip_augment else 1
    encodes = []
    original = tokenizer.vqvae.encode
    monkeypatch.setattr(tokenizer.vqvae, "encode", lambda x: encodes.append(len(x)) or original(x))
    straight, scale = train_diffusion(DIFFUSION, tokenizer, report["tokenizer_hash"], task, images,
                                      tmp_path / "straight", seed=0)
    # one encode per subject, modality and flip variant, none per step
    assert sum(encodes) == len(images) * task.channels * variants
    with pytest.raises(Interrupted):
        train_diffusion(DIFFUSION, tokenizer, report["tokenizer_hash"], task, images, tmp_path / "resumed", seed=0,
                        progress=StopAfter("MDiT3D (stage II)", 3))
    resumed, resumed_scale = train_diffusion(DIFFUSION, tokenizer, report["tokenizer_hash"], task, images,
                                             tmp_path / "resumed", seed=0)
    assert scale == resumed_scale
    assert_same_state(straight.state_dict(), resumed.state_dict())
    with pytest.raises(CheckpointMismatchError):
        train_diffusion(dataclasses.replace(DIFFUSION, lr=1.0), tokenizer, report["tokenizer_hash"], task, images,
                        tmp_path / "resumed", seed=0)


@pytest.fixture
def zero_filled(task):
    from copedit_tiny import make_subjects

    mask = draw_training_availability(np.random.default_rng(0), task, 3)
    return zero_fill(make_subjects(task, 3).stack(), mask), mask


def test_prompt_switches(task, zero_filled):
    image, mask = zero_filled
    cfg = PRESETS["smoke"].for_problem(task.problem)
    from mribench_copedit.stage1 import build_tokenizer

    tokenizer = build_tokenizer(cfg.tokenizer, task).eval()
    available = tokenizer.available_latents(image)[0]
    observed = infer_availability(image, task.problem)  # what synthesis has instead of the mask

    def condition(diffusion):
        return conditioning(tokenizer, available, observed, diffusion, task.problem)

    full = condition(cfg.diffusion)["prompts"]
    assert torch.equal(full, tokenizer.prompts(image)) and full.abs().sum(dim=2).min() > 0
    no_position = condition(dataclasses.replace(cfg.diffusion, prompts_used=("count", "assessment")))["prompts"]
    assert torch.equal(no_position[:, [0, 2]], full[:, [0, 2]]) and not no_position[:, 1].any()
    code = condition(dataclasses.replace(cfg.diffusion, condition="mask"))
    expected = mask[:, :, 0] if task.problem == "missing-modality" else mask[:, 0, :]
    assert torch.equal(code["mask_code"], expected.float())  # derived from the zero-filled image alone
    assert condition(dataclasses.replace(cfg.diffusion, condition="none")) == {}


@pytest.mark.parametrize("changes", [{"condition": "none"}, {"condition": "mask"}, {"inject": "both"},
                                     {"inject": "secondary"}, {"diffuser": "dit"}, {"diffuser": "dit3d"}])
def test_ablation_networks_train_a_step(task, zero_filled, changes):
    """Every stage II switch builds a diffuser that takes its conditioning and returns latents of the right shape."""
    image, _ = zero_filled
    cfg = PRESETS["smoke"].for_problem(task.problem)
    diffusion = dataclasses.replace(cfg.diffusion, **changes)
    from mribench_copedit.stage1 import build_tokenizer

    tokenizer = build_tokenizer(cfg.tokenizer, task).eval()
    network = build_network(diffusion, cfg.tokenizer, task)
    latents = tokenizer.encode(image)
    available, _ = tokenizer.available_latents(image)
    output = network(latents, torch.zeros(len(image), dtype=torch.long),
                     **conditioning(tokenizer, available, infer_availability(image, task.problem), diffusion,
                                    task.problem))
    assert output.shape == latents.shape
    output.square().mean().backward()
    assert any(p.grad is not None for p in network.parameters())


def test_unknown_prompt_name_is_refused():
    with pytest.raises(MribenchError, match="prompts_used"):
        dataclasses.replace(PRESETS["smoke"].brain.diffusion, prompts_used=("count", "where"))


def test_random_crop_windows_fit_the_plane():
    rng = np.random.default_rng(0)
    windows = [random_crop(rng, (96, 96), (48, 48)) for _ in range(50)]
    assert all(0 <= h0 <= 48 and 0 <= w0 <= 48 and (h, w) == (48, 48) for h0, w0, h, w in windows)
    assert len({w[:2] for w in windows}) > 10
    assert random_crop(rng, (96, 96), None) is None
    with pytest.raises(MribenchError, match="crop"):
        dataclasses.replace(PRESETS["smoke"].brain.tokenizer, crop=(20, 16))


def test_bf16_autocast_trains(brain, tmp_path):
    task, images = brain
    from mribench_copedit.stage1 import build_tokenizer, freeze

    tokenizer = freeze(build_tokenizer(TOKENIZER, task))
    network, _ = train_diffusion(dataclasses.replace(DIFFUSION, steps=2, bf16=True), tokenizer, "untrained-tokenizer",
                                 task, images, tmp_path, seed=0)
    with (tmp_path / "stage2.csv").open() as fh:
        losses = [float(row["loss"]) for row in csv.DictReader(fh)]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in network.parameters())


def test_perceptual_term_uses_local_weights_only(brain, tmp_path, monkeypatch):
    """With $MRIBENCH_WEIGHTS/resnet50-imagenet.pth the perceptual term is on and recorded (file + SHA-256)."""
    import torchvision

    task, images = brain
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50-imagenet.pth")
    monkeypatch.setenv("MRIBENCH_WEIGHTS", str(tmp_path))
    _, report = train_tokenizer(dataclasses.replace(TOKENIZER, steps=1), task, images, tmp_path / "on", seed=0)
    assert report["perceptual"]["file"].endswith("resnet50-imagenet.pth") and len(report["perceptual"]["sha256"]) == 64
    with (tmp_path / "on" / "stage1.csv").open() as fh:
        assert float(next(csv.DictReader(fh))["perceptual"]) >= 0
    (tmp_path / "resnet50-imagenet.pth").write_bytes(b"not a state dict")
    with pytest.raises(MribenchError, match="ResNet-50"):
        train_tokenizer(dataclasses.replace(TOKENIZER, steps=1), task, images, tmp_path / "bad", seed=0)


def test_stage1_clips_gradients_runs_bf16_and_schedules_the_discriminator(brain, tmp_path):
    """The paper's appendix gives both stages gradient clipping, mixed precision and LR schedules."""
    task, images = brain
    cfg = dataclasses.replace(TOKENIZER, steps=6, adversarial_start=2, warmup_steps=1, grad_clip=1e-3)
    train_tokenizer(cfg, task, images, tmp_path / "fp32", seed=0)
    with (tmp_path / "fp32" / "stage1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(row["skipped_update"] == "0" for row in rows)
    assert all(float(row["grad_norm"]) > cfg.grad_clip for row in rows)  # the norm before clipping is logged
    saved = torch.load(tmp_path / "fp32" / "stage1.pt", weights_only=True)["objects"]
    assert saved["scheduler_d"]["last_epoch"] == cfg.steps - cfg.adversarial_start  # stepped with its optimiser only
    # bf16 autocast: a non-finite gradient (seen intermittently from CPU bf16 3D convolutions) skips the update, as
    # a loss scaler does, so nothing non-finite ever reaches the weights
    tokenizer, _ = train_tokenizer(dataclasses.replace(cfg, bf16=True), task, images, tmp_path / "bf16", seed=0)
    with (tmp_path / "bf16" / "stage1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and all(np.isfinite(float(row["loss"])) for row in rows)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in tokenizer.parameters())
