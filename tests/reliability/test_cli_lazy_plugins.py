"""Lazy plugin registration: the listing commands import no plugin code (no torch, no MONAI), every lazy
registration agrees with its class, and a plugin whose class fails to import is isolated and named."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mribench.errors import PluginError
from mribench.plugins import LazyClass, Registry, hookimpl


def test_listing_commands_import_neither_torch_nor_monai():
    script = ("import sys\nfrom typer.testing import CliRunner\nfrom mribench.cli import app\n"
              "for command in (['tasks'], ['methods'], ['plugins'], ['bench', '--list']):\n"
              "    assert CliRunner().invoke(app, command).exit_code == 0, command\n"
              "print(sorted(m for m in ('torch', 'monai', 'scipy', 'nibabel') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_lazy_registration_agrees_with_its_class():
    registry = Registry()
    checked = 0
    for kind in ("method", "dataset", "metric", "analysis", "benchmark", "prompt provider"):
        for item in registry.items(kind):
            facts = dict(getattr(item._entry, "facts", {}))
            cls = item.cls  # imports it and checks name and facts
            assert cls.name == item.name
            for key, declared in facts.items():
                if key == "unavailable_reason":
                    assert declared() == cls.unavailable_reason(), item.name
            checked += 1
    assert checked >= 12 + 7 + 9 + 8 + 1
    assert all(info.ok for info in registry.plugins.values())


def _plugin(entry: LazyClass):
    class Plugin:
        @hookimpl
        def mribench_register_methods(self):
            return [entry]

    return Plugin()


def test_a_registration_that_disagrees_with_its_class_is_refused_naming_the_plugin():
    wrong = LazyClass("mribench_baselines.floors:SliceInterp", "slice-interp",
                      {"problems": frozenset({"missing-modality"}), "presets": ("smoke", "cpu", "paper")})
    registry = Registry(entry_points=False, extra_plugins=[("liar", _plugin(wrong))])
    assert registry.names("method") == ["slice-interp"]  # listed without importing it
    with pytest.raises(PluginError, match=r"plugin 'liar' failed to load: importing "
                                          r"mribench_baselines.floors:SliceInterp failed: TypeError: .*problems: "
                                          r"declared \['missing-modality'\], class has \['missing-slice'\]"):
        registry.method("slice-interp")
    assert not registry.plugins["liar"].ok and "problems" in registry.plugins["liar"].error


def test_a_class_that_fails_to_import_isolates_its_plugin():
    broken = LazyClass("mribench_no_such_module:Method", "ghost", {"problems": frozenset({"missing-slice"})})
    registry = Registry(entry_points=False, extra_plugins=[("ghostly", _plugin(broken))])
    with pytest.raises(PluginError, match=r"'ghost' is not available: plugin 'ghostly' failed to load: importing "
                                          r"mribench_no_such_module:Method failed: ModuleNotFoundError"):
        registry.get("method", "ghost").cls
    assert registry.plugins["builtin"].ok and not registry.plugins["ghostly"].ok
    assert registry.metric("psnr").name == "psnr"  # the others still work


def test_the_same_class_registered_lazily_and_eagerly_is_no_clash():
    from mribench_baselines.floors import ZeroFill

    class Eager:
        @hookimpl
        def mribench_register_methods(self):
            return [ZeroFill]

    registry = Registry(entry_points=True, extra_plugins=[("eager", Eager())])
    assert registry.method("zero-fill") is ZeroFill


def test_plugins_check_imports_every_class_and_shows_a_broken_one(tmp_path):
    """A plugin whose entry point imports but whose class module is broken shows as failed with --check."""
    site = tmp_path / "site"
    (site / "mribench_halfbroken").mkdir(parents=True)
    (site / "mribench_halfbroken" / "__init__.py").write_text("")
    (site / "mribench_halfbroken" / "plugin.py").write_text(
        "from mribench.plugins import LazyClass, hookimpl\n\n\n@hookimpl\ndef mribench_register_methods():\n"
        "    return [LazyClass('mribench_halfbroken.method:Half', 'half', {'problems': frozenset({'missing-slice'})})]\n")
    (site / "mribench_halfbroken" / "method.py").write_text("raise ImportError('needs libbar 2')\n")
    info = site / "mribench_halfbroken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mribench_halfbroken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mribench]\nhalfbroken = mribench_halfbroken.plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    quick = subprocess.run([sys.executable, "-m", "mribench", "plugins"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert quick.returncode == 0 and "needs libbar 2" not in quick.stdout
    checked = subprocess.run([sys.executable, "-m", "mribench", "plugins", "--check"], capture_output=True, text=True,
                             env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    line = next(row for row in checked.stdout.splitlines() if row.startswith("plugin 'halfbroken'"))
    assert "importing mribench_halfbroken.method:Half failed: ImportError: needs libbar 2" in line
    assert "plugin 'baselines'" not in checked.stdout  # the others import fine
