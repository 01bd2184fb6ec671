import pytest
import yaml

from mribench.errors import MribenchError, UnknownNameError
from mribench.tasks import TASKS_DIR, TaskRegistry, get_task, load_task_file, resolved_task_mapping

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


# a self-contained spec: the shipped one with its shared base merged in
GOOD = yaml.safe_dump(resolved_task_mapping(TASKS_DIR / "phantom-brats-missing1.yaml"), sort_keys=False)


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


# SHA-256 of every shipped task's resolved spec, computed on main before task files could `include:` a shared base:
# moving keys into a base (or any other layout change of a YAML) must leave each hash, and so each committed
# result's column, unchanged.
PINNED_HASHES = {
    "acdc-missing16": "715048625ec036e969b29faf129546773addc5c1bf1941d36403d0f7d346df00",
    "acdc-missing24": "647feb7a1fc4328b10de45982274e1e2d4ffdd560e1da06e221c1f687a062cab",
    "acdc-missing8": "5de2f885cd07e5a38141ef4f951f7260ec7911092fbdfdc00f28487b56c8ad54",
    "brats-missing1": "6484e3f489e4faec573407d5db967592db15000719aa4ff281623869cd0575a8",
    "brats-missing2": "8d04183c607ed5c5cf83519e0953b35b68cbd772f607055f032b54dd05405ebb",
    "brats-missing3": "04eea7690bec2d54ed20b6ed839b67bd892d4998961056420ac594d6d302ecef",
    "ixi-missing1": "eae870a6cb1d28f0c133763a14e4cef46e6e3e465075ad2242692d17d7727ec9",
    "ixi-missing2": "8977ba37135de5ca1885443f1f7c0637cce635ceb6b309e7c5915831640e517e",
    "phantom-brats-missing1": "d9bee87055f95ecaf17112c4da12c1a0499541faa9605e4a2039bbad9dd7b28b",
    "phantom-brats-missing2": "fa4281b3153f822976f3f49896f90f0e59122bd219aa1809787050402705fde8",
    "phantom-brats-missing3": "387e0b1d0ff1ccc4dfbd4cab0072089a15d7e15098b78534f1a06bb080a6fc5f",
    "phantom-cardiac-missing16": "2dcb6c6a246076f1584689e5398b258c241ca9feac9d7713c406f51e8eb9bba2",
    "phantom-cardiac-missing24": "7eb3e800c1a953b06e64021ff7b7b488a9dbf4b19ccfc31f3698986aa2ddb912",
    "phantom-cardiac-missing8": "bb60e9ea970d75d6e9aed99fbc44a5592a026208a0453043db317208feba57d2",
    "phantom-ixi-missing1": "c4d0176ea3059f8f570fc49728682bd6eb78f9f03068a2044b5e7b9b8960a3fb",
    "phantom-ixi-missing2": "426c7645c18d560ddf18fa1b1b8dda63351cad1a4fb5cc50d0ce12a7433565e5",
    "ukbb-missing16": "a44cd7e32c552af80a793d81bc8e82e1f25eff5ed2f0028ac7ce449247f6001c",
    "ukbb-missing24": "687d10ddd70d5f522c10eca95165cd6d088e47f3816587aa15adb9873696da13",
    "ukbb-missing8": "57a4f8e608a947efe5e12cb21f27b16e840c76188af50881186920f01634c7e9",
}


def test_shipped_task_hashes_are_pinned_and_their_files_share_bases():
    shipped = TaskRegistry([(TASKS_DIR, "builtin")])
    assert {name: shipped.get(name).hash for name in shipped.names()} == PINNED_HASHES
    assert not any(name.startswith("_") for name in shipped.names()), "a base file is not a task"
    brats = [(TASKS_DIR / f"brats-missing{k}.yaml").read_text() for k in (1, 2, 3)]
    assert all("include: _brats.yaml" in text and "preprocess" not in text for text in brats)


def test_include_merges_mappings_replaces_lists_and_refuses_cycles_and_absent_bases(tmp_path):
    base = load_task_file(TASKS_DIR / "phantom-brats-missing2.yaml")
    (tmp_path / "_base.yaml").write_text("include: _root.yaml\ndataset: phantom-brats\nmissing: 1\n"
                                         "preprocess: {shape: [32, 96, 96], percentiles: [1.0, 99.0]}\n")
    (tmp_path / "_root.yaml").write_text(
        "version: 1\nproblem: missing-modality\nelements: [T1, T1ce, T2, FLAIR]\ntrain_missing: [1, 3]\n"
        "split: {rule: ratio, test_fraction: 0.2, seed: 0}\nmetrics: [{name: psnr}, {name: ssim}]\n")
    (tmp_path / "t-missing2.yaml").write_text("include: _base.yaml\nname: t-missing2\ndescription: two\nmissing: 2\n"
                                              "preprocess: {crop_foreground: false}\nmetrics: [{name: psnr}]\n")
    spec = load_task_file(tmp_path / "t-missing2.yaml")
    assert spec.missing == 2 and spec.dataset == "phantom-brats" and spec.version == 1
    assert spec.preprocess.shape == (32, 96, 96) and spec.preprocess.percentiles == (1.0, 99.0), "mappings merge"
    assert spec.preprocess.crop_foreground is False and spec.split == base.split
    assert [m.name for m in spec.metrics] == ["psnr"], "a list replaces the base's whole"
    (tmp_path / "_root.yaml").write_text("include: t-missing2.yaml\n")
    with pytest.raises(MribenchError, match="includes form a cycle"):
        load_task_file(tmp_path / "t-missing2.yaml")
    (tmp_path / "t-missing2.yaml").write_text("include: _absent.yaml\nname: t-missing2\n")
    with pytest.raises(MribenchError, match=r"t-missing2.yaml: key 'include': no file .*_absent.yaml"):
        load_task_file(tmp_path / "t-missing2.yaml")
