"""The Method base class that every synthesis method (plugin) implements.

Methods know nothing of evaluators, results or the CLI. The runner builds a method from a preset config,
calls ``fit`` on complete training volumes (the method draws its own missing patterns, e.g. with
:func:`mribench.protocol.draw_training_availability`), saves it, and calls ``synthesize`` on test batches.

**The step hook** (used by ``mribench curve``): a caller may set ``method.step_hook`` to a :class:`StepHook` before
``fit``. A method whose class sets ``calls_step_hook = True`` promises that its training loop calls
:meth:`Method.after_training_step` after every optimisation step of the stage the hook follows (steps counted from
1 to :meth:`Method.hooked_steps`), passing the training wall time so far (excluding time spent in the hook, and
carried across resumes). At the hook's steps the base class then

1. saves the torch, numpy and Python RNG states,
2. enters :meth:`Method.synthesis_ready` (the method's own context manager: networks in eval mode, the weights
   ``synthesize`` would use after fit, e.g. the EMA copy; training mode restored on exit),
3. calls ``hook.callback(step, training_seconds)`` under ``torch.inference_mode()``, inside which
   ``synthesize`` works as after fit,
4. restores the RNG states, so a hooked fit trains exactly as an unhooked one.

A loop that resumes from a checkpoint fires the hook again for steps it repeats; callbacks must be idempotent.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch

from mribench.data.base import SubjectSet
from mribench.errors import MribenchError
from mribench.protocol import Batch
from mribench.tasks import TaskSpec


@dataclass(frozen=True)
class StepHook:
    """Called by a training loop at ``steps`` (1-based counts of the hooked stage's steps), see the module docs.

    ``callback(step, training_seconds)``: ``training_seconds`` is the fit's wall time up to this step, hook calls
    excluded.
    """

    steps: frozenset[int]
    callback: Callable[[int, float], None]


@dataclass(frozen=True)
class AblationRow:
    """One row a method fills in an ablation table (``mribench leaderboard``'s paper layout): the ``table`` it belongs
    to (its title, e.g. "Diffuser"), its ``row`` label there, ``order`` (rows by order; tables by their first row's
    order) and ``reported``: the paper's numbers for that row, reference task name → metric → value (e.g.
    ``{"brats-missing1": {"psnr": 27.35}}``; a phantom task reads its real twin's)."""

    table: str
    row: str
    order: int
    reported: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AblationRow":
        return cls(str(data["table"]), str(data["row"]), int(data["order"]),
                   {task: dict(values) for task, values in (data.get("reported") or {}).items()})


@dataclass(frozen=True)
class MethodDescription:
    """How tables show a method, written into every result (``result.json``'s ``method``) so tables need no plugin:
    its registry ``name``, ``display_name``, ``family`` and the ``ablation_rows`` it fills (see :class:`Method`)."""

    name: str
    display_name: str
    family: str
    ablation_rows: tuple[AblationRow, ...] = ()


class Method:
    """Base class of a synthesis method.

    Class attributes:
        name: registry key (``mribench run --method NAME``).
        version: bump when a change alters the numbers.
        problems: the problems it supports (``missing-modality``, ``missing-slice``).
        presets: ``smoke`` (tests, seconds), ``cpu`` (minutes on a laptop), ``paper`` (the paper's settings);
            each a dataclass instance.
        problem_presets: ``{preset: {problem: config}}``, the config a preset trains with on one problem's tasks
            when its validation curve there calls for other settings than the default (e.g. more steps on the
            cardiac twin); a run resolves its config with :meth:`preset_config`, so a replacement on one problem
            leaves every other problem's config, and config hash, as it was.
        reads_mask: whether ``synthesize`` reads ``batch.availability_mask`` (CoPeDiT does not).
        display_name: the name tables show (the paper's spelling, e.g. ``MMGAN``); written into every result, so
            tables need no plugin. Not inherited: a subclass registered under its own ``name`` shows that name unless
            it declares its own.
        family: the leaderboard's row group in the paper layout: ``floor``, ``gan`` (GAN/transformer),
            ``diffusion``, ``proposed`` (CoPeDiT), ``ablation`` (a variant of a method with one switch changed:
            listed and ranked under "Ablations", left out of ``make leaderboard`` unless asked for) or ``other``.
        ablation_rows: the rows of the paper's ablation tables this method fills (:class:`AblationRow`; the full
            method fills one row of each table, a variant the row of what it changes); written into every result.
        calls_step_hook: whether ``fit`` calls :meth:`after_training_step` (see the module docs); ``mribench curve``
            refuses methods that do not.
        in_default_plan: whether ``make leaderboard`` (``mribench reproduce`` without ``--method``) runs it; methods
            too slow for the plan's time budget set False and run only when named with ``--method``.
        reuses_models_of: methods whose published models (in the runner's shared folder) ``fit`` reads, training
            them itself when absent (ControlNet reads its LDM); plans run those methods first, so nothing trains twice.

    Shapes: ``fit`` reads subjects whose ``image`` is (C, D, H, W) in [0, 1]; ``synthesize`` receives a
    :class:`~mribench.protocol.Batch` (``image`` (B, C, D, H, W) with the missing elements zeroed,
    ``availability_mask`` (B, C, D), True = observed) and returns (B, C, D, H, W). A minimal method that fills each
    missing modality with its mean training intensity:

    >>> import tempfile
    >>> import numpy as np
    >>> from dataclasses import dataclass
    >>> from mribench.data.base import Subject
    >>> from mribench.protocol import Batch
    >>> @dataclass(frozen=True)
    ... class MeanConfig:
    ...     subjects: int
    >>> class ModalityMean(Method):
    ...     name, display_name, family = "modality-mean", "Modality mean", "floor"
    ...     problems = frozenset({"missing-modality"})
    ...     presets = {"smoke": MeanConfig(2), "cpu": MeanConfig(50), "paper": MeanConfig(0)}
    ...     def fit(self, train, task, workdir, progress):
    ...         images = [train[i].image for i in range(min(len(train), self.config.subjects or len(train)))]
    ...         self.means = torch.tensor(np.mean([image.mean(axis=(1, 2, 3)) for image in images], axis=0))  # (C,)
    ...     def synthesize(self, batch):
    ...         observed = batch.availability_mask[:, :, :, None, None]  # (B, C, D, 1, 1)
    ...         return torch.where(observed, batch.image, self.means[None, :, None, None, None].float())
    ...     def state(self):
    ...         return {"means": self.means}
    ...     def load_state(self, state, task):
    ...         self.means = state["means"]
    >>> images = {"a": np.full((2, 4, 8, 8), 0.2, np.float32), "b": np.full((2, 4, 8, 8), 0.4, np.float32)}
    >>> train = SubjectSet(["a", "b"], lambda sid: Subject(sid, images[sid], np.eye(4)))
    >>> method = ModalityMean(ModalityMean.presets["smoke"], seed=0)
    >>> method.fit(train, task=None, workdir=None, progress=None)
    >>> complete = torch.full((1, 2, 4, 8, 8), 0.9)
    >>> batch = Batch.from_complete(complete, torch.tensor([[[True] * 4, [False] * 4]]), ["c"])  # channel 1 missing
    >>> output = method.synthesize(batch)
    >>> tuple(output.shape), round(output[0, 0].max().item(), 4), round(output[0, 1].max().item(), 4)
    ((1, 2, 4, 8, 8), 0.9, 0.3)
    >>> path = Path(tempfile.mkdtemp()) / "model.pt"
    >>> method.save(path)  # the checkpoint the runner keeps; load refuses another method or config
    >>> restored = ModalityMean.load(path, ModalityMean.presets["smoke"], seed=0, task=None)
    >>> torch.equal(restored.means, method.means)
    True
    >>> ModalityMean.result_description()
    MethodDescription(name='modality-mean', display_name='Modality mean', family='floor', ablation_rows=())
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    problems: ClassVar[frozenset[str]] = frozenset({"missing-modality", "missing-slice"})
    presets: ClassVar[dict[str, Any]] = {}
    problem_presets: ClassVar[dict[str, dict[str, Any]]] = {}
    reads_mask: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    family: ClassVar[str] = "other"
    ablation_rows: ClassVar[tuple[AblationRow, ...]] = ()
    calls_step_hook: ClassVar[bool] = False
    in_default_plan: ClassVar[bool] = True
    reuses_models_of: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "display_name" not in cls.__dict__:
            cls.display_name = cls.name  # e.g. an ablation variant of CoPeDiT is shown under its own name

    def __init__(self, config: Any, seed: int = 0):
        self.config = config
        self.seed = seed
        # Set by the runner before ``fit``: a folder shared by every method trained on this dataset and preset,
        # for artefacts several methods reuse (e.g. CoPeDiT's frozen tokenizer, used by the +Prompts baselines).
        self.shared_dir: Path | None = None
        # Set by the runner before ``fit``: the protocol's validation subjects (never trained on), for what a method
        # reports about itself (e.g. CoPeDiT's tokenizer reconstruction); None when the caller has none.
        self.validation: SubjectSet | None = None
        # Set by a caller before ``fit`` to watch training (``mribench curve``); see the module docs.
        self.step_hook: StepHook | None = None
        # Wall time of the fit that made this model, set by the runner and kept in the checkpoint (None if unknown).
        self.fit_seconds: float | None = None

    # -- availability and description -------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this method cannot run in this installation (e.g. a plugin it needs is absent), else None."""
        return None

    @classmethod
    def result_description(cls) -> MethodDescription:
        """What a result records about how to show this method (see :class:`MethodDescription`)."""
        return MethodDescription(cls.name, cls.display_name or cls.name, cls.family, tuple(cls.ablation_rows))

    @classmethod
    def preset_config(cls, preset: str, problem: str) -> Any:
        """The config ``preset`` trains with on ``problem``'s tasks: its ``problem_presets`` entry, else the preset.
        Raises KeyError for an unknown preset."""
        return cls.problem_presets.get(preset, {}).get(problem, cls.presets[preset])

    @classmethod
    def describe(cls, preset: str, task: TaskSpec | None = None) -> dict[str, Any]:
        """Extra facts shown by ``mribench methods show`` (e.g. parameter counts of the preset's networks)."""
        return {}

    # -- the contract -----------------------------------------------------------------------------------
    def fit(self, train: SubjectSet, task: TaskSpec, workdir: Path, progress) -> None:
        """Learn from complete training volumes. ``workdir`` is private and survives interruption: resume there."""
        raise NotImplementedError

    def synthesize(self, batch: Batch) -> torch.Tensor:
        """Return complete volumes (B, C, D, H, W) with the missing part filled."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted method: tensors, numbers, strings, lists and dicts only."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any], task: TaskSpec) -> None:
        """Restore what :meth:`state` returned."""
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        """Facts about the fitted model worth keeping in the result (e.g. tokenizer reconstruction PSNR)."""
        return {}

    # -- the step hook (see the module docs) ----------------------------------------------------------------
    @classmethod
    def hooked_steps(cls, config: Any) -> int:
        """How many steps the hooked training stage runs under ``config`` (default: ``config.steps``)."""
        return int(config.steps)

    @classmethod
    def with_hooked_steps(cls, config: Any, steps: int) -> Any:
        """``config`` with the hooked stage running ``steps`` steps, everything else (schedules included) alike."""
        return dataclasses.replace(config, steps=steps)

    def synthesis_ready(self) -> AbstractContextManager[None]:
        """During ``fit``: a context in which ``synthesize`` works as after fit; the training state is restored on
        exit. Methods with ``calls_step_hook`` implement it (e.g. with :func:`contextlib.contextmanager`)."""
        raise NotImplementedError(f"method {self.name} does not support the step hook")

    def after_training_step(self, step: int, training_seconds: float) -> None:
        """Training loops call this after each step of the hooked stage; fires ``step_hook`` at its steps."""
        hook = self.step_hook
        if hook is None or step not in hook.steps:
            return
        from mribench.training import rng_state, set_rng_state

        saved = rng_state()
        try:
            with self.synthesis_ready(), torch.inference_mode():
                hook.callback(step, training_seconds)
        finally:
            set_rng_state(saved)

    # -- training facts (recorded in every result, shown in the leaderboard footnote) --------------------------
    @classmethod
    def training_steps(cls, config: Any) -> int | None:
        """Optimisation steps of a fit under ``config`` (all stages), None for methods that take no steps."""
        steps = getattr(config, "steps", None)
        return None if steps is None else int(steps)

    @classmethod
    def budget_capped(cls, config: Any) -> bool:
        """Whether ``config`` stops at the training-time cap before its validation plateau (``mribench curve``)."""
        return bool(getattr(config, "budget_capped", False))

    def parameter_count(self) -> int | None:
        """Parameters ``fit`` trained (frozen parts borrowed from elsewhere excluded); None when it trains none."""
        return None

    # -- persistence (shared) ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from mribench.training import atomic_torch_save

        atomic_torch_save({"method": self.name, "version": self.version, "config_hash": config_hash(self.config),
                           "config": config_json(self.config), "seed": self.seed, "fit_seconds": self.fit_seconds,
                           "state": self.state()}, path)

    @classmethod
    def load(cls, path: Path, config: Any, seed: int, task: TaskSpec) -> "Method":
        """Rebuild from ``save``; refuses a checkpoint written by another method or configuration."""
        from mribench.training import load_checkpoint

        payload = load_checkpoint(path, expect={"method": cls.name, "config_hash": config_hash(config)})
        method = cls(config, seed=seed)
        try:
            method.load_state(payload.get("state") or {}, task)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            detail = f"missing entry {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise MribenchError(f"{path}: the checkpoint's header is valid but its state is not a usable "
                                f"{cls.name} model ({detail}); delete it to retrain") from None
        method.fit_seconds = payload.get("fit_seconds")  # absent in checkpoints older than this field
        return method


def config_json(config: Any) -> str:
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return json.dumps(data, sort_keys=True, default=str)


def config_hash(config: Any) -> str:
    return hashlib.sha256(config_json(config).encode()).hexdigest()[:16]
