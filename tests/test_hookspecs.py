import inspect

import mribench.hookspecs as hookspecs


def _hookspecs():
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mribench_")]


def test_the_five_hooks_of_the_design_exist():
    names = {f.__name__ for f in _hookspecs()}
    assert names == {"mribench_register_methods", "mribench_register_datasets", "mribench_register_metrics",
                     "mribench_register_benchmarks", "mribench_task_dirs"}


def test_every_hookspec_is_documented():
    undocumented = [f.__name__ for f in _hookspecs() if len((inspect.getdoc(f) or "").strip()) < 40]
    assert not undocumented, f"hookspecs without a real docstring: {undocumented}"
