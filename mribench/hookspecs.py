"""Every hook of mribench, in one file.

Plugins implement them with ``@mribench.hookimpl`` in a module registered under the ``mribench`` entry-point
group (``[project.entry-points.mribench] name = "package.plugin"``). Built-in pieces use the same hooks.
Each hook returns a list; the plugin manager merges the lists of all plugins and refuses duplicate names.
The register hooks' items are classes, or :class:`mribench.plugins.LazyClass` entries naming a class by import path
(imported on first use, so listing plugins imports none of their code).
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mribench")
hookimpl = pluggy.HookimplMarker("mribench")  # what plugins decorate their hook functions with (``mribench.hookimpl``)


@hookspec
def mribench_register_methods() -> list[type]:
    """Return the synthesis methods this plugin provides.

    Each item is a subclass of :class:`mribench.method.Method` with a unique ``name`` (the registry key used by
    ``mribench run --method NAME``), the set of ``problems`` it supports and its ``presets``
    (``smoke``, ``cpu``, ``paper``).
    """


@hookspec
def mribench_register_datasets() -> list[type]:
    """Return the dataset loaders this plugin provides.

    Each item is a subclass of :class:`mribench.data.base.Dataset` with a unique ``name``; task specs refer to
    it by that name in their ``dataset`` field.
    """


@hookspec
def mribench_register_metrics() -> list[type]:
    """Return the evaluators this plugin provides.

    Each item is a subclass of :class:`mribench.metrics.base.Metric` with a unique ``name``; task specs list
    metrics by that name in their ``metrics`` field.
    """


@hookspec
def mribench_register_benchmarks() -> list[type]:
    """Return the speed benchmarks this plugin provides (``mribench bench``).

    Each item is a subclass of :class:`mribench.bench.Benchmark` with a unique ``name``, a one-line ``summary`` and
    ``run(settings) -> list[Figure]``; list them lazily (``LazyClass`` with the ``summary`` fact) so listing
    benchmarks imports none of their code.
    """


@hookspec
def mribench_register_prompt_providers() -> list[type]:
    """Return the completeness-prompt providers this plugin offers to other plugins' methods.

    A method that conditions on completeness prompts (the baselines' "+Prompts" variants) asks for a provider by
    ``name`` through the registry (kind ``"prompt provider"``) instead of importing the providing plugin's internals;
    copedit registers ``"copedit"``, its frozen stage-I CoPeVAE. Each item is a class with a unique ``name`` and two
    class methods:

    - ``frozen_tokenizer(train, task, preset, seed, shared_dir, progress)``: the frozen tokenizer of ``task``'s
      dataset at the provider's ``preset`` and ``seed``, read from ``shared_dir`` (the runner's folder shared by the
      methods of one dataset, preset and seed), or first trained there on ``train`` (a ``SubjectSet``);
    - ``restore_tokenizer(state, task, preset)``: the frozen tokenizer whose ``state_dict()`` was ``state`` (kept in
      the asking method's checkpoint, so a saved model reloads without ``shared_dir``).

    A tokenizer is an ``nn.Module`` in eval mode without gradients offering ``prompts(zero_filled)``: zero-filled
    volumes ``(B, C, D, H, W)`` -> prompt tokens ``(B, tokens, prompt_dim)``, read from the image alone (never the
    availability mask).
    """


@hookspec
def mribench_task_dirs() -> list[str]:
    """Return extra folders that hold task specs (``*.yaml``), added to mribench's own ``tasks/`` folder.

    A task name defined in two folders is an error naming both files.
    """


@hookspec
def mribench_register_analyses() -> list[type]:
    """Return the analyses this plugin provides (``mribench analyze NAME``).

    Each item is a subclass of :class:`mribench.analyze.Analysis` with a unique ``name``; it receives an
    :class:`mribench.analyze.AnalysisContext` (task, data, the trained model) and writes CSV / PNG files that
    ``mribench report`` shows.
    """
