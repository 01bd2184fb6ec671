"""The phantom datasets end to end: generated once into the cache, read by the real loaders, deterministic."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest

from mribench.data.base import cache_dir
from mribench.errors import MribenchError
from mribench.plugins import Registry
from mribench.tasks import PreprocessSpec

TINY = {"phantom-brats": {"subjects": 2, "seed": 3, "voxel_mm": 4.0},
        "phantom-ixi": {"subjects": 2, "seed": 3, "voxel_mm": 4.0},
        "phantom-cardiac": {"subjects": 2, "seed": 3, "voxel_mm": 3.0}}
BRAIN_SPEC = PreprocessSpec(shape=(8, 32, 32))
CARDIAC_SPEC = PreprocessSpec(shape=(8, 32, 32), orientation=None, crop_foreground=False)


@pytest.fixture(scope="module")
def registry():
    return Registry(entry_points=False)


@pytest.fixture(scope="module")
def roots(registry, tmp_path_factory):
    """Each tiny phantom generated once, into the session cache that the autouse fixture points every test at."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MRIBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "mribench-cache"))
        yield {name: registry.dataset(name).prepare_root(options) for name, options in TINY.items()}


def test_phantoms_are_registered_as_generated(registry):
    for name in TINY:
        assert registry.dataset(name).generated


def test_cache_folder_is_keyed_by_version_seed_count_and_size(roots):
    from mribench.data.phantom_common import GENERATOR_VERSIONS

    brats, cardiac = GENERATOR_VERSIONS["phantom-brats"], GENERATOR_VERSIONS["phantom-cardiac"]
    assert roots["phantom-brats"] == cache_dir() / "phantoms" / f"phantom-brats-v{brats}-seed3-n2-4mm"
    assert roots["phantom-cardiac"].name == f"phantom-cardiac-v{cardiac}-seed3-n2-3mm"
    leftovers = [p.name for p in roots["phantom-brats"].parent.iterdir()
                 if p.name.startswith(".") and not p.name.endswith(".lock")]  # a lock file stays (flock semantics)
    assert leftovers == []  # the staging folders were renamed or removed


def test_brats_phantom_reads_with_the_brats_loader(registry, roots):
    dataset = registry.dataset("phantom-brats")(roots["phantom-brats"], TINY["phantom-brats"])
    ids = dataset.subject_ids()
    assert ids == ["BraTS2021_00000", "BraTS2021_00001"]
    files = sorted(p.name for p in (roots["phantom-brats"] / ids[0]).iterdir())
    assert files == sorted(f"{ids[0]}_{s}.nii.gz" for s in ("t1", "t1ce", "t2", "flair", "seg"))
    image = nib.load(str(roots["phantom-brats"] / ids[0] / f"{ids[0]}_t1.nii.gz"))
    assert image.shape == (60, 60, 39) and nib.aff2axcodes(image.affine) == ("L", "P", "S")
    assert np.allclose(image.header.get_zooms(), 4.0)
    subject = dataset.load(ids[0], BRAIN_SPEC)
    assert subject.image.shape == (4, 8, 32, 32) and subject.image.dtype == np.float32
    assert 0.0 <= subject.image.min() and subject.image.max() <= 1.0
    assert set(np.unique(subject.label).tolist()) <= {0, 1, 2, 4} and (subject.label > 0).any()


def test_ixi_phantom_t1_is_resampled_onto_the_t2_grid_by_the_loader(registry, roots):
    dataset = registry.dataset("phantom-ixi")(roots["phantom-ixi"], TINY["phantom-ixi"])
    ids = dataset.subject_ids()
    assert len(ids) == 2
    t1 = nib.load(str(roots["phantom-ixi"] / f"{ids[0]}-T1.nii.gz"))
    t2 = nib.load(str(roots["phantom-ixi"] / f"{ids[0]}-T2.nii.gz"))
    assert t1.shape != t2.shape and nib.aff2axcodes(t1.affine) != nib.aff2axcodes(t2.affine)
    raw = dataset.read_raw(ids[0])
    head = raw.image > 0.1 * raw.image.reshape(3, -1).max(axis=1)[:, None, None, None]
    overlap = (head[0] & head[1]).sum() / np.sqrt(head[0].sum() * head[1].sum())
    assert overlap > 0.85  # the affines put the sagittal T1 onto the same anatomy as the axial T2
    subject = dataset.load(ids[0], BRAIN_SPEC)
    assert subject.image.shape == (3, 8, 32, 32) and subject.label is None


