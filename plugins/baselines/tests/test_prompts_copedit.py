"""+Prompts variants with the real frozen CoPeVAE, found through copedit's prompt provider (smoke preset, tiny data)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines_tiny import make_batch, make_subjects, make_task
from mribench.plugins import registry
from mribench.training import seed_everything
from mribench_baselines.m2dn import M2DNPrompts
from mribench_baselines.plugin import PROMPT_PROVIDER

pytestmark = pytest.mark.skipif(PROMPT_PROVIDER not in registry().names("prompt provider"),
                                reason="the copedit plugin (the prompt provider) is not installed")


def test_m2dn_prompts_with_the_real_tokenizer_trains_saves_and_reloads(tmp_path):
    shape = (16, 16, 16)  # the smoke CoPeVAE needs 16 voxels per axis
    task, subjects = make_task("missing-modality", shape=shape), make_subjects("missing-modality", 4, shape=shape)
    config = dataclasses.replace(M2DNPrompts.presets["smoke"], steps=2, prompt_bank=2)
    seed_everything(0)
    method = M2DNPrompts(config, seed=0)
    method.shared_dir = tmp_path / "shared"
    method.fit(subjects, task, tmp_path / "work", None)
    assert any((tmp_path / "shared").rglob("tokenizer.pt"))  # stage I trained once into the shared folder
    batch, complete = make_batch(task, subjects)
    torch.manual_seed(0)
    out = method.synthesize(batch)
    assert out.shape == complete.shape and torch.isfinite(out).all()
    method.save(tmp_path / "model.pt")
    loaded = M2DNPrompts.load(tmp_path / "model.pt", config, 0, task)
    torch.manual_seed(0)
    assert torch.equal(loaded.synthesize(batch), out)
