"""The five departures from the paper that issue 13 fixed, each pinned by a test that failed before the fix."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from mribench_copedit.presets import PRESETS
from mribench_copedit.prompts import PretextTargets, mask_latents
from mribench_copedit.data import FLIP_VARIANTS, TrainImages, flip_in_plane, zero_fill
from mribench_copedit.stage1 import build_tokenizer
from mribench_copedit.stage2 import cached_latents

from mribench.protocol import availability_from_missing
from mribench.tasks import TaskSpec


def cardiac_task(slices: int = 32, plane: int = 16) -> TaskSpec:
    return TaskSpec.model_validate({
        "name": "fidelity-cardiac", "version": 1, "description": "test", "dataset": "tiny", "problem": "missing-slice",
        "elements": slices, "missing": 8, "train_missing": (8, 24), "split": {"rule": "ratio", "test_fraction": 0.25},
        "preprocess": {"shape": (slices, plane, plane)}, "metrics": []})


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_cardiac_latent_slices_never_straddle_a_missing_run(preset):
    """Every start of runs of 8, 16 and 24 of 32 slices: no observed slice is discarded and no latent built from
    observed slices only is noised (a latent slice is available exactly when its image slice is)."""
    cfg = PRESETS[preset].cardiac.tokenizer
    task = cardiac_task(plane=8 * cfg.compression)
    tokenizer = build_tokenizer(cfg, task).eval()
    for run in (8, 16, 24):
        for start in range(32 - run + 1):
            slices = torch.from_numpy(availability_from_missing("missing-slice", 1, 32, run, run_start=start))[None]
            latents = tokenizer.latent_availability(slices)
            assert torch.equal(latents, slices), (run, start)


def test_cardiac_latent_slice_is_built_from_its_own_image_slice_only():
    task = cardiac_task()
    # continuous latents: the encoder's locality is the point (VQ then maps each latent vector on its own)
    tokenizer = build_tokenizer(replace(PRESETS["smoke"].cardiac.tokenizer, quantize=False), task).eval()
    image = torch.rand(1, 1, 32, 16, 16, generator=torch.Generator().manual_seed(0))
    changed = image.clone()
    changed[:, :, 9] = 0.0
    with torch.no_grad():
        a, b = tokenizer.encode(image), tokenizer.encode(changed)
    differs = (a != b).any(dim=(0, 1, 2, 4, 5))  # per latent slice
    assert a.shape[3] == 32 and differs.nonzero().flatten().tolist() == [9]


@pytest.mark.parametrize("problem", ["missing-modality", "missing-slice"])
def test_observed_latents_are_bit_equal_in_training_and_synthesis(problem, tmp_path):
    """Stage II trains on cached latents of the complete volume; synthesis reads encode(zero-filled). Where an element
    is observed they are the same tensors, bit for bit."""
    from copedit_tiny import make_subjects, make_task

    task = make_task(problem) if problem == "missing-modality" else cardiac_task()
    cfg = PRESETS["smoke"].for_problem(problem).tokenizer
    tokenizer = build_tokenizer(cfg, task).eval()
    images = TrainImages(make_subjects(task, 1) if problem == "missing-modality" else _cardiac_subjects(task), task)
    cached = cached_latents(tokenizer, images, 1, tmp_path / "latents.pt", "identity")[0, 0]  # (E, c, d, h, w)
    mask = torch.ones(1, task.channels, task.preprocess.shape[0], dtype=torch.bool)
    if problem == "missing-modality":
        mask[:, 2] = False
    else:
        mask[:, :, 11:27] = False
    with torch.no_grad():
        available_latents, availability = tokenizer.available_latents(zero_fill(images.batch([0]), mask))
    observed = availability[0][:, None, :, None, None].expand_as(cached)
    assert observed.any() and (~observed).any()
    assert torch.equal(available_latents[0][observed], cached[observed])
    assert torch.equal(available_latents[0], mask_latents(cached[None], availability)[0])


def _cardiac_subjects(task):
    from mribench.data.base import Subject, SubjectSet

    volume = np.random.default_rng(0).random((1, *task.preprocess.shape), dtype=np.float32) * 0.9 + 0.05
    return SubjectSet(["sub-000"], lambda sid: Subject(sid, volume, np.eye(4)))


def test_prompts_read_the_latents_of_the_available_elements_and_pretext_losses_reach_the_encoder():
    from copedit_tiny import make_subjects, make_task

    task = make_task("missing-modality")
    tokenizer = build_tokenizer(PRESETS["smoke"].brain.tokenizer, task)
    complete = TrainImages(make_subjects(task, 2), task).batch([0, 1])
    mask = torch.ones(2, 4, 16, dtype=torch.bool)
    mask[0, 1] = False
    mask[1, [0, 3]] = False
    # prompts are a function of the available latents: the image only matters through them
    tokenizer.eval()  # (a training-mode EMA codebook would move between the two encodes)
    with torch.no_grad():
        available, _ = tokenizer.available_latents(zero_fill(complete, mask))
        assert torch.equal(tokenizer.prompts(zero_fill(complete, mask)), tokenizer.prompts_from_latents(available))
    # the count and position losses alone reach the autoencoder's encoder
    out = tokenizer.train()(complete, mask)
    (out["pretext"]["count"] + out["pretext"]["position"]).backward()
    encoder_grad = sum(float(p.grad.abs().sum()) for p in tokenizer.vqvae.encoder.parameters() if p.grad is not None)
    assert encoder_grad > 0
    assert isinstance(PretextTargets.from_mask(mask, task.problem, 8).count, torch.Tensor)


def test_flipped_latents_are_encodings_of_flipped_images_not_flipped_encodings(tmp_path):
    from copedit_tiny import make_subjects, make_task

    task = make_task("missing-modality")
    cfg = replace(PRESETS["smoke"].brain.tokenizer, quantize=False)
    tokenizer = build_tokenizer(cfg, task).eval()
    images = TrainImages(make_subjects(task, 2), task)
    cached = cached_latents(tokenizer, images, len(FLIP_VARIANTS), tmp_path / "latents.pt", "identity")
    assert cached.shape[:2] == (2, len(FLIP_VARIANTS))
    image = images.batch([1])
    with torch.no_grad():
        for variant, flips in enumerate(FLIP_VARIANTS):
            assert torch.equal(cached[1, variant], tokenizer.encode(flip_in_plane(image, np.array([flips])))[0])
        flipped_encoding = flip_in_plane(tokenizer.encode(image), np.array([FLIP_VARIANTS[3]]))[0]
    assert not torch.allclose(cached[1, 3], flipped_encoding, atol=1e-4)  # the encoder is not flip-equivariant
