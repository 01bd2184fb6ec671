"""LDM, ControlNet and DiffM4RI: contracts, learning on held-out subjects, the mask, resume, reuse, registry."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

import mribench_baselines.latent as latent
from baselines_tiny import (check_synthesis_contract, check_training_helps, fitted, make_batch, make_subjects,
                           make_task)
from mribench.errors import MribenchError
from mribench.method import StepHook
from mribench.plugins import Registry, set_registry
from mribench.protocol import Batch
from mribench.training import seed_everything
from mribench_baselines.controlnet import ControlNet
from mribench_baselines.diffm4ri import DiffM4RI
from mribench_baselines.ldm import LDM, shared_model_path

ALL = [LDM, ControlNet, DiffM4RI]
NAMES = {"ldm", "controlnet", "diffm4ri"}


def quick(cls, steps: int, autoencoder_steps: int | None = None, **changes):
    """The smoke preset with fewer steps (ControlNet: its LDM's too)."""
    config = cls.presets["smoke"]
    if autoencoder_steps is not None:
        autoencoder = dataclasses.replace(config.autoencoder, steps=autoencoder_steps)
        changes["autoencoder"] = autoencoder
        if cls is ControlNet:
            changes["ldm"] = dataclasses.replace(config.ldm, autoencoder=autoencoder, steps=steps)
    return dataclasses.replace(config, steps=steps, **changes)


# -- contracts --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_contract_on_both_problems(cls, problem, tmp_path):
    method, task, subjects = fitted(cls, problem, tmp_path, quick(cls, steps=2, autoencoder_steps=2))
    check_synthesis_contract(method, task, subjects)
    assert cls.family == "diffusion" and cls.reads_mask and cls.calls_step_hook


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_paper_preset_builds_with_sizes(cls):
    facts = cls.describe("paper")
    counts = {k: v for k, v in facts.items() if k.startswith("params_")}
    assert {"params_autoencoder"} < set(counts) and min(counts.values()) > 100_000
    assert sum(cls.describe("smoke")[k] for k in counts) < sum(counts.values())


def test_a_shape_the_autoencoder_cannot_compress_is_refused_before_training(tmp_path):
    task, subjects = make_task("missing-modality", shape=(6, 16, 16)), make_subjects("missing-modality", 2,
                                                                                     shape=(6, 16, 16))
    method = LDM(LDM.presets["cpu"], seed=0)  # compression 4: depth 6 is not divisible
    with pytest.raises(MribenchError, match="divisible by 4"):
        method.fit(subjects, task, tmp_path / "work", None)
    assert not (tmp_path / "work").exists()


# -- learning: judged on subjects the fit never saw ------------------------------------------------------------------
def untrained_like(method):
    """The same method with every network freshly initialised (ControlNet: its LDM too)."""
    copy = type(method)(method.config, seed=1)
    copy.task, copy.scale = method.task, method.scale
    seed_everything(1)
    copy.autoencoder = latent.build_autoencoder(method.config.autoencoder, method.task.problem).eval()
    copy.nets = copy.build_networks()
    for net in copy.nets.values():
        net.eval()
    return copy


LEARNING = [(LDM, "missing-modality"), (ControlNet, "missing-slice"), (DiffM4RI, "missing-modality"),
            (DiffM4RI, "missing-slice")]


@pytest.mark.parametrize("cls,problem_name", LEARNING, ids=[f"{c.name}-{p}" for c, p in LEARNING])
def test_smoke_training_beats_an_untrained_copy_on_unseen_subjects(cls, problem_name, tmp_path):
    method, task, _ = fitted(cls, problem_name, tmp_path)
    check_training_helps(method, untrained_like, task, make_subjects(problem_name, 3, seed=7), 3)


@pytest.mark.parametrize("prediction", ["sample", "v_prediction"])
def test_other_predictions_learn_too(prediction, tmp_path):
    """The cpu presets predict x0 ("sample"); every prediction type must train and sample to a useful synthesis."""
    config = dataclasses.replace(LDM.presets["smoke"], prediction=prediction)
    method, task, _ = fitted(LDM, "missing-modality", tmp_path, config)
    check_training_helps(method, untrained_like, task, make_subjects("missing-modality", 3, seed=7), 3)


@pytest.mark.parametrize("prediction", latent.PREDICTIONS)
def test_the_training_target_is_the_configured_prediction(prediction):
    method = LDM(dataclasses.replace(LDM.presets["smoke"], prediction=prediction))
    x0 = torch.randn(3, 2, 2, 4, 4)
    torch.manual_seed(0)
    t, x_t, target = method.noised_latents(x0)
    alpha_bar = latent.ddim(method.config).alphas_cumprod[t].reshape(-1, 1, 1, 1, 1)
    noise = (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()  # the forward process, solved for the noise
    expected = {"epsilon": noise, "sample": x0,
                "v_prediction": alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0}[prediction]
    assert torch.allclose(target, expected, atol=1e-4)


def test_an_unknown_prediction_is_refused():
    with pytest.raises(ValueError, match="prediction must be one of"):
        dataclasses.replace(LDM.presets["smoke"], prediction="noise")


# -- the mask ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_the_mask_decides_which_elements_are_kept_and_which_are_synthesised(cls, tmp_path):
    """An element marked available is copied even when it is all zero; one marked missing is synthesised."""
    method, task, subjects = fitted(cls, "missing-modality", tmp_path, quick(cls, steps=2, autoencoder_steps=2))
    complete = torch.from_numpy(subjects[0].image)[None]
    mask = torch.ones(1, 3, complete.shape[2], dtype=torch.bool)
    mask[:, 1] = False
    zero_first = complete.clone()
    zero_first[:, 0] = 0  # all zero, yet marked available
    out = method.synthesize(Batch(zero_first * mask[..., None, None], mask, ["s"], {}))
    assert torch.equal(out[:, 0], zero_first[:, 0]) and torch.equal(out[:, 2], complete[:, 2])
    assert out[:, 1].abs().sum() > 0
    other = torch.ones_like(mask)
    other[:, 0] = False
    out_other = method.synthesize(Batch(complete * other[..., None, None], other, ["s"], {}))
    assert out_other[:, 0].abs().sum() > 0 and torch.equal(out_other[:, 1], complete[:, 1])


def test_ldm_denoiser_reads_the_mask_code(tmp_path):
    method, task, subjects = fitted(LDM, "missing-slice", tmp_path, quick(LDM, steps=4, autoencoder_steps=2))
    latents = latent.encode(method.autoencoder, torch.from_numpy(subjects[0].image)[None], task.problem)
    visible = torch.ones(1, task.n_elements, dtype=torch.bool)
    visible[:, 2:5] = False
    inputs = method.denoiser_input(torch.randn_like(latents), latents, visible)
    n, c = task.n_elements, method.latent_width
    assert inputs.shape[1] == 2 * n * c + n
    assert torch.equal(inputs[0, 2 * n * c:, 0, 0], visible[0].float())  # the mask code maps
    assert inputs[0, 2 * c:5 * c].abs().sum() > 0  # the noisy latents of the missing elements
    assert inputs[0, :2 * c].abs().sum() == 0  # no noise in the observed elements' slots
    assert inputs[0, n * c + 2 * c:n * c + 5 * c].abs().sum() == 0  # observed-latent slots of missing elements
    flipped = inputs.clone()
    flipped[:, 2 * n * c:] = 1 - flipped[:, 2 * n * c:]
    t = torch.tensor([10])
    with torch.no_grad():
        assert not torch.allclose(method.network()(inputs, t), method.network()(flipped, t))


def test_diffm4ri_prior_is_unconditional(tmp_path):
    """The prior sees only the noised complete latents; its training loss does not depend on the drawn mask."""
    method, task, subjects = fitted(DiffM4RI, "missing-modality", tmp_path, quick(DiffM4RI, 2, 2))
    width = task.n_elements * method.latent_width
    assert method.nets["prior"].conv_in.conv.in_channels == width
    latents = latent.encode(method.autoencoder, torch.from_numpy(subjects[0].image)[None], task.problem)
    losses = []
    for visible in (torch.tensor([[True, False, True]]), torch.tensor([[False, True, True]])):
        torch.manual_seed(0)
        losses.append(method.loss(latent.LatentBatch(latents, visible, None)))
    assert torch.equal(losses[0], losses[1])


def test_diffm4ri_resampling_jumps_cost_network_passes(tmp_path, monkeypatch):
    method, task, subjects = fitted(DiffM4RI, "missing-slice", tmp_path, quick(DiffM4RI, 2, 2))
    batch, _ = make_batch(task, subjects)
    passes = []
    for jumps in (0, 2):
        method.config = dataclasses.replace(method.config, resample_jumps=jumps)
        calls = {"n": 0}
        prior = method.network()
        monkeypatch.setattr(prior, "forward", lambda x, t, f=prior.forward: calls.__setitem__("n", calls["n"] + 1)
                            or f(x, t))
        method.synthesize(batch)
        monkeypatch.undo()
        passes.append(calls["n"])
    steps = method.config.sample_steps
    assert passes == [steps, 3 * steps - 2]  # the last reverse step is never resampled


# -- ControlNet on the frozen LDM --------------------------------------------------------------------------------------
def test_controlnet_reuses_the_published_ldm_and_trains_only_the_control_branch(tmp_path):
    ldm, task, subjects = fitted(LDM, "missing-slice", tmp_path, quick(LDM, 3, 2))
    published = shared_model_path(tmp_path / "shared", ldm.config, 0)
    published_bytes = published.read_bytes()
    longer = LDM(quick(LDM, 4, 2), seed=0)  # mribench curve's longer run, say, beside the preset's ldm
    longer.shared_dir = tmp_path / "shared"
    longer.fit(subjects, task, tmp_path / "ldm-longer", None)
    assert shared_model_path(tmp_path / "shared", longer.config, 0).is_file()
    assert published.read_bytes() == published_bytes, "an ldm of another config replaced the published one"
    config = quick(ControlNet, 3, 2)
    assert config.ldm == ldm.config
    control, _, _ = fitted(ControlNet, "missing-slice", tmp_path, config)
    assert not (tmp_path / "controlnet" / "ldm").exists(), "the published ldm was trained again"
    for key, value in ldm.state()["nets"]["denoiser"].items():
        assert torch.equal(value, control.nets["denoiser"].state_dict()[key]), key
    for key, value in ldm.autoencoder.state_dict().items():
        assert torch.equal(value, control.autoencoder.state_dict()[key]), key
    assert control.scale == ldm.scale
    assert control.parameter_count() == sum(p.numel() for p in control.nets["control"].parameters())
    assert not any(p.requires_grad for p in control.nets["denoiser"].parameters())
    assert published.read_bytes() == published_bytes, "a controlnet fit overwrote the published ldm"


def test_controlnet_trains_its_ldm_first_when_none_is_published(tmp_path):
    control, _, _ = fitted(ControlNet, "missing-slice", tmp_path, quick(ControlNet, 2, 2), shared=False)
    assert (tmp_path / "controlnet" / "ldm" / "diffusion.pt").exists()
    assert ControlNet.training_steps(control.config) == 2 + 2 + 2


def test_controlnet_config_must_sit_on_its_ldm():
    config = ControlNet.presets["smoke"]
    with pytest.raises(ValueError, match="must be the LDM's"):
        dataclasses.replace(config, timesteps=config.timesteps + 1)
    with pytest.raises(ValueError, match="must be the LDM's"):
        dataclasses.replace(config, prediction="sample" if config.ldm.prediction != "sample" else "epsilon")


# -- persistence -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_after", [3, 7], ids=["in-the-autoencoder-stage", "in-the-diffusion-stage"])
def test_killed_fit_resumes_to_the_same_weights(kill_after, tmp_path, monkeypatch):
    config = quick(LDM, steps=6, autoencoder_steps=4, save_every=2)
    complete_run, _, _ = fitted(LDM, "missing-modality", tmp_path / "a", config, shared=False)

    calls = {"n": 0}
    original = latent.optimizer_step

    def dies(optimizer, loss):
        calls["n"] += 1
        if calls["n"] > kill_after:
            raise KeyboardInterrupt
        original(optimizer, loss)

    monkeypatch.setattr(latent, "optimizer_step", dies)
    with pytest.raises(KeyboardInterrupt):
        fitted(LDM, "missing-modality", tmp_path / "b", config, shared=False)
    monkeypatch.setattr(latent, "optimizer_step", original)
    resumed, _, _ = fitted(LDM, "missing-modality", tmp_path / "b", config, shared=False)
    expected, got = complete_run.state(), resumed.state()
    assert expected["scale"] == got["scale"]
    for part in ("autoencoder", "nets"):
        flat_expected = dict(_flatten(expected[part]))
        for key, value in _flatten(got[part]):
            assert torch.allclose(flat_expected[key], value), f"{part}.{key}"


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("cls", [ControlNet, DiffM4RI], ids=lambda c: c.name)
def test_save_load_round_trip(cls, tmp_path):
    method, task, subjects = fitted(cls, "missing-slice", tmp_path, quick(cls, 2, 2))
    method.save(tmp_path / "model.pt")
    loaded = cls.load(tmp_path / "model.pt", method.config, 0, task)
    batch, _ = make_batch(task, subjects)
    torch.manual_seed(0)
    reference = method.synthesize(batch)
    torch.manual_seed(0)
    assert torch.equal(loaded.synthesize(batch), reference)
    with pytest.raises(MribenchError):
        cls.load(tmp_path / "model.pt", quick(cls, 3, 2), 0, task)


# -- the step hook -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_hook_follows_the_diffusion_stage_and_leaves_training_unchanged(cls, tmp_path):
    seen = []
    subjects = make_subjects("missing-slice", 2, seed=3)

    def hook(method):
        def callback(step, seconds):
            batch, complete = make_batch(method.task, subjects)
            assert method.synthesize(batch).shape == complete.shape
            assert not method.nets[method.trained_network].training
            seen.append(step)
        return StepHook(frozenset({1, 4, 99}), callback)

    config = quick(cls, steps=4, autoencoder_steps=2)
    task, train = make_task("missing-slice"), make_subjects("missing-slice", 6)
    fits = []
    for watched in (True, False):
        seed_everything(0)
        method = cls(config, seed=0)
        method.step_hook = hook(method) if watched else None
        method.fit(train, task, tmp_path / str(watched), None)
        fits.append(method)
    assert seen == [1, 4] and cls.hooked_steps(config) == 4
    for key, value in fits[0].state()["nets"][cls.trained_network].items():
        assert torch.equal(value, fits[1].state()["nets"][cls.trained_network][key]), key


# -- discovery --------------------------------------------------------------------------------------------------------
def test_methods_are_discoverable_and_show_their_sizes():
    found = Registry()
    assert NAMES <= set(found.names("method"))
    assert all(found.get("method", name).plugin == "baselines" for name in NAMES)
    assert all(found.method(name).family == "diffusion" for name in NAMES)
    # the paper-layout tables put the paper's reported LDM / ControlNet / DiffM4RI rows under ours: the classes
    # carry the paper's names, which every result records
    shown = [found.method(name).result_description() for name in ("ldm", "controlnet", "diffm4ri")]
    assert [d.display_name for d in shown] == ["LDM", "ControlNet", "DiffM4RI"]
    assert {d.family for d in shown} == {"diffusion"}
    from mribench.cli import app

    set_registry(None)
    try:
        listing = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "200"})
        assert listing.exit_code == 0 and all(name in listing.output for name in NAMES), listing.output
        shown = CliRunner().invoke(app, ["methods", "show", "controlnet"],
                                   env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        assert "params_control" in shown.output and "params_denoiser" in shown.output
    finally:
        set_registry(None)


def test_the_reproduce_plan_runs_them_with_ldm_before_controlnet():
    from mribench.leaderboard.reproduce import ReproducePlan

    default = [request.method for request in ReproducePlan(tasks=["phantom-brats-missing1"]).requests()]
    assert "m2dn" in default and NAMES <= set(default), "make leaderboard runs them"
    asked = [(request.seed, request.method) for request in
             ReproducePlan(tasks=["phantom-cardiac-missing8"], methods=["controlnet", "ldm"]).requests()]
    assert asked == [(seed, method) for seed in range(3) for method in ("ldm", "controlnet")], \
        "controlnet reads the model the ldm run of its seed publishes"


