"""CoPeVAE: shapes and 8×8×8 compression, prompts read only the zero-filled input, pretext targets and losses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mribench_copedit.presets import PRESETS, TokenizerConfig
from mribench_copedit.prompts import PretextHeads, PretextTargets, latent_availability
from mribench_copedit.tokenizer import check_shape
from mribench_copedit.api import CoPeVAEPrompts
from mribench_copedit.data import zero_fill
from mribench_copedit.stage1 import build_tokenizer, freeze

from mribench.errors import MribenchError, UnknownNameError
from mribench.plugins import Registry
from mribench.protocol import draw_training_availability

SMOKE = PRESETS["smoke"].brain.tokenizer


def test_shapes_and_compression(task):
    model = build_tokenizer(SMOKE, task).eval()
    image = torch.rand(2, task.channels, 16, 16, 16)
    latents = model.encode(image)
    assert latents.shape == (2, task.channels, SMOKE.latent_dim, 2, 2, 2)  # 16 / 8 on every axis
    assert model.decode(latents).shape == image.shape
    assert model.prompts(image).shape == (2, 3, SMOKE.prompt_dim)


def test_elements_are_encoded_separately(tiny):
    """Brain modalities are 1-channel volumes: changing one modality leaves the others' latents untouched."""
    model = build_tokenizer(SMOKE, tiny.make_task("missing-modality")).eval()
    image = torch.rand(1, 4, 16, 16, 16)
    changed = image.clone()
    changed[:, 2] = 0
    a, b = model.encode(image), model.encode(changed)
    assert torch.equal(a[:, [0, 1, 3]], b[:, [0, 1, 3]])
    assert not torch.equal(a[:, 2], b[:, 2])


def test_shape_not_divisible_by_the_compression_is_refused():
    with pytest.raises(MribenchError, match="divisible by 8"):
        check_shape((16, 20, 16), SMOKE)
    with pytest.raises(MribenchError, match="divisible by 4 on H, W"):
        check_shape((13, 20, 18), TokenizerConfig(compression=4, slice_wise=True))
    check_shape((13, 20, 20), TokenizerConfig(compression=4, slice_wise=True))  # any slice count when slice-wise


def test_compression_is_a_config_field(task):
    cfg = TokenizerConfig(channels=(8, 8, 16), compression=4, num_res_layers=1, num_res_channels=8, codebook_size=64,
                          prompt_dim=16, prompt_channels=(8, 16, 16), slice_wise=task.problem == "missing-slice")
    model = build_tokenizer(cfg, task).eval()
    latents = model.encode(torch.rand(1, task.channels, 16, 16, 16))
    depth = 16 if cfg.slice_wise else 4
    assert latents.shape == (1, task.channels, 8, depth, 4, 4) and model.decode(latents).shape[2:] == (16, 16, 16)
    with pytest.raises(MribenchError, match="power of two"):
        TokenizerConfig(compression=6)


def test_latent_availability_marks_any_missing_slice():
    mask = torch.ones(1, 1, 16, dtype=torch.bool)
    mask[0, 0, 6:9] = False  # touches latent slices 0 (slices 0-7) and 1 (8-15)
    assert latent_availability(mask, 8).tolist() == [[[False, False]]]
    mask = torch.ones(1, 1, 16, dtype=torch.bool)
    mask[0, 0, 10:12] = False
    assert latent_availability(mask, 8).tolist() == [[[True, False]]]
    assert torch.equal(latent_availability(mask, 1), mask)  # slice-wise latents: exactly the observed slices


def test_pretext_targets():
    mask = torch.ones(2, 4, 16, dtype=torch.bool)
    mask[0, 1] = False
    mask[1, [0, 3]] = False
    brain = PretextTargets.from_mask(mask, "missing-modality", 8)
    assert brain.count.tolist() == [1, 2]
    assert brain.position.tolist() == [[0, 1, 0, 0], [1, 0, 0, 1]]
    slices = torch.ones(1, 1, 16, dtype=torch.bool)
    slices[0, 0, 5:9] = False
    cardiac = PretextTargets.from_mask(slices, "missing-slice", 1)
    assert cardiac.count.tolist() == [4] and cardiac.position.tolist() == [5]


