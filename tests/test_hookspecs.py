import inspect

import mribench.hookspecs as hookspecs


def _hookspecs():
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mribench_")]


def test_the_hooks_of_the_design_exist():
    names = {f.__name__ for f in _hookspecs()}
    assert names == {"mribench_register_methods", "mribench_register_datasets", "mribench_register_metrics",
                     "mribench_register_analyses", "mribench_register_prompt_providers",
                     "mribench_register_benchmarks", "mribench_task_dirs"}


def test_every_hookspec_is_documented():
    undocumented = [f.__name__ for f in _hookspecs() if len((inspect.getdoc(f) or "").strip()) < 40]
    assert not undocumented, f"hookspecs without a real docstring: {undocumented}"


def test_plugins_decorate_with_mribench_hookimpl():
    """The documented decorator, ``@mribench.hookimpl``, registers a hook implementation."""
    import mribench
    from mribench.plugins import Registry
    from mribench_baselines.floors import ZeroFill

    class Zeroes(ZeroFill):
        name = "zeroes-via-package-marker"

    class Plugin:
        @mribench.hookimpl
        def mribench_register_methods(self):
            return [Zeroes]

    registry = Registry(entry_points=False, extra_plugins=[("package-marker", Plugin())])
    assert registry.method("zeroes-via-package-marker") is Zeroes
