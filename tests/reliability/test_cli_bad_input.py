"""Bad input from the command line: every fixable mistake is one line on stderr, exit code 2, no traceback, checked
before any work starts, and nothing is written (neither in the working folder nor in the cache).

The corpus: issue 15's list (output paths, task shapes, metric options, an empty checkpoint state, markup in paths,
`data show` of an unknown subject) plus the bad-input lists of earlier issues (unknown names, bad presets, YAML tags,
malformed task files, option conflicts).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mribench.cli import app
from mribench.errors import MribenchError
from mribench.tasks import TASKS_DIR, resolved_task_mapping

REAL_TASK = TASKS_DIR / "phantom-brats-missing1.yaml"


def snapshot(*folders: Path) -> set[Path]:
    return {path for folder in folders if folder.exists() for path in folder.rglob("*")}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty working folder and an empty private cache; the test asserts both stay as they were."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MRIBENCH_CACHE", str(cache))
    return work, cache


def refused(workspace, *args: str, expect: str) -> str:
    """Run the CLI; assert exit 2, one line on stderr containing ``expect``, no traceback, nothing written."""
    before = snapshot(*workspace)
    result = CliRunner().invoke(app, list(args))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert expect in lines[0], lines[0]
    assert snapshot(*workspace) == before, "a refused command wrote files"
    return lines[0]


def task_file(folder: Path, name: str, **changes) -> Path:
    """A copy of the phantom BraTS task with top-level keys (or preprocess/metrics) changed."""
    spec = resolved_task_mapping(REAL_TASK)
    spec.update(name=name, **changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def task_folder(tmp_path):
    folder = tmp_path / "tasks [v2]"
    folder.mkdir()
    return folder


# -- output paths ---------------------------------------------------------------------------------------------
def test_run_out_pointing_at_a_file(workspace):
    (workspace[0] / "runs").write_text("not a folder")
    refused(workspace, "run", "-m", "zero-fill", "-t", "phantom-brats-missing1", "--out", "runs",
            expect="--out runs: is a file, not a folder")


def test_run_out_under_a_file(workspace):
    (workspace[0] / "a-file").write_text("x")
    refused(workspace, "run", "-m", "zero-fill", "-t", "phantom-brats-missing1", "--out", "a-file/runs",
            expect="a-file is a file, not a folder")


def test_run_out_in_a_folder_nobody_can_write():
    """/proc refuses new files even to root, so this case holds under any user."""
    result = CliRunner().invoke(app, ["run", "-m", "zero-fill", "-t", "phantom-brats-missing1", "--out",
                                      "/proc/mribench-runs"])
    assert result.exit_code == 2 and "--out /proc/mribench-runs: cannot write in /proc" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; /proc covers that case as root")
def test_run_out_in_a_read_only_folder(workspace):
    locked = workspace[0] / "locked"
    locked.mkdir(mode=0o555)
    refused(workspace, "run", "-m", "zero-fill", "-t", "phantom-brats-missing1", "--out", "locked/runs",
            expect="cannot write in locked")


def test_leaderboard_output_onto_a_folder(workspace):
    (workspace[0] / "tables").mkdir()
    refused(workspace, "leaderboard", "-t", "phantom-brats-missing1", "--output", "tables",
            expect="--output tables: is a folder; give a file name, e.g. tables/leaderboard.md")


def test_report_output_html_onto_a_folder(workspace):
    (workspace[0] / "r.html").mkdir()
    refused(workspace, "report", "-t", "phantom-brats-missing1", "--output", "r.html", expect="is a folder")


def test_data_show_output_onto_a_folder(workspace):
    (workspace[0] / "pictures").mkdir()
    refused(workspace, "data", "show", "--dataset", "phantom-brats", "--subject", "BraTS2021_00000", "--output",
            "pictures", expect="--output pictures: is a folder")


# -- task shapes and metric options ---------------------------------------------------------------------------
def test_task_shape_too_small_for_ssim_is_refused_before_any_data_is_made(workspace, task_folder):
    spec = resolved_task_mapping(REAL_TASK)
    path = task_file(task_folder, "tiny-shape", preprocess={**spec["preprocess"], "shape": [32, 8, 8]})
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path),
            expect="metric 'ssim' cannot score preprocess.shape [32, 8, 8]: SSIM needs every side of an element >= "
                   "its 11-voxel window, got (32, 8, 8)")


def test_cardiac_ssim_is_2d_so_few_slices_are_fine_but_a_small_plane_is_not(workspace):
    from mribench.metrics.ssim import SSIM

    assert SSIM.shape_problem("missing-slice", (4, 32, 32)) is None
    assert "11-voxel window" in SSIM.shape_problem("missing-slice", (32, 10, 32))
    assert "11-voxel window" in SSIM.shape_problem("missing-modality", (10, 32, 32))


def test_task_shape_too_large_for_memory(workspace, task_folder):
    spec = resolved_task_mapping(REAL_TASK)
    path = task_file(task_folder, "huge-shape", preprocess={**spec["preprocess"], "shape": [4096, 4096, 4096]})
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path),
            expect="preprocess.shape [4096, 4096, 4096] makes one subject 1.02e+03 GiB")


@pytest.mark.parametrize("options, expect", [
    ({"foo": 1}, "metric 'psnr': unknown option 'foo' (accepted: data_range)"),
    ({"data_range": "wide"}, "metric 'psnr': option 'data_range' must be float, got 'wide'"),
    ({"data_range": True}, "option 'data_range' must be float, got True"),
])
def test_metric_options_are_validated(workspace, task_folder, options, expect):
    path = task_file(task_folder, "bad-options", metrics=[{"name": "psnr", "options": options}])
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path), expect=expect)


def test_a_metric_without_options_refuses_any(workspace, task_folder):
    path = task_file(task_folder, "dice-options", metrics=[{"name": "dice", "options": {"threshold": 0.5}}])
    refused(workspace, "score", "--task", str(path), "--predictions", ".",
            expect="metric 'dice': unknown option 'threshold' (accepted: none)")


def test_valid_metric_options_pass():
    from mribench.metrics.psnr import PSNR

    PSNR.check_options({"data_range": 1})  # an int is a fine float
    PSNR.check_options({"data_range": 2.0})


# -- checkpoints ----------------------------------------------------------------------------------------------
def test_a_header_valid_checkpoint_with_an_empty_state_is_one_clear_error(tmp_path, tiny_registry):
    from mribench.method import config_hash, config_json
    from mribench.tasks import get_task
    from mribench.training import atomic_torch_save

    method_cls = tiny_registry.method("tiny-slow-linear")
    config = method_cls.presets["smoke"]
    path = tmp_path / "model [v1].pt"
    atomic_torch_save({"method": method_cls.name, "version": method_cls.version, "config_hash": config_hash(config),
                       "config": config_json(config), "seed": 0, "state": {}}, path)
    with pytest.raises(MribenchError, match=r"model \[v1\]\.pt: the checkpoint's header is valid but its state is "
                                            r"not a usable tiny-slow-linear model \(missing entry 'scale'\)"):
        method_cls.load(path, config, 0, get_task("tiny-brain-missing1"))


# -- text with rich markup characters ------------------------------------------------------------------------
@pytest.mark.parametrize("root", ["/data/brats[v2]", "/data/x[/]y", "/data/[bold]z[/bold]"])
def test_paths_with_brackets_print_intact(workspace, root):
    line = refused(workspace, "data", "verify", "--dataset", "brats2021", "--data-root", root,
                   expect=f"error: {root} does not exist")
    assert f"--data-root: {root})" in line


def test_the_old_root_option_still_works_and_the_message_says_data_root(workspace):
    line = refused(workspace, "data", "verify", "--dataset", "ixi", "--root", "/nowhere[1]", expect="/nowhere[1]")
    assert "--data-root: /nowhere[1]" in line and "--root:" not in line


def test_a_pydantic_pattern_prints_intact(workspace, task_folder):
    path = task_folder / "Bad_Name.yaml"
    spec = resolved_task_mapping(REAL_TASK)
    path.write_text(yaml.safe_dump({**spec, "name": "Bad_Name"}))
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path),
            expect=r"key 'name': String should match pattern '^[a-z0-9][a-z0-9+\-]*$'")


def test_a_task_folder_with_brackets_in_an_error(workspace, task_folder):
    path = task_folder / "broken.yaml"
    path.write_text("name: [unclosed\n")
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path), expect=f"{path}: line")


# -- data show -------------------------------------------------------------------------------------------------
def test_data_show_of_an_unknown_subject_generates_nothing(workspace):
    refused(workspace, "data", "show", "--dataset", "phantom-brats", "--subject", "BraTS2021_0000", "--output",
            "x.png", expect="dataset 'phantom-brats' has no subject 'BraTS2021_0000'; did you mean 'BraTS2021_0")


def test_planned_phantom_ids_are_the_generated_ones():
    """The check above is only honest if the planned IDs are those the generator writes (small phantoms)."""
    from mribench.data.phantom_brain import PhantomBratsDataset, PhantomIXIDataset, brats_id, ixi_id
    from mribench.data.phantom_cardiac import PhantomCardiacDataset, patient_id
    from mribench.data.phantom_common import parse_options

    options = {"subjects": 3, "seed": 4}
    parsed = parse_options(PhantomIXIDataset.options_model, "phantom-ixi", options)
    assert PhantomIXIDataset.planned_subject_ids(options) == sorted(ixi_id(parsed, i) for i in range(3))
    assert PhantomBratsDataset.planned_subject_ids(options) == [brats_id(i) for i in range(3)]
    assert PhantomCardiacDataset.planned_subject_ids(options) == [patient_id(i) for i in range(3)]


# -- the bad-input lists of earlier issues ----------------------------------------------------------------------
@pytest.mark.parametrize("args, expect", [
    (["run", "-m", "zero-fil", "-t", "phantom-brats-missing1"], "unknown method 'zero-fil'; did you mean 'zero-fill'"),
    (["run", "-m", "zero-fill", "-t", "phantom-brats-mising1"], "did you mean 'phantom-brats-missing1'"),
    (["run", "-m", "zero-fill", "-t", "phantom-brats-missing1", "--preset", "gpu"], "unknown preset of zero-fill 'gpu'"),
    (["run", "-m", "slice-interp", "-t", "phantom-brats-missing1"], "does not support missing-modality tasks"),
    (["run", "-m", "zero-fill", "-t", "nowhere/none.yaml"], "nowhere/none.yaml: cannot read task spec"),
    (["leaderboard", "-t", "phantom-brats-mising1"], "did you mean 'phantom-brats-missing1'"),
    (["report", "-t", "phantom-cardiac-missing9"], "unknown task 'phantom-cardiac-missing9'; did you mean"),
    (["leaderboard", "-t", "phantom-brats-missing1", "--reference"], "--reference needs --layout paper"),
    (["leaderboard", "-t", "phantom-brats-missing1"], "no results for task 'phantom-brats-missing1'"),
    (["tasks", "show", "brats-missing4"], "unknown task 'brats-missing4'; did you mean"),
    (["methods", "show", "copedi"], "unknown method 'copedi'; did you mean 'copedit'"),
    (["data", "show", "--dataset", "phantom-brat", "--subject", "a", "--output", "a.png"],
     "unknown dataset 'phantom-brat'; did you mean 'phantom-brats'"),
    (["data", "verify", "--dataset", "brats2021", "--data-root", "."], "error: . is empty: dataset 'brats2021'"),
    (["data", "prepare", "--task", "brats-missing1"], "dataset 'brats2021' not found"),
    (["bench", "nope"], "unknown benchmark 'nope'"),
    (["weights", "add", "missing.pth"], "missing.pth: no such file"),
])
def test_earlier_bad_inputs(workspace, args, expect):
    refused(workspace, *args, expect=expect)


def test_a_yaml_tag_in_a_task_is_refused(workspace, task_folder):
    path = task_folder / "tagged.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    refused(workspace, "run", "-m", "zero-fill", "-t", str(path), expect="malformed YAML")


def test_a_leaderboard_task_given_as_a_yaml_path_is_accepted(workspace):
    refused(workspace, "leaderboard", "-t", str(REAL_TASK), expect="no results for task 'phantom-brats-missing1'")