def test_pretext_losses_learn_and_report_accuracies(task, tiny):
    """The prompt encoders + pretext heads (+ encoder) fit a fixed batch: the loss halves and every accuracy
    reaches 1/2 (chance: count 1/3 or 1/5, position ≤ 1/9, assessment retrieval 1/6)."""
    torch.manual_seed(0)
    cfg = TokenizerConfig(channels=(8, 8, 8), num_res_layers=1, num_res_channels=8, quantize=False, prompt_dim=32,
                          prompt_channels=(8, 16, 16), slice_wise=task.problem == "missing-slice")
    model = build_tokenizer(cfg, task)
    complete = tiny.make_subjects(task, 6).stack()
    mask = draw_training_availability(np.random.default_rng(1), task, 6)
    targets = PretextTargets.from_mask(mask, task.problem, model.cfg.depth_compression)
    zero_filled = zero_fill(complete, mask)

    def pretext():
        return model.heads.losses(model.prompts(zero_filled), model.encode_continuous(complete), targets)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(sum(pretext()[0].values()))
    for _ in range(40):
        loss = sum(pretext()[0].values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        losses, accuracies = pretext()
    assert float(sum(losses.values())) < 0.5 * first
    assert min(accuracies.values()) >= 0.5, accuracies


def test_contrastive_loss_prefers_matching_pairs():
    cfg = TokenizerConfig(channels=(8, 8, 8), codebook_size=32, prompt_dim=8, prompt_channels=(8, 8, 8))
    heads = PretextHeads(cfg, "missing-modality", 4, 16, 4)
    with torch.no_grad():
        for layer in (heads.anchor, heads.positive):
            layer.weight.copy_(torch.eye(8))
            layer.bias.zero_()
    mask = torch.ones(3, 4, 16, dtype=torch.bool)
    mask[:, 0] = False
    targets = PretextTargets.from_mask(mask, "missing-modality", 8)
    latents = torch.randn(3, 4, 8, 2, 2, 2)
    positives = heads.missing_embedding(latents, targets.missing_latents).detach()
    matched, _ = heads.losses(torch.stack([positives] * 3, dim=1), latents, targets)
    shuffled, _ = heads.losses(torch.stack([positives[[1, 2, 0]]] * 3, dim=1), latents, targets)
    assert matched["contrastive"] < shuffled["contrastive"]


def test_decoder_mirrors_the_encoder_when_some_levels_do_not_downsample(tiny):
    """With compression 4 over 3 levels, the encoder downsamples at its first two levels; MONAI's decoder reads its
    upsampling parameters deepest level first, so it must upsample at its last two (never work at full resolution
    with a deep level's width)."""
    cfg = TokenizerConfig(channels=(8, 16, 16), compression=4, num_res_layers=1, num_res_channels=16)
    model = build_tokenizer(cfg, tiny.make_task("missing-modality"))

    def strides(blocks):
        return [block.conv.stride[0] for block in blocks if type(block).__name__ == "Convolution"]

    assert strides(model.vqvae.encoder.blocks)[:3] == [2, 2, 1]
    assert strides(model.vqvae.decoder.blocks)[1:] == [1, 2, 2]


def test_copevae_is_the_copedit_prompt_provider_and_restores_from_a_state(task):
    """Other plugins reach the tokenizer through the hook: the registry's "copedit" prompt provider restores a saved
    tokenizer frozen, with the same prompts, and refuses an unknown preset."""
    provider = Registry().get("prompt provider", "copedit").cls
    assert provider is CoPeVAEPrompts
    torch.manual_seed(0)
    tokenizer = freeze(build_tokenizer(PRESETS["smoke"].for_problem(task.problem).tokenizer, task))
    restored = provider.restore_tokenizer(tokenizer.state_dict(), task, "smoke")
    assert not restored.training and not any(p.requires_grad for p in restored.parameters())
    mask = draw_training_availability(np.random.default_rng(2), task, 2)
    image = zero_fill(torch.rand(2, task.channels, 16, 16, 16) + 0.01, mask)
    assert torch.equal(restored.prompts(image), tokenizer.prompts(image))
    with pytest.raises(UnknownNameError, match="copedit preset 'huge'"):
        provider.restore_tokenizer(tokenizer.state_dict(), task, "huge")
