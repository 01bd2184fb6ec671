"""The import contracts of pyproject.toml ([tool.importlinter]), checked with import-linter: mribench's layers, no
import cycle in any package, the registry kept out of methods, metrics, results and tables, and the plugins'."""
import textwrap
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
configuration.configure()  # import-linter's readers of the config file (its CLI does this on import)


def _kept(contract: str, config: Path = PYPROJECT) -> bool:
    return lint_imports(str(config), limit_to_contracts=(contract,), cache_dir=None, no_logo=True)


@pytest.mark.parametrize("contract", ["layers", "core-acyclic", "registry"])
def test_the_core_keeps_its_import_contracts(contract):
    assert _kept(contract), f"import contract {contract!r} broken (details above; `lint-imports` shows them too)"


def test_no_import_cycle_in_the_plugins():
    assert _kept("plugins-acyclic")


def test_the_plugins_reach_each_other_only_through_hooks():
    assert _kept("plugins-independent")


def test_the_contract_types_used_catch_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The same contract types on a throw-away package: a cycle and an import from a lower layer upwards break them
    (so the contracts above can fail)."""
    package = tmp_path / "layered_example"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("from layered_example import high\n")  # upwards, and a cycle with high
    (package / "high.py").write_text("from layered_example import low\n")
    config = tmp_path / "contracts.toml"
    config.write_text(textwrap.dedent("""
        [tool.importlinter]
        root_packages = ["layered_example"]

        [[tool.importlinter.contracts]]
        id = "layers"
        name = "layers"
        type = "layers"
        containers = ["layered_example"]
        exhaustive = true
        layers = ["high", "low"]

        [[tool.importlinter.contracts]]
        id = "acyclic"
        name = "acyclic"
        type = "acyclic_siblings"
        ancestors = ["layered_example"]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not _kept("layers", config) and not _kept("acyclic", config)
    (package / "low.py").write_text("X = 1\n")
    assert _kept("layers", config) and _kept("acyclic", config)
