"""CoPeDiT's ablation variants and prompt-analysis pieces: each variant changes exactly its switch (checked on the
tensors that reach the diffuser), stage-II variants read the shared tokenizer, the tokenizer folder is locked, and the
prompt edits are deterministic and change predictions."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from mribench_copedit import stage1
from mribench_copedit.ablations import VARIANT_CLASSES
from mribench_copedit.analysis import (
    AttentionRecorder,
    attention_probabilities,
    corrupt,
    cyclic_donors,
    interventions,
)
from mribench_copedit.data import TrainImages
from mribench_copedit.mdit3d import TOKEN_AXES, FactorisedAttention
from mribench_copedit.method import CoPeDiT
from mribench_copedit.presets import PRESETS
from mribench_copedit.sample import sample
from mribench_copedit.stage1 import tokenizer_folder
from mribench_copedit.variants import VARIANTS

from mribench.atomic import file_lock
from mribench.plugins import Registry
from mribench.protocol import Batch, draw_availability, seeded_rng


def _variant(name: str) -> type[CoPeDiT]:
    return next(cls for cls in VARIANT_CLASSES.values() if cls.name == name)


def test_every_variant_is_registered_as_an_ablation_of_copedit():
    registry = Registry()
    names = set(registry.names("method"))
    assert {variant.name for variant in VARIANTS} <= names
    assert len(VARIANTS) == 11
    for variant in VARIANTS:
        cls = registry.method(variant.name)
        assert issubclass(cls, CoPeDiT) and cls is not CoPeDiT
        assert cls.family == "ablation" and cls.name == variant.name
    assert registry.method("copedit").family == "proposed"


def test_each_variant_fills_one_row_of_the_papers_ablation_tables_and_copedit_one_of_each():
    """The rows the leaderboard's ablation tables are built from (recorded in every result): the switch a variant
    changes decides its table, and the paper's BraTS missing-1 PSNR sits on its row."""
    tables = {"condition": "Prompts", "prompts_used": "Prompts", "inject": "Injection position",
              "diffuser": "Diffuser", "joint_loss": "Joint loss"}
    paper = {"copedit-no-prompts": 25.92, "copedit-no-count": 27.35, "copedit-no-position": 26.92,
             "copedit-no-assessment": 27.56, "copedit-maskcode": 27.18, "copedit-inject-secondary": 27.47,
             "copedit-inject-both": 27.76, "copedit-unet": 25.61, "copedit-dit": 26.78, "copedit-dit3d": 26.84}
    rows = {}
    for variant in VARIANTS:
        (row,) = _variant(variant.name).result_description().ablation_rows
        assert row.table == tables[next(iter(variant.switches))]
        assert row.reported.get("brats-missing1", {}).get("psnr") == paper.get(variant.name)
        rows[(row.table, row.order)] = variant.name
    full = CoPeDiT.result_description().ablation_rows
    assert [row.table for row in full] == ["Prompts", "Injection position", "Diffuser", "Joint loss"]
    assert all(row.reported == {"brats-missing1": {"psnr": 28.26}} for row in full)
    assert len(rows) == len(VARIANTS) and not {(row.table, row.order) for row in full} & set(rows), \
        "one place per row: no two rows of a table share an order"
    assert all(min(order for (t, order) in rows if t == row.table) > row.order for row in full), \
        "the full model heads each table"


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_a_variant_differs_from_copedit_exactly_in_its_switches(variant):
    cls = _variant(variant.name)
    for preset, config in PRESETS.items():
        ablated = cls.presets[preset]
        for problem in ("missing-modality", "missing-slice"):
            ours, base = ablated.for_problem(problem), config.for_problem(problem)
            assert ours.tokenizer == base.tokenizer, "stage I is shared: the tokenizer config is copedit's"
            ours_fields, base_fields = dataclasses.asdict(ours.diffusion), dataclasses.asdict(base.diffusion)
            changed = {key for key in base_fields if ours_fields[key] != base_fields[key]}
            assert changed == set(variant.switches), f"{variant.name} at {preset} changes {changed}"
            assert all(ours_fields[key] == value for key, value in variant.switches.items())


class Recorder(torch.nn.Module):
    """A stand-in diffuser that keeps the keyword inputs it receives (the conditioning) and predicts zeros."""

    def __init__(self):
        super().__init__()
        self.inputs: list[dict[str, torch.Tensor]] = []

    def forward(self, latents, timesteps, **conditioning):
        self.inputs.append(conditioning)
        return torch.zeros_like(latents)


