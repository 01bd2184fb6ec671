"""The copedit Method: training helps, synthesis ignores the mask, save/load, presets and their parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from mribench_copedit.diffusion import GaussianDiffusion
from mribench_copedit.method import CoPeDiT, ablation
from mribench_copedit.data import zero_fill
from mribench_copedit.diffusers import build_network, conditioning
from mribench_copedit.stage1 import build_tokenizer

from mribench.errors import CheckpointMismatchError
from mribench.method import StepHook
from mribench.plugins import Registry
from mribench.protocol import Batch, draw_availability, draw_training_availability
from mribench.training import seed_everything


@pytest.fixture(scope="module", params=["missing-modality", "missing-slice"])
def fitted(request, tmp_path_factory):
    """A smoke-trained CoPeDiT per problem, with its task and held-out validation subjects (trained once per
    module on 6 other subjects)."""
    from copedit_tiny import make_subjects, make_task

    task = make_task(request.param)
    method = CoPeDiT(CoPeDiT.presets["smoke"], seed=0)
    method.validation = make_subjects(task, 3, first=6)
    method.fit(make_subjects(task, 6), task, tmp_path_factory.mktemp("work"), None)
    return method, task, method.validation


def batch_for(task, subjects, index: int, k: int, seed: int) -> Batch:
    subject = subjects[index]
    mask = draw_availability(np.random.default_rng(seed), task.problem, task.channels, task.preprocess.shape[0], k)
    return Batch.from_complete(torch.from_numpy(subject.image)[None], torch.from_numpy(mask)[None],
                               [subject.subject_id])


def test_each_stage_beats_an_untrained_copy(fitted):
    """On validation subjects, stage I reconstructs better than a fresh CoPeVAE and stage II's EMA diffuser has a
    lower x0 loss on the missing latents (same patterns, same noise) than a fresh one."""
    method, task, subjects = fitted
    settings = method.config.for_problem(task.problem)
    complete = subjects.stack()

    def reconstruction_l1(tokenizer) -> float:
        return float((tokenizer.decode(tokenizer.encode(complete)).clamp(0, 1) - complete).abs().mean())

    seed_everything(method.seed)  # the untrained copy is stage I's own starting point
    untrained = build_tokenizer(settings.tokenizer, task).eval()
    with torch.no_grad():
        assert reconstruction_l1(method.tokenizer) < reconstruction_l1(untrained)
        mask = draw_training_availability(np.random.default_rng(5), task, len(complete))
        available_latents, available = method.tokenizer.available_latents(zero_fill(complete, mask))
        latents = method.tokenizer.encode(complete) / method.latent_scale
        inputs = conditioning(method.tokenizer, available_latents, mask, settings.diffusion, task.problem)

        def diffusion_loss(network) -> float:
            return float(np.mean([
                float(GaussianDiffusion().training_loss(lambda x_t, t: network(x_t, t, **inputs), latents, available,
                                                        torch.Generator().manual_seed(seed), missing_only=True))
                for seed in range(4)]))

        fresh = build_network(settings.diffusion, settings.tokenizer, task).eval()
        assert diffusion_loss(method.network) < diffusion_loss(fresh)


def test_synthesis_ignores_the_availability_mask(fitted):
    method, task, subjects = fitted
    assert CoPeDiT.reads_mask is False
    batch = batch_for(task, subjects, 0, task.train_missing[1], seed=3)
    wrong = Batch(batch.image, ~batch.availability_mask, batch.subject_ids, batch.meta)
    torch.manual_seed(7)
    right_output = method.synthesize(batch)
    torch.manual_seed(7)
    wrong_output = method.synthesize(wrong)
    assert torch.equal(right_output, wrong_output)
    observed = batch.availability_mask[..., None, None].expand_as(batch.image)
    assert torch.equal(right_output[observed], batch.image[observed])  # observed voxels come back unchanged
    assert right_output.shape == batch.image.shape and 0 <= float(right_output.min()) <= float(right_output.max()) <= 1


def test_report_has_tokenizer_quality_on_validation_subjects(fitted):
    method, _, validation = fitted
    report = method.report()["tokenizer"]
    assert {"reconstruction_psnr", "reconstruction_ssim", "count_acc", "position_acc", "assessment_acc",
            "perceptual"} <= set(report)
    assert report["report_split"] == "validation" and report["report_subjects"] == len(validation)
    assert report["reconstruction_psnr"] > 5 and 0 < report["reconstruction_ssim"] <= 1


def test_training_facts_count_both_stages(fitted, tmp_path):
    method, task, _ = fitted
    smoke = CoPeDiT.presets["smoke"].for_problem(task.problem)
    assert CoPeDiT.training_steps(CoPeDiT.presets["smoke"]) == smoke.tokenizer.steps + smoke.diffusion.steps
    kept = sum(p.numel() for module in (method.tokenizer.vqvae, method.tokenizer.prompt_encoders,
                                        method.tokenizer.heads, method.network) for p in module.parameters())
    assert method.parameter_count() == kept, "tokenizer + diffuser, without the stage-I discriminator"
    method.save(tmp_path / "model.pt")
    assert CoPeDiT.load(tmp_path / "model.pt", CoPeDiT.presets["smoke"], 0, task).parameter_count() == kept


def test_save_load_round_trip_and_config_check(fitted, tmp_path):
    method, task, subjects = fitted
    path = tmp_path / "model.pt"
    method.save(path)
    loaded = CoPeDiT.load(path, CoPeDiT.presets["smoke"], 0, task)
    batch = batch_for(task, subjects, 1, task.train_missing[0], seed=1)
    torch.manual_seed(3)
    expected = method.synthesize(batch)
    torch.manual_seed(3)
    assert torch.equal(loaded.synthesize(batch), expected)
    with pytest.raises(CheckpointMismatchError):
        CoPeDiT.load(path, ablation("smoke", condition="none"), 0, task)


def test_registered_through_the_plugin():
    from mribench_copedit import plugin

    registry = Registry(entry_points=False, extra_plugins=[("copedit", plugin)])
    assert registry.get("method", "copedit").cls is CoPeDiT


def test_paper_preset_builds_and_reports_parameter_counts():
    facts = CoPeDiT.describe("paper")
    brain, cardiac = facts["missing-modality"], facts["missing-slice"]
    assert brain["diffuser (MDiT3D-B, mdit3d)"] == pytest.approx(173.3e6, rel=0.01)
    assert cardiac["diffuser (MDiT3D-C, mdit3d)"] == pytest.approx(33.0e6, rel=0.01)
    assert brain["codebook"] == cardiac["codebook"] == 8192 and brain["prompt_dim"] == 512
    assert brain["tokenizer_autoencoder"] > 10 * cardiac["tokenizer_autoencoder"]  # -B (256..512) vs -C (32..128)
    assert brain["ddim_steps"] == 200 and cardiac["ddim_steps"] == 250


def test_paper_copevae_b_has_the_papers_size():
    """The paper's efficiency table: CoPeVAE 137.6 M parameters (autoencoder with MONAI's 3 residual layers of 256
    channels, plus the prompt encoders and pretext heads)."""
    brain = CoPeDiT.describe("paper")["missing-modality"]
    total = brain["tokenizer_autoencoder"] + brain["prompt_encoders"] + brain["pretext_heads"]
    assert total == pytest.approx(137.6e6, rel=0.01)


def test_step_hook_scores_during_stage2_without_changing_training(tmp_path):
    """``mribench curve`` watches stage II: at the asked steps ``synthesize`` works with the EMA diffuser, and the
    hooked fit ends bit-identical to an unhooked one."""
    from copedit_tiny import make_subjects, make_task

    task = make_task("missing-modality")
    validation = make_subjects(task, 2, first=6)
    fits = []
    seen = []
    for hooked in (False, True):
        method = CoPeDiT(CoPeDiT.presets["smoke"], seed=0)
        method.validation = validation

        def callback(step: int, training_seconds: float, method=method) -> None:
            output = method.synthesize(batch_for(task, validation, 0, task.train_missing[0], seed=2))
            seen.append((step, training_seconds > 0, tuple(output.shape)))

        method.step_hook = StepHook(steps=frozenset({4, 16}), callback=callback) if hooked else None
        method.fit(make_subjects(task, 6), task, tmp_path / str(hooked), None)
        fits.append(method)
    shape = (1, task.channels, *task.preprocess.shape)
    assert seen == [(4, True, shape), (16, True, shape)]
    assert CoPeDiT.hooked_steps(CoPeDiT.presets["smoke"]) == 16
    assert CoPeDiT.hooked_steps(CoPeDiT.with_hooked_steps(CoPeDiT.presets["smoke"], 32)) == 32
    for name, tensor in fits[0].network.state_dict().items():
        assert torch.equal(tensor, fits[1].network.state_dict()[name]), name
