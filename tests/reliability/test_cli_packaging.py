"""Packaging: the task specs ship as package data, so a non-editable install from a wheel has every task."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import typer

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_listed_packages_are_the_source_tree():
    listed = set(tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPOSITORY).parts) for p in (REPOSITORY / "mribench").rglob("__init__.py")}
    assert listed == found | {"mribench.task_specs", "mribench.suite_specs"}


def test_a_wheel_installed_into_a_fresh_venv_lists_the_tasks(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    for name in ("mribench", "tasks", "suites"):
        shutil.copytree(REPOSITORY / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("mribench-*.whl"))
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (typer, pydantic, ...) come from this venv, after the fresh site-packages on sys.path
    (site / "shared_dependencies.pth").write_text(str(Path(typer.__file__).resolve().parent.parent) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLUMNS")}
    where = subprocess.run([str(python), "-c", "import mribench.tasks as t, mribench.leaderboard.suite as s; "
                            "print(t.TASKS_DIR); print(s.SUITES_DIR); print(*sorted(s.suite_files()))"], cwd=tmp_path,
                           capture_output=True, text=True, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines() == [str(site / "mribench" / "task_specs"), str(site / "mribench" / "suite_specs"),
                                         "ablations demo phantom"]
    listing = subprocess.run([str(venv / "bin" / "mribench"), "tasks"], cwd=tmp_path, capture_output=True,
                             text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    names = {line.split("│")[1].strip() for line in listing.stdout.splitlines() if line.startswith("│")}
    assert names == {path.stem for path in (REPOSITORY / "tasks").glob("*.yaml") if not path.name.startswith("_")}
