"""What the baseline tests share: tiny synthetic tasks and subjects (smooth, correlated elements, so learning is
measurable), fitting a method on them, the synthesis contract, and a stand-in prompt provider."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mribench.data.base import Subject, SubjectSet
from mribench.hookspecs import hookimpl
from mribench.protocol import Batch, evaluation_availability
from mribench.tasks import TaskSpec
from mribench.training import seed_everything

SHAPE = (8, 16, 16)


def make_task(problem: str, missing: int = 1, shape: tuple[int, int, int] = SHAPE) -> TaskSpec:
    """A small brain (C=3) or cardiac (D slices) task."""
    brain = problem == "missing-modality"
    return TaskSpec.model_validate({
        "name": f"tiny-{'brain' if brain else 'cardiac'}", "version": 1, "description": "test", "dataset": "tiny",
        "problem": problem, "elements": ["A", "B", "C"] if brain else shape[0], "missing": missing,
        "train_missing": [1, 2] if brain else [2, 4], "split": {"rule": "ratio", "test_fraction": 0.25},
        "preprocess": {"shape": list(shape)}, "metrics": [{"name": "psnr"}]})


def _volume(rng: np.random.Generator, problem: str, shape: tuple[int, int, int]) -> np.ndarray:
    d, h, w = shape
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, d), np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    radius = 0.5 + 0.3 * rng.random()
    shift = 0.2 * rng.standard_normal(2)
    blob = np.clip(1.2 - ((yy - shift[0]) ** 2 + (xx - shift[1]) ** 2 + 0.3 * zz ** 2) / radius ** 2, 0, 1)
    if problem == "missing-modality":  # three contrasts: bright, inverted inside, squared
        return np.stack([blob, (blob > 0) * (1 - 0.7 * blob), blob ** 2]).astype(np.float32)
    return blob[None].astype(np.float32)


def make_subjects(problem: str, n: int, seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> SubjectSet:
    rng = np.random.default_rng(seed)
    subjects = {f"s{i:02d}": Subject(f"s{i:02d}", _volume(rng, problem, shape), np.eye(4)) for i in range(n)}
    return SubjectSet(sorted(subjects), subjects.__getitem__)


def make_batch(task: TaskSpec, subjects: SubjectSet, index: int = 0) -> tuple[Batch, torch.Tensor]:
    """A one-subject test batch and its complete volume (1, C, D, H, W)."""
    subject = subjects[index]
    complete = torch.from_numpy(subject.image)[None]
    mask = torch.from_numpy(evaluation_availability(task, subject.subject_id))[None]
    return Batch.from_complete(complete, mask, [subject.subject_id], {"affine": torch.eye(4)[None]}), complete


def fitted(cls, problem: str, tmp_path, config=None, n_subjects: int = 6, shared: bool = True):
    """A method fitted on ``n_subjects`` tiny subjects (smoke preset unless ``config``), with its task and subjects."""
    task, subjects = make_task(problem), make_subjects(problem, n_subjects)
    seed_everything(0)
    method = cls(config or cls.presets["smoke"], seed=0)
    method.shared_dir = tmp_path / "shared" if shared else None
    method.fit(subjects, task, tmp_path / cls.name.replace("+", "_"), None)
    return method, task, subjects


def missing_error(method, batch: Batch, complete: torch.Tensor) -> float:
    """Mean absolute error of ``method``'s synthesis over the missing elements of ``batch``."""
    torch.manual_seed(0)
    out = method.synthesize(batch)
    missing = ~batch.availability_mask[..., None, None].expand_as(complete)
    return float((out - complete)[missing].abs().mean())


def check_training_helps(method, untrained_like, task: TaskSpec, subjects: SubjectSet, n: int) -> None:
    """On the first ``n`` subjects, the fitted method's missing-element error is below 0.9 x that of
    ``untrained_like(method)`` (the same method freshly initialised)."""
    errors = [(missing_error(method, *make_batch(task, subjects, i)),
               missing_error(untrained_like(method), *make_batch(task, subjects, i))) for i in range(n)]
    trained, untrained = (sum(e[k] for e in errors) for k in (0, 1))
    assert trained < 0.9 * untrained


def check_synthesis_contract(method, task: TaskSpec, subjects: SubjectSet) -> None:
    """Float32 volumes of the input's shape in [0, 1], observed elements kept, missing ones synthesised."""
    batch, complete = make_batch(task, subjects)
    out = method.synthesize(batch)
    assert out.shape == complete.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    observed = batch.availability_mask[..., None, None].expand_as(complete)
    assert torch.equal(out[observed], batch.image[observed])
    assert not torch.equal(out[~observed], batch.image[~observed])


# -- a stand-in for copedit's prompt provider ----------------------------------------------------------------------
class FakeTokenizer(nn.Module):
    """Stands in for CoPeVAE: prompts (B, 3, P) from which elements are present and their mean intensities."""

    prompt_dim = 6

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(2, 3 * self.prompt_dim, generator=generator), requires_grad=False)

    def prompts(self, image: torch.Tensor) -> torch.Tensor:
        per_element = image.flatten(3).mean(3)  # (B, C, D)
        features = torch.stack([(per_element > 0).float().mean((1, 2)), per_element.mean((1, 2))], 1)
        present = (per_element > 0).float().flatten(1)
        prompts = (features @ self.proj).view(-1, 3, self.prompt_dim)
        return prompts + present[:, : self.prompt_dim].sum(1, keepdim=True)[..., None] * 0.1


class FakePromptProvider:
    """Registered as the "copedit" prompt provider: hands out :class:`FakeTokenizer` (the real CoPeVAE provider has
    its own tests)."""

    name = "copedit"

    @classmethod
    def frozen_tokenizer(cls, train, task, preset, seed, shared_dir, progress=None) -> FakeTokenizer:
        return FakeTokenizer()

    @classmethod
    def restore_tokenizer(cls, state, task, preset) -> FakeTokenizer:
        tokenizer = FakeTokenizer()
        tokenizer.load_state_dict(state)
        return tokenizer


class FakePromptsPlugin:
    @hookimpl
    def mribench_register_prompt_providers(self) -> list[type]:
        return [FakePromptProvider]
