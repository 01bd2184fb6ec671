"""What the CLI prints: nothing is cut when the output is not a terminal (full paths and full problem texts in a pipe
or a log file), --skip-bad says what it skipped, --version and the help of positional arguments."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mribench.cli import app

CONTRASTS = ("t1", "t1ce", "t2", "flair")


def write_brats_subjects(root: Path, count: int) -> list[str]:
    """BraTS-layout subjects of smooth random volumes (every check of `data verify` passes on them)."""
    rng = np.random.default_rng(0)
    ids = [f"BraTS2021_{index:05d}" for index in range(count)]
    for subject in ids:
        folder = root / subject
        folder.mkdir(parents=True)
        for contrast in CONTRASTS:
            volume = (rng.random((14, 14, 10)) * 100 + 10).astype(np.float32)
            nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"{subject}_{contrast}.nii.gz")
        label = np.zeros((14, 14, 10), dtype=np.uint8)
        label[5:9, 5:9, 3:6] = 2
        nib.save(nib.Nifti1Image(label, np.eye(4)), folder / f"{subject}_seg.nii.gz")
    return ids


def truncate(path: Path) -> None:
    raw = gzip.compress(gzip.decompress(path.read_bytes()))
    path.write_bytes(raw[: len(raw) // 2])


def cli_in_a_pipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "mribench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_data_verify_in_a_pipe_names_the_bad_file_in_full(tmp_path):
    root = tmp_path / "a rather long folder name [lab server]" / "datasets" / "BraTS2021_Training_Data_v2"
    subject = write_brats_subjects(root, 1)[0]
    flair = root / subject / f"{subject}_flair.nii.gz"
    truncate(flair)
    result = cli_in_a_pipe("data", "verify", "--dataset", "brats2021", "--data-root", str(root))
    assert result.returncode == 1, result.stderr
    assert "…" not in result.stdout
    problem_line = next(line for line in result.stdout.splitlines() if subject in line and "flair" in line)
    assert str(flair) in problem_line
    assert "truncated or corrupt" in problem_line  # the problem text is on the file's line, not wrapped away
    assert f"brats2021 at {root}: 1 subjects checked, 1 with errors" in result.stdout


def test_tables_in_a_pipe_are_not_cut_to_80_columns():
    result = cli_in_a_pipe("tasks")
    assert result.returncode == 0 and "…" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "phantom-cardiac-missing16" in line)
    assert "missing-slice" in row and "phantom-cardiac" in row and "16/32" in row


def test_skip_bad_prints_each_skipped_subject(tmp_path, monkeypatch):
    root = tmp_path / "brats"
    ids = write_brats_subjects(root, 6)
    truncate(root / ids[2] / f"{ids[2]}_t2.nii.gz")
    task = tmp_path / "tiny-brats.yaml"
    task.write_text("""
name: tiny-brats
version: 1
description: six small BraTS-layout subjects
dataset: brats2021
problem: missing-modality
elements: [T1, T1ce, T2, FLAIR]
missing: 1
train_missing: [1, 3]
split: {rule: ratio, test_fraction: 0.4, seed: 0}
preprocess: {shape: [12, 12, 12]}
metrics: [{name: psnr}]
""")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "-m", "zero-fill", "-t", str(task), "--data-root", str(root),
                                      "--preset", "smoke", "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert f"skipped {ids[2]}: " in result.stderr and f"{ids[2]}_t2.nii.gz" in result.stderr
    assert "--skip-bad: 1 bad subject(s) skipped" in result.stderr
    assert "not comparable with a run on every subject" in result.stderr


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mribench {version('mribench')}"


@pytest.mark.parametrize("command, help_text", [
    (["tasks", "show", "--help"], "Task name."),
    (["methods", "show", "--help"], "Method name."),
    (["weights", "add", "--help"], "A weight file with its official name."),
])
def test_positional_arguments_keep_their_help(command, help_text):
    result = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    assert result.exit_code == 0 and help_text in result.stdout


def test_data_verify_takes_data_root_and_the_old_root():
    result = CliRunner().invoke(app, ["data", "verify", "--help"], env={"COLUMNS": "200"})
    assert "--data-root" in result.stdout and "--root" in result.stdout


# -- numbers and headers of the plain leaderboard ---------------------------------------------------------------
REPOSITORY = Path(__file__).resolve().parents[2]


def _mean_of(cell: str) -> str:
    """The mean of a cell "mean ± std [std over seeds]" (set-level metrics have no ±, one seed no [ ])."""
    return cell.split(" [")[0].split(" ± ")[0]


def significant_digits(number: str) -> int:
    """Significant digits of a printed decimal, the schoolbook way (leading zeros do not count)."""
    from decimal import Decimal

    digits = Decimal(number).as_tuple().digits
    return len(digits) - next((i for i, d in enumerate(digits) if d), len(digits))


def test_significant_digits_reference():
    assert [significant_digits(s) for s in ("0.00642", "11.56", "0.0350", "254.7", "0.00")] == [3, 4, 3, 4, 0]


def test_column_digits_give_every_mean_three_significant_digits():
    from mribench.leaderboard.cells import Cell
    from mribench.leaderboard.grid import column_digits

    cells = [Cell(mean=0.0350), Cell(mean=0.2), Cell(mean=float("nan")), Cell(status="not computed")]
    decimals = column_digits(cells, minimum=2)
    assert decimals == 4
    assert [significant_digits(f"{c.mean:.{decimals}f}") >= 3 for c in cells[:2]] == [True, True]
    assert column_digits([Cell(mean=17.77)], minimum=2) == 2  # a PSNR keeps its two decimals
    assert column_digits([Cell(mean=0.0)], minimum=4) == 4


def test_plain_leaderboard_numbers_arrows_legend_and_header(tmp_path):
    result = CliRunner().invoke(app, ["leaderboard", "-t", "phantom-cardiac-missing8", "--runs",
                                      str(REPOSITORY / "leaderboard" / "results"), "--format", "md"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["method", "psnr ↑", "ssim ↑", "mae ↓"] and "fd-seg ↓" in header and header[-1] == "n"
    assert not any("phantom-cardiac-missing8" in cell for cell in header)
    column = header.index("fd-seg ↓")
    rows = [[cell.strip(" *_†") for cell in line.strip("|").split("|")] for line in lines[2:] if line.startswith("| ")]
    values = [row[column] for row in rows if row[column] not in ("n/a", "–")]
    assert len(values) >= 10
    for value in values:
        assert significant_digits(_mean_of(value)) >= 3, value
    for row in rows:
        for cell in row[1:-1]:
            if cell not in ("n/a", "–"):
                assert significant_digits(_mean_of(cell)) >= 3, cell
    footnote = " ".join(lines)
    assert "n/a: not computed" in footnote and "–: no result of this method on this task" in footnote
    assert "↑/↓: higher/lower is better" in footnote