def _received(method_name: str, tokenizer, task, zero_filled) -> dict[str, torch.Tensor]:
    config = (CoPeDiT if method_name == "copedit" else _variant(method_name)).presets["smoke"]
    network = Recorder()
    sample(network, tokenizer, 1.0, config.for_problem(task.problem).diffusion, zero_filled, task.problem,
           torch.Generator().manual_seed(0))
    return network.inputs[0]


def test_the_conditioning_reaching_the_diffuser_changes_only_as_each_switch_says(tiny):
    task = tiny.make_task("missing-modality")
    torch.manual_seed(0)
    tokenizer = stage1.freeze(stage1.build_tokenizer(PRESETS["smoke"].brain.tokenizer, task))
    subjects = tiny.make_subjects(task, 2)
    mask = torch.from_numpy(np.stack([draw_availability(np.random.default_rng(i), task.problem, task.channels, 16, 2)
                                      for i in range(2)]))
    zero_filled = Batch.from_complete(subjects.stack(), mask, list(subjects.subject_ids)).image
    full = _received("copedit", tokenizer, task, zero_filled)["prompts"]
    assert full.shape[1] == 3 and all(torch.count_nonzero(full[:, i]) > 0 for i in range(3))
    for index, prompt in enumerate(("count", "position", "assessment")):
        received = _received(f"copedit-no-{prompt}", tokenizer, task, zero_filled)
        assert set(received) == {"prompts"}
        assert torch.count_nonzero(received["prompts"][:, index]) == 0, f"the {prompt} prompt is zeroed"
        others = [i for i in range(3) if i != index]
        assert torch.equal(received["prompts"][:, others], full[:, others]), "and nothing else changes"
    assert _received("copedit-no-prompts", tokenizer, task, zero_filled) == {}
    code = _received("copedit-maskcode", tokenizer, task, zero_filled)
    assert set(code) == {"mask_code"} and torch.equal(code["mask_code"], mask[:, :, 0].float())


