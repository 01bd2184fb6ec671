import pytest

from mribench.errors import MribenchError, UnknownNameError
from mribench.tasks import TASKS_DIR, TaskRegistry, get_task, load_task_file

BRAIN = ["brats-missing1", "brats-missing2", "brats-missing3", "ixi-missing1", "ixi-missing2"]
CARDIAC = [f"{p}-missing{k}" for p in ("ukbb", "acdc") for k in (8, 16, 24)]
PHANTOM = [f"phantom-brats-missing{k}" for k in (1, 2, 3)] + [f"phantom-ixi-missing{k}" for k in (1, 2)] + \
    [f"phantom-cardiac-missing{k}" for k in (8, 16, 24)]


def test_every_design_task_is_shipped_and_valid():
    registry = TaskRegistry([(TASKS_DIR, "builtin")])
    assert set(BRAIN + CARDIAC + PHANTOM) <= set(registry.names())
    for name in registry.names():
        spec = registry.get(name)
        assert spec.name == name and len(spec.hash) == 64


def test_paper_protocol_values():
    brats = get_task("brats-missing3")
    assert brats.elements == ["T1", "T1ce", "T2", "FLAIR"] and brats.missing == 3
    assert (brats.split.train, brats.split.test) == (1000, 251)
    assert brats.preprocess.shape == (64, 192, 192) and brats.preprocess.slice_window == 90
    assert brats.reference.values["psnr"]["CoPeDiT"] == (27.91, 1.41)
    ixi = get_task("ixi-missing2")
    assert ixi.elements == ["T1", "T2", "PD"] and (ixi.split.train, ixi.split.test) == (462, 115)
    assert get_task("ixi-missing1").preprocess.slice_window == 80
    ukbb = get_task("ukbb-missing24")
    assert ukbb.elements == 32 and ukbb.missing == 24 and ukbb.channels == 1


def test_missing_counts_of_one_dataset_share_a_model_key_but_not_a_task_hash():
    a, b = get_task("phantom-brats-missing1"), get_task("phantom-brats-missing3")
    assert a.model_key == b.model_key and a.hash != b.hash


def _write(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


GOOD = (TASKS_DIR / "phantom-brats-missing1.yaml").read_text()


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "phantom-brats-missing1", GOOD + "colour: blue\n")
    with pytest.raises(MribenchError, match=r"phantom-brats-missing1.yaml: key 'colour': unknown key"):
        load_task_file(path)


def test_nested_bad_value_names_key_and_expectation(tmp_path):
    path = _write(tmp_path, "phantom-brats-missing1", GOOD.replace("test_fraction: 0.2", "test_fraction: 2"))
    with pytest.raises(MribenchError, match=r"key 'split.test_fraction': .*less than 1"):
        load_task_file(path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "broken", "name: broken\nelements: [T1, T2\nmissing: 1\n")
    with pytest.raises(MribenchError, match=r"broken.yaml: line \d+, column \d+ malformed YAML"):
        load_task_file(path)


def test_inconsistent_missing_count_is_refused(tmp_path):
    path = _write(tmp_path, "phantom-brats-missing1", GOOD.replace("missing: 1", "missing: 4"))
    with pytest.raises(MribenchError, match="missing must be between 1 and 3"):
        load_task_file(path)


def test_file_name_must_match_task_name(tmp_path):
    path = _write(tmp_path, "other-name", GOOD)
    with pytest.raises(MribenchError, match="key 'name': expected 'other-name'"):
        load_task_file(path)


def test_unknown_task_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean 'brats-missing1'"):
        get_task("brats-mising1")


def test_a_task_defined_twice_is_an_error(tmp_path):
    _write(tmp_path, "phantom-brats-missing1", GOOD)
    with pytest.raises(MribenchError, match="defined twice"):
        TaskRegistry([(TASKS_DIR, "builtin"), (tmp_path, "other")])