def test_cardiac_phantom_reads_with_the_acdc_loader(registry, roots):
    dataset = registry.dataset("phantom-cardiac")(roots["phantom-cardiac"], TINY["phantom-cardiac"])
    assert dataset.subject_ids() == ["patient001", "patient002"]
    assert dataset.end_diastolic_frame("patient001") == 1
    subject = dataset.load("patient001", CARDIAC_SPEC)
    assert subject.image.shape == (1, 8, 32, 32)
    assert set(np.unique(subject.label).tolist()) == {0, 1, 2, 3}


def test_second_call_reuses_the_cache(registry, roots):
    marker = roots["phantom-cardiac"] / "patient001" / "Info.cfg"
    before = marker.stat().st_mtime_ns
    assert registry.dataset("phantom-cardiac").prepare_root(TINY["phantom-cardiac"]) == roots["phantom-cardiac"]
    assert marker.stat().st_mtime_ns == before


def test_racing_generators_end_with_one_complete_copy(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("MRIBENCH_CACHE", str(tmp_path))
    options = {"subjects": 1, "seed": 9, "voxel_mm": 6.0}
    cls = registry.dataset("phantom-cardiac")
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: cls.prepare_root(options), range(2)))
    assert roots[0] == roots[1]
    assert sorted(p.name for p in (tmp_path / "phantoms").iterdir() if not p.name.endswith(".lock")) == [roots[0].name]
    assert (roots[0] / "patient001" / "Info.cfg").is_file()


def test_bad_dataset_options_are_one_line_errors(registry):
    with pytest.raises(MribenchError, match="subjects") as info:
        registry.dataset("phantom-brats").prepare_root({"subjects": 0})
    assert "\n" not in str(info.value)
    with pytest.raises(MribenchError, match="shape"):
        registry.dataset("phantom-cardiac").prepare_root({"shape": 3})


DIGEST_SCRIPT = """
import hashlib, json, sys
from mribench.data import phantom_brain as pb, phantom_cardiac as pc
brain = pb.BrainPhantomOptions(subjects=2, seed=5, voxel_mm=6.0)
cardiac = pc.CardiacPhantomOptions(subjects=2, seed=5, voxel_mm=6.0)
arrays = {"brats": [pb.simulate_brats(brain, 1).images["FLAIR"], pb.simulate_brats(brain, 1).tissues.labels],
          "ixi": [pb.simulate_ixi(brain, 1)["sagittal"].images["T1"]],
          "ixi_id": [pb.ixi_id(brain, 1).encode()],
          "cardiac": [pc.simulate_cardiac(cardiac, 1).frames["ES"].image]}
print(json.dumps({k: hashlib.sha256(b"".join(bytes(a) for a in v)).hexdigest() for k, v in arrays.items()}))
"""


def test_generation_is_identical_across_processes():
    outputs = []
    for hash_seed in ("1", "987"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT], capture_output=True, text=True, env=env,
                              check=True)
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    assert len(set(outputs[0].values())) == len(outputs[0])
    assert all(len(h) == 64 for h in outputs[0].values())
    assert hashlib.sha256(b"").hexdigest() not in outputs[0].values()


@pytest.mark.parametrize("name, grid_file", [("phantom-brats", "{sid}/{sid}_t1.nii.gz"),
                                             ("phantom-ixi", "{sid}-T2.nii.gz"),
                                             ("phantom-cardiac", "{sid}/{sid}_frame01.nii.gz")],
                         ids=["brats", "ixi", "cardiac"])
def test_phantom_predictions_go_back_onto_the_source_grid(registry, roots, name, grid_file):
    """A prediction mapped back by to_native has the shape and affine of the file whose grid the loader used (IXI:
    the T2 grid the T1 is resampled onto), and lies where the subject's foreground is."""
    from mribench.data.preprocess import NativeGrid, to_native

    dataset = registry.dataset(name)(roots[name], TINY[name])
    sid = dataset.subject_ids()[0]
    subject = dataset.load(sid, CARDIAC_SPEC if name == "phantom-cardiac" else BRAIN_SPEC)
    grid = NativeGrid.of(subject.meta)
    source = nib.load(str(roots[name] / grid_file.format(sid=sid)))
    native = to_native(subject.image[0], grid)
    assert native.shape == source.shape and np.allclose(grid.affine_array, source.affine, atol=1e-4)
    values = np.asarray(source.dataobj, dtype=np.float32)
    foreground = values > 0.2 * values.max()  # the cardiac phantom has noise (not zeros) outside its signal disc
    assert native[foreground].mean() > 5 * native[~foreground].mean()