def test_a_stage_two_variant_reads_copedit_s_tokenizer_and_never_retrains_it(tiny, tmp_path, monkeypatch):
    task = tiny.make_task("missing-modality")
    train = tiny.make_subjects(task, 4)
    folder = tokenizer_folder(tmp_path / "shared", "smoke", 0)
    stage1.train_tokenizer(PRESETS["smoke"].brain.tokenizer, task, TrainImages(train, task), folder, 0)
    written = (folder / "tokenizer.pt").stat().st_mtime_ns, (folder / "stage1.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("stage I trained again")

    monkeypatch.setattr(stage1, "build_discriminator", no_training)
    variant = _variant("copedit-no-count")(_variant("copedit-no-count").presets["smoke"], seed=0)
    variant.shared_dir = tmp_path / "shared"
    variant.fit(train, task, tmp_path / "work", None)
    assert ((folder / "tokenizer.pt").stat().st_mtime_ns, (folder / "stage1.csv").read_text()) == written
    assert variant.report()["tokenizer"]["tokenizer_hash"] == \
        torch.load(folder / "tokenizer.pt", weights_only=True)["facts"]["tokenizer_hash"]


def test_a_second_run_waits_for_the_tokenizer_folder_lock(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(stage1, "_train_or_load_tokenizer", lambda *args: events.append("trained") or (None, {}))
    folder = tmp_path / "copedit-tokenizer" / "smoke-seed0"
    with file_lock(folder.with_name(f".{folder.name}.lock")):
        worker = threading.Thread(target=stage1.train_tokenizer, args=(None, None, None, folder, 0))
        worker.start()
        time.sleep(0.3)
        assert events == [], "the second run waits while the first holds the lock"
    worker.join(timeout=10)
    assert events == ["trained"]


# -- prompt edits --------------------------------------------------------------------------------------------
def test_prompt_edits_are_deterministic_and_never_self_donations():
    prompts = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(1))
    first = interventions(prompts, seeded_rng("edits", 0))
    second = interventions(prompts, seeded_rng("edits", 0))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert torch.allclose(first["random (matched norm)"].norm(dim=-1), prompts.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(first["random (matched norm)"], prompts)
    assert torch.count_nonzero(first["zeroed"]) == 0
    assert torch.equal(first["swap count<->position"][:, 0], prompts[:, 1])
    assert torch.equal(first["swap count<->position"][:, 2], prompts[:, 2])
    donors = cyclic_donors(np.random.default_rng(3).permutation(5))
    assert not np.any(donors == np.arange(5)) and sorted(donors) == list(range(5))
    assert torch.equal(corrupt(prompts, (1,), np.array([], dtype=int), donors), prompts)
    edited = corrupt(prompts, (1,), np.array([2]), donors)
    assert torch.equal(edited[2, 1], prompts[donors[2], 1]) and torch.equal(edited[2, [0, 2]], prompts[2, [0, 2]])
    assert torch.equal(edited[[0, 1, 3, 4]], prompts[[0, 1, 3, 4]])


def test_attention_probabilities_reproduce_the_block_output():
    torch.manual_seed(0)
    for axis_name in ("element", "depth"):
        attention = FactorisedAttention(8, 2, (axis_name,))
        x = torch.randn(2, 3, 2 * 4, 8)
        grid = (2, 2, 2)
        probabilities = attention_probabilities(attention, x, grid)
        assert torch.allclose(probabilities.sum(-1), torch.ones(()))
        axis = 1 + TOKEN_AXES.index(axis_name)
        v = attention.qkv(x).view(2, 3, 2, 4, 3, 2, 4)[..., 2, :, :].movedim(axis, -2)
        rebuilt = attention.proj((probabilities @ v).movedim(-2, axis).reshape(2, 3, 8, 8))
        assert torch.allclose(rebuilt, attention(x, grid), atol=1e-5)
    full = FactorisedAttention(8, 2, TOKEN_AXES)  # a DiT block: one sequence of all E * d * p tokens
    probabilities = attention_probabilities(full, x, grid)
    assert probabilities.shape == (2, 2, 24, 24) and torch.allclose(probabilities.sum(-1), torch.ones(()))
    v = full.qkv(x).view(2, 24, 3, 2, 4)[:, :, 2].transpose(1, 2)  # (B, heads, E * d * p, head_dim)
    rebuilt = full.proj((probabilities @ v).transpose(1, 2).reshape(2, 3, 8, 8))
    assert torch.allclose(rebuilt, full(x, grid), atol=1e-5)


@pytest.fixture(scope="module")
def fitted_brain(tmp_path_factory):
    from copedit_tiny import make_subjects, make_task

    task = make_task("missing-modality")
    method = CoPeDiT(CoPeDiT.presets["smoke"], seed=0)
    method.fit(make_subjects(task, 6), task, tmp_path_factory.mktemp("work"), None)
    subjects = make_subjects(task, 2, first=6)
    masks = torch.from_numpy(np.stack([draw_availability(np.random.default_rng(i), task.problem, task.channels, 16,
                                                         1 + i)
                                       for i in range(2)]))
    return method, Batch.from_complete(subjects.stack(), masks, list(subjects.subject_ids))


def test_own_prompts_reproduce_synthesis_and_shuffled_prompts_change_it(fitted_brain):
    method, batch = fitted_brain
    prompts = method.prompts_of(batch)
    torch.manual_seed(11)
    plain = method.synthesize(batch)
    torch.manual_seed(11)
    assert torch.equal(method.synthesize_with_prompts(batch, prompts), plain)
    torch.manual_seed(11)
    swapped = method.synthesize_with_prompts(batch, prompts.flip(0))
    missing = ~batch.availability_mask[..., None, None].expand_as(batch.image)
    assert not torch.equal(swapped[missing], plain[missing]), "another subject's prompts change the prediction"


def test_the_attention_recorder_sees_every_modal_block_at_every_ddim_step(fitted_brain):
    method, batch = fitted_brain
    with AttentionRecorder(method.network, "modal") as recorder:
        torch.manual_seed(0)
        method.synthesize(batch)
    maps = recorder.maps()
    modal = [b for b in method.network.blocks if b.kind == "modal"]
    assert len(maps) == len(modal) > 0
    assert set(recorder.calls.values()) == {method.config.brain.diffusion.sample_steps}
    for weights in maps.values():
        assert weights.shape == (4, 4) and torch.allclose(weights.sum(-1), torch.ones(4), atol=1e-5)
    assert all(len(b.attn._forward_pre_hooks) == 0 for b in modal), "the hooks are removed on exit"


def test_every_diffuser_of_the_variants_has_the_name_its_progress_line_shows():
    from mribench_copedit.presets import DIFFUSER_NAMES, DiffusionStageConfig
    from mribench_copedit.variants import VARIANTS

    diffusers = {DiffusionStageConfig.diffuser} | {v.switches["diffuser"] for v in VARIANTS if "diffuser" in v.switches}
    assert diffusers == set(DIFFUSER_NAMES) and DIFFUSER_NAMES["dit3d"] == "DiT-3D"
