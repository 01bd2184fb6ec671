"""The step hook of the shared baseline training loop: when it fires, what synthesize sees, and that it changes
nothing about training."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from baselines_tiny import make_batch, make_subjects, make_task
from mribench.method import StepHook
from mribench.training import seed_everything
from mribench_baselines.m2dn import M2DN, M2DNPrompts
from mribench_baselines.mmgan import MMGAN

pytestmark = pytest.mark.usefixtures("fake_prompt_provider")  # M2DNPrompts gets the stand-in tokenizer


def _fit(cls, problem, workdir, hook=None, steps=12):
    """Fit a smoke-size model; ``hook(method)`` builds the step hook of the method about to be fitted."""
    task, subjects = make_task(problem), make_subjects(problem, 6)
    seed_everything(0)
    method = cls(dataclasses.replace(cls.presets["smoke"], steps=steps, save_every=5), seed=0)
    method.shared_dir = workdir / "shared"
    method.step_hook = hook(method) if hook else None
    method.fit(subjects, task, workdir / "work", None)
    return method


@pytest.mark.parametrize("cls", [MMGAN, M2DN, M2DNPrompts])
def test_hook_fires_at_the_asked_steps_in_eval_mode_and_leaves_training_unchanged(cls, tmp_path):
    seen = []
    subjects = make_subjects("missing-modality", 6)

    def watch(method):
        def callback(step, seconds):
            batch, complete = make_batch(method.task, subjects)
            output = method.synthesize(batch)
            assert output.shape == complete.shape and torch.isfinite(output).all()
            assert not any(net.training for net in method.nets.values())
            seen.append((step, seconds, torch.is_inference_mode_enabled()))
        return StepHook(frozenset({1, 7, 12, 99}), callback)

    hooked = _fit(cls, "missing-modality", tmp_path / "hooked", watch)
    assert all(net.training is False for net in hooked.nets.values())  # eval after fit, as before
    assert [s for s, _, _ in seen] == [1, 7, 12]
    assert all(inference for _, _, inference in seen)
    seconds = [t for _, t, _ in seen]
    assert 0 < seconds[0] < seconds[1] < seconds[2]
    plain = _fit(cls, "missing-modality", tmp_path / "plain")
    for name, net in plain._inference_nets().items():
        for (key, a), b in zip(net.state_dict().items(), hooked._inference_nets()[name].state_dict().values()):
            assert torch.equal(a, b), f"{cls.name}: {name}.{key} differs when the hook runs"


def test_hook_fires_again_for_steps_repeated_after_a_resume(tmp_path):
    """Killed after step 7 (checkpoint at 5): the resumed fit repeats 6-7 and fires the hook at 7 again."""
    class Killed(Exception):
        pass

    fired = []

    def kill_at_seven(step, seconds):
        fired.append(step)
        if step == 7:
            raise Killed

    with pytest.raises(Killed):
        _fit(MMGAN, "missing-slice", tmp_path, lambda method: StepHook(frozenset({3, 7}), kill_at_seven))
    _fit(MMGAN, "missing-slice", tmp_path, lambda method: StepHook(frozenset({3, 7, 12}), lambda s, t: fired.append(s)))
    assert fired == [3, 7, 7, 12]
