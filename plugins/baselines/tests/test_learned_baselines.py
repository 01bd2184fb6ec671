"""MMGAN, MMT, M2DN, Hyper-GAE and the +Prompts variants: contracts, learning, prompts, resume, registry."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from baselines_tiny import (FakeTokenizer, check_synthesis_contract, check_training_helps, fitted, make_batch,
                           make_subjects, make_task)
from mribench.errors import MribenchError
from mribench.plugins import Registry, registry, set_registry
from mribench.protocol import Batch, seeded_rng
from mribench.training import seed_everything
from mribench_baselines import elements
from mribench_baselines.conditioning import CodeSpec
from mribench_baselines import plugin as baselines_plugin
from mribench_baselines.hypergae import HyperGAE, HyperGAEPrompts
from mribench_baselines.m2dn import M2DN, M2DNPrompts
from mribench_baselines.mmgan import MMGAN
from mribench_baselines.mmt import MMT, MMTPrompts
from mribench_baselines.training_data import TrainingData, missing_l1

BASE = [MMGAN, MMT, M2DN, HyperGAE]
PROMPTED = [MMTPrompts, M2DNPrompts, HyperGAEPrompts]
ALL = BASE + PROMPTED
pytestmark = pytest.mark.usefixtures("fake_prompt_provider")  # the +Prompts variants get FakeTokenizer


def quick(cls, **changes):
    return dataclasses.replace(cls.presets["smoke"], **changes)


def untrained_like(method):
    """A copy of a fitted method with freshly initialised networks (same tokenizer)."""
    copy = type(method)(method.config, seed=1)
    copy.task, copy._tokenizer = method.task, method._tokenizer
    seed_everything(1)
    copy._build(method.spec)
    for net in copy.nets.values():
        net.eval()
    return copy


# -- contracts --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_contract_on_both_problems(cls, problem, tmp_path):
    method, task, subjects = fitted(cls, problem, tmp_path, quick(cls, steps=2), n_subjects=3)
    check_synthesis_contract(method, task, subjects)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_paper_preset_builds_with_sizes(cls):
    facts = cls.describe("paper")
    counts = {k: v for k, v in facts.items() if k.startswith("params_")}
    assert counts and min(counts.values()) > 100_000
    assert sum(cls.describe("smoke")[k] for k in counts) < sum(counts.values())


def test_mmgan_curriculum_widens_from_one_missing_element():
    method = MMGAN(quick(MMGAN, steps=100), seed=0)
    method.task = make_task("missing-modality")
    assert method.k_range(0) == (1, 1)
    assert method.k_range(99) == (1, 2)


def test_mmt_head_still_learns_when_its_output_is_far_below_zero():
    """Cardiac slices are mostly background, so L1 pushes outputs down. MMT's former sigmoid head saturated there
    (logits about -46, no gradient) and predicted zeros for good; its head must pass gradient at any output."""
    task, subjects = make_task("missing-slice"), make_subjects("missing-slice", 2)
    method = MMT(MMT.presets["smoke"], seed=0)
    method.task = task
    method._build(CodeSpec(task.n_elements))
    net = method.nets["transformer"]
    with torch.no_grad():
        net.head[-1].bias.fill_(-50.0)
    batch = TrainingData(subjects, task).batch(seeded_rng("mmt-head"), 1, tuple(task.train_missing))
    missing_l1(net(batch.image, batch.visible, batch.condition), batch).backward()
    assert net.head[-1].bias.grad.abs().item() > 0.5


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_a_step_sees_the_same_number_of_element_images_on_both_problems(cls):
    """Brain stacks hold C contrasts, cardiac stacks D slices: the batch is counted in element images."""
    config = cls.presets["cpu"]
    brain, cardiac = config.samples_per_step(4), config.samples_per_step(32)
    assert brain * 4 == config.batch_elements
    assert cardiac == max(1, config.batch_elements // 32) and cardiac < brain
    assert config.samples_per_step(10_000) == 1, "at least one stack per step"


def test_element_stack_round_trip(problem):
    task = make_task(problem)
    batch, complete = make_batch(task, make_subjects(problem, 1))
    stack, availability = elements.element_stack(complete, batch.availability_mask, problem)
    assert stack.shape[1] == task.n_elements and availability.shape == stack.shape[:2]
    assert torch.equal(elements.volume_from_stack(stack, problem, 1), complete)


# -- learning -----------------------------------------------------------------------------------------------------
LEARNING = [(MMGAN, "missing-modality"), (MMT, "missing-slice"), (M2DN, "missing-modality"),
            (HyperGAE, "missing-slice"), (MMTPrompts, "missing-modality"), (M2DNPrompts, "missing-slice"),
            (HyperGAEPrompts, "missing-modality")]


@pytest.mark.parametrize("cls,problem_name", LEARNING, ids=[c.name for c, _ in LEARNING])
def test_smoke_training_beats_an_untrained_copy(cls, problem_name, tmp_path):
    method, task, subjects = fitted(cls, problem_name, tmp_path)
    check_training_helps(method, untrained_like, task, subjects, 2)


# -- +Prompts -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", PROMPTED, ids=lambda c: c.name)
def test_prompt_variants_read_prompts_never_the_mask(cls, tmp_path):
    assert cls.reads_mask is False
    method, task, subjects = fitted(cls, "missing-modality", tmp_path, quick(cls, steps=3))
    batch, _ = make_batch(task, subjects)
    torch.manual_seed(0)
    reference = method.synthesize(batch)
    wrong = Batch(batch.image, ~batch.availability_mask, batch.subject_ids, batch.meta)
    torch.manual_seed(0)
    assert torch.equal(method.synthesize(wrong), reference)
    method._tokenizer = FakeTokenizer(seed=5)
    torch.manual_seed(0)
    assert not torch.allclose(method.synthesize(batch), reference)


def test_prompt_variants_unavailable_without_a_prompt_provider(tmp_path):
    set_registry(Registry(entry_points=False, extra_plugins=[("baselines", baselines_plugin)]))
    try:
        for cls in PROMPTED:
            assert cls.unavailable_reason() == "needs the copedit plugin (mribench-copedit), which is not installed"
        assert all(cls.unavailable_reason() is None for cls in BASE)
        with pytest.raises(MribenchError, match=r"^the \+Prompts methods are unavailable: needs the copedit plugin"):
            fitted(MMTPrompts, "missing-slice", tmp_path, quick(MMTPrompts, steps=1))
        assert not (tmp_path / "mmt_prompts").exists(), "nothing is written before the provider is found"
    finally:
        set_registry(None)


# -- persistence --------------------------------------------------------------------------------------------------
def test_killed_fit_resumes_to_the_same_weights(tmp_path, monkeypatch):
    config = quick(M2DN, steps=6, save_every=2)
    complete_run, _, _ = fitted(M2DN, "missing-slice", tmp_path / "a", config)

    calls = {"n": 0}
    original = M2DN.train_step

    def dies_after_three_steps(self, batch, step):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return original(self, batch, step)

    monkeypatch.setattr(M2DN, "train_step", dies_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        fitted(M2DN, "missing-slice", tmp_path / "b", config)
    monkeypatch.setattr(M2DN, "train_step", original)
    resumed, _, _ = fitted(M2DN, "missing-slice", tmp_path / "b", config)
    for key, value in complete_run.state()["nets"]["denoiser"].items():
        assert torch.allclose(value, resumed.state()["nets"]["denoiser"][key]), key


@pytest.mark.parametrize("cls", [MMGAN, MMTPrompts], ids=lambda c: c.name)
def test_save_load_round_trip(cls, tmp_path):
    method, task, subjects = fitted(cls, "missing-slice", tmp_path, quick(cls, steps=2))
    method.save(tmp_path / "model.pt")
    loaded = cls.load(tmp_path / "model.pt", method.config, 0, task)
    batch, _ = make_batch(task, subjects)
    assert torch.equal(loaded.synthesize(batch), method.synthesize(batch))
    with pytest.raises(MribenchError):
        cls.load(tmp_path / "model.pt", quick(cls, steps=3), 0, task)


# -- discovery ----------------------------------------------------------------------------------------------------
NAMES = {"mmgan", "mmt", "m2dn", "hypergae", "mmt+prompts", "m2dn+prompts", "hypergae+prompts"}


def test_methods_are_discoverable_through_the_registry_and_cli():
    found = Registry()
    assert NAMES <= set(found.names("method"))
    assert all(found.get("method", name).plugin == "baselines" for name in NAMES)
    assert all(found.method(name).unavailable_reason() is None for name in NAMES)  # copedit is installed here
    from mribench.cli import app

    set_registry(None)
    result = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in NAMES)
    assert registry() is not None
