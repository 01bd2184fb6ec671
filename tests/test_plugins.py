"""Plugin manager: entry-point discovery, isolation of broken plugins, name clashes — and the example of
how to add a method as a pip-installable plugin (tests/fixtures/example_plugin, linked from the README)."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mribench.errors import PluginError
from mribench.leaderboard.layouts.paper import build_paper_tables
from mribench.plugins import Registry, hookimpl, set_registry
from mribench.runner import RunRequest, run

EXAMPLE = Path(__file__).parent / "fixtures" / "example_plugin"


def _fake_distribution(site: Path, dist: str, entry_name: str, module: str, source: str) -> None:
    """An installed distribution as pip would leave it: a module and a dist-info with its entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mribench]\n{entry_name} = {module}\n")


@pytest.fixture
def broken_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "mribench_broken", "broken", "mribench_broken_plugin",
                       "raise ImportError('needs libfoo 9, found 8')\n")
    return site


def _cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mribench", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_broken_plugin_is_listed_as_failed_and_others_still_work(broken_site):
    listing = _cli(broken_site, "plugins")
    assert listing.returncode == 0
    text = " ".join(listing.stdout.split())
    assert "broken" in text and "failed" in text and "needs libfoo 9" in text
    methods = _cli(broken_site, "methods")
    assert methods.returncode == 0 and "mean-available" in methods.stdout


def test_running_a_method_of_a_failed_plugin_names_the_plugin_and_error(broken_site):
    result = _cli(broken_site, "run", "--method", "broken-method", "--task", "phantom-brats-missing1")
    assert result.returncode == 2
    assert "plugin 'broken'" in result.stderr and "needs libfoo 9" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_plugin_whose_hook_raises_is_isolated():
    class Exploding:
        @hookimpl
        def mribench_register_methods(self):
            raise RuntimeError("boom")

    registry = Registry(entry_points=False, extra_plugins=[("exploding", Exploding())])
    assert not registry.plugins["exploding"].ok and "boom" in registry.plugins["exploding"].error
    assert registry.plugins["builtin"].ok


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    from mribench_baselines.floors import MeanAvailable

    class Impostor(MeanAvailable):
        pass

    class Other:
        @hookimpl
        def mribench_register_methods(self):
            return [Impostor]

    class Baselines:
        @hookimpl
        def mribench_register_methods(self):
            return [MeanAvailable]

    with pytest.raises(PluginError, match=r"'mean-available' is registered twice: by plugin '(base|other)'.*"
                                          r"by plugin '(base|other)'"):
        Registry(entry_points=False, extra_plugins=[("base", Baselines()), ("other", Other())])


def test_example_plugin_installs_with_pip_and_runs_end_to_end(tmp_path, tiny_registry):
    """The "how to add a method" example: pip-install a plugin folder, then it is a method like any other."""
    site, source = tmp_path / "site", tmp_path / "example_plugin"
    shutil.copytree(EXAMPLE, source)  # pip builds in the source folder: keep the repository clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, timeout=300,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    listing = _cli(site, "methods")
    assert listing.returncode == 0 and "example-intensity-ratio" in listing.stdout
    sys.path.insert(0, str(site))
    try:
        set_registry(Registry(extra_plugins=[("tiny", sys.modules["mribench_tests_tiny_plugin"])]))
        request = dict(task="tiny-brain-missing1", preset="smoke", out=tmp_path / "runs")
        example = run(RunRequest(method="example-intensity-ratio", **request)).result
        zero = run(RunRequest(method="zero-fill", **request)).result
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.startswith("mribench_example")]:
            del sys.modules[name]
    assert example.method["plugin"] == "example"
    assert example.metrics["psnr"]["aggregate"]["mean"] > zero.metrics["psnr"]["aggregate"]["mean"]
    # the leaderboard shows it under its own display name and family, from its results alone (no core edit)
    main = build_paper_tables(["tiny-brain-missing1"], tmp_path / "runs")[0]
    rows = [(row.kind, row.label) for row in main.rows]
    floors = rows[rows.index(("section", "Floors")) + 1:]
    floors = floors[:next((i for i, (kind, _) in enumerate(floors) if kind == "section"), len(floors))]
    assert ("result", "Intensity ratio") in floors and ("result", "zero-fill") in floors
