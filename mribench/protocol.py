"""Protocol: deterministic splits, per-subject availability (which elements are observed) and the Batch handed to
methods.

Everything here is a pure function of sorted subject IDs, names and seeds (hash-seeded generators; never
Python's ``hash`` nor file-system order), so every machine and process draws the same split and patterns.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mribench.errors import MribenchError
from mribench.seeding import derive_seed, seeded_rng  # noqa: F401 - re-exported: the protocol's generators
from mribench.tasks import TaskSpec


# -- splits --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Split:
    """Disjoint subject IDs: ``train`` (what methods fit on), ``validation`` (carved from the protocol's training
    subjects; for presets, curves and tuning) and ``test`` (the leaderboard only)."""

    train: list[str]
    validation: list[str]
    test: list[str]

    @property
    def hash(self) -> str:
        """SHA-256 of the sorted test subject IDs (one per line)."""
        return _ids_hash(self.test)

    @property
    def validation_hash(self) -> str:
        """SHA-256 of the sorted validation subject IDs (one per line)."""
        return _ids_hash(self.validation)

    def without(self, bad: set[str]) -> "Split":
        """The same split with the ``bad`` subjects left out."""
        return Split(*([s for s in ids if s not in bad] for ids in (self.train, self.validation, self.test)))


def _ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def make_split(task: TaskSpec, subject_ids: list[str]) -> Split:
    ids = sorted(subject_ids)
    if len(set(ids)) != len(ids):
        raise MribenchError(f"task {task.name}: duplicate subject IDs in dataset {task.dataset}")
    spec = task.split
    if spec.rule == "ratio":
        n_test = int(round(len(ids) * spec.test_fraction))
        if n_test < 1 or n_test >= len(ids):
            raise MribenchError(
                f"task {task.name}: {len(ids)} subjects are too few for a test fraction of {spec.test_fraction}"
            )
        n_train = len(ids) - n_test
    else:
        n_train, n_test = spec.train, spec.test
        if len(ids) < n_train + n_test:
            raise MribenchError(
                f"task {task.name}: the protocol needs {n_train} + {n_test} subjects, dataset {task.dataset} "
                f"has {len(ids)}"
            )
    order = np.random.default_rng(spec.seed).permutation(len(ids))
    test = sorted(ids[i] for i in order[:n_test])
    protocol_train = sorted(ids[i] for i in order[n_test:n_test + n_train])
    if len(protocol_train) < 2:
        raise MribenchError(f"task {task.name}: {len(protocol_train)} training subject(s) cannot be split into "
                            "train and validation; the protocol needs at least 2")
    n_validation = min(len(protocol_train) - 1, max(1, int(round(len(protocol_train) * spec.validation_fraction))))
    carve = seeded_rng("mribench-validation", spec.seed).permutation(len(protocol_train))
    validation = sorted(protocol_train[i] for i in carve[:n_validation])
    train = sorted(protocol_train[i] for i in carve[n_validation:])
    return Split(train=train, validation=validation, test=test)


# -- availability: which elements (modalities / slices) are observed ------------------------------------------
def availability_from_missing(problem: str, n_channels: int, n_slices: int, missing: list[int] | int,
                              run_start: int | None = None) -> np.ndarray:
    """Availability (C, D) bool: the listed modalities missing, or a run of ``missing`` slices from ``run_start``."""
    mask = np.ones((n_channels, n_slices), dtype=bool)
    if problem == "missing-modality":
        mask[list(missing), :] = False
    else:
        mask[:, run_start:run_start + int(missing)] = False
    return mask


def draw_availability(rng: np.random.Generator, problem: str, n_channels: int, n_slices: int, k: int) -> np.ndarray:
    """Availability (C, D) with exactly k missing elements: k of C modalities uniformly, or a run of k slices."""
    if problem == "missing-modality":
        return availability_from_missing(problem, n_channels, n_slices,
                                         sorted(rng.choice(n_channels, k, replace=False)))
    start = int(rng.integers(0, n_slices - k + 1))
    return availability_from_missing(problem, n_channels, n_slices, k, run_start=start)


def parse_missing(task: TaskSpec, text: str) -> np.ndarray:
    """The availability (C, D) a user states in words: brain, the missing modality names comma-separated
    (``T1ce,FLAIR``, case-insensitive); cardiac, the missing run of slices ``FIRST-LAST`` (0-based, inclusive,
    ``12-19``). The count must lie in the task's training range (what one trained model serves); anything else is
    a one-line :class:`MribenchError`."""
    lo, hi = task.train_missing
    slices = task.preprocess.shape[0]
    if task.problem == "missing-modality":
        names = [part.strip() for part in text.split(",")]
        by_lower = {name.lower(): index for index, name in enumerate(task.element_names)}
        unknown = [name for name in names if name.lower() not in by_lower]
        if unknown:
            raise MribenchError(f"--missing {text!r}: {', '.join(repr(n) for n in unknown)} is not a modality of task "
                                f"{task.name} (its modalities: {', '.join(task.element_names)})")
        missing = sorted({by_lower[name.lower()] for name in names})
        if len(missing) != len(names):
            raise MribenchError(f"--missing {text!r}: a modality is named twice")
        count = len(missing)
        availability = availability_from_missing(task.problem, task.channels, slices, missing)
    else:
        first, dash, last = text.partition("-")
        if not (dash and first.strip().isdigit() and last.strip().isdigit()):
            raise MribenchError(f"--missing {text!r}: task {task.name} misses a run of slices; state it as "
                                f"FIRST-LAST (0-based, inclusive), e.g. 0-{lo - 1}")
        first_slice, last_slice = int(first), int(last)
        if not first_slice <= last_slice < slices:
            raise MribenchError(f"--missing {text!r}: task {task.name} has slices 0-{slices - 1}; FIRST-LAST must "
                                "lie within them with FIRST <= LAST")
        count = last_slice - first_slice + 1
        availability = availability_from_missing(task.problem, task.channels, slices, count, run_start=first_slice)
    if not lo <= count <= hi:
        what = "modalities" if task.problem == "missing-modality" else "slices"
        raise MribenchError(f"--missing {text!r}: {count} missing {what} is outside the range {lo}-{hi} task "
                            f"{task.name} is trained for")
    return availability


def describe_missing(task: TaskSpec, availability: np.ndarray) -> str:
    """What an availability (C, D) misses, as :func:`parse_missing` reads it: ``T1ce,FLAIR`` or ``12-19``."""
    if task.problem == "missing-modality":
        return ",".join(name for name, seen in zip(task.element_names, availability.all(axis=1)) if not seen)
    missing = np.flatnonzero(~availability[0])
    return f"{missing[0]}-{missing[-1]}" if len(missing) else ""


def evaluation_availability(task: TaskSpec, subject_id: str) -> np.ndarray:
    """The availability (C, D) one subject is evaluated with: a function of (task, subject, pattern seed)."""
    rng = seeded_rng("mribench-pattern", task.name, subject_id, task.pattern_seed)
    return draw_availability(rng, task.problem, task.channels, task.preprocess.shape[0], task.missing)


def draw_training_availability(rng: np.random.Generator, task: TaskSpec, batch_size: int) -> torch.Tensor:
    """Dual random sampling for training: draw k in ``train_missing``, then which elements are missing → (B, C, D)."""
    lo, hi = task.train_missing
    masks = [draw_availability(rng, task.problem, task.channels, task.preprocess.shape[0],
                               int(rng.integers(lo, hi + 1)))
             for _ in range(batch_size)]
    return torch.from_numpy(np.stack(masks))


def infer_availability(zero_filled: torch.Tensor, problem: str) -> torch.Tensor:
    """Availability (B, C, D) bool read off a zero-filled image (B, C, D, H, W) alone, without the mask.

    Brain: a modality is missing iff its whole channel is exactly zero; cardiac: a slice iff it is exactly zero.
    Preprocessed observed content is never exactly zero everywhere (percentile-normalised anatomy), so methods that
    must not read ``Batch.availability_mask`` (CoPeDiT, the +Prompts baselines) recover it this way.
    """
    nonzero_slices = zero_filled.abs().amax(dim=(3, 4)) > 0  # (B, C, D)
    if problem == "missing-modality":
        return nonzero_slices.any(dim=2, keepdim=True).expand_as(nonzero_slices)
    return nonzero_slices


def missing_count(availability_mask: torch.Tensor, problem: str) -> torch.Tensor:
    """Number of missing elements per sample (B,) from an availability mask (B, C, D)."""
    if problem == "missing-modality":
        return (~availability_mask.all(dim=2)).sum(dim=1)
    return (~availability_mask.all(dim=1)).sum(dim=1)


# -- batch ---------------------------------------------------------------------------------------------------
def expand_mask(availability_mask: torch.Tensor, volume_shape: torch.Size) -> torch.Tensor:
    """(B, C, D) mask → (B, C, D, H, W) by broadcasting over the in-plane axes."""
    return availability_mask[..., None, None].expand(volume_shape)


@dataclass
class Batch:
    """What a method sees at synthesis time.

    image: (B, C, D, H, W) float32 in [0, 1], missing elements set to 0.
    availability_mask: (B, C, D) bool, True where observed.
    subject_ids: B subject IDs.
    meta: ``affine`` (B, 4, 4) float64 of the preprocessed grid; ``label`` (B, D, H, W) int64 when labels exist.
    """

    image: torch.Tensor
    availability_mask: torch.Tensor
    subject_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_complete(cls, complete: torch.Tensor, availability_mask: torch.Tensor, subject_ids: list[str],
                      meta: dict[str, Any] | None = None) -> "Batch":
        """Zero the missing elements of complete volumes (B, C, D, H, W)."""
        if complete.ndim != 5 or availability_mask.shape != complete.shape[:3]:
            raise ValueError(f"volumes {tuple(complete.shape)} and mask {tuple(availability_mask.shape)} disagree")
        image = complete * expand_mask(availability_mask, complete.shape).to(complete.dtype)
        return cls(image=image, availability_mask=availability_mask.bool(), subject_ids=list(subject_ids),
                   meta=meta or {})

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.image.to(device), self.availability_mask.to(device), self.subject_ids, self.meta)
