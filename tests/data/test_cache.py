"""The preprocessed cache: hits are memory-mapped and equal, changes rebuild one subject, damage is detected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mribench.data.brats import Brats2021Dataset
from mribench.data.cache import ENTRY_FILE, PreprocessedCache
from mribench.errors import BadDataError
from mribench.tasks import PreprocessSpec

SPEC = PreprocessSpec(shape=(8, 12, 12), slice_window=12)


class CountingBrats(Brats2021Dataset):
    """Counts how often each subject is decoded + preprocessed (i.e. built, not read from the cache)."""

    name = "brats2021"

    def __init__(self, root, options=None):
        super().__init__(root, options)
        self.builds: dict[str, int] = {}
        self._lock = threading.Lock()

    def load(self, subject_id, preprocess):
        with self._lock:
            self.builds[subject_id] = self.builds.get(subject_id, 0) + 1
        return super().load(subject_id, preprocess)


@pytest.fixture
def brats(tmp_path, layouts):
    ids = layouts.brats(tmp_path / "data", n=3)
    return CountingBrats(tmp_path / "data"), ids


def test_second_load_is_a_memory_mapped_hit_equal_to_the_first(tmp_path, brats):
    dataset, ids = brats
    cache = PreprocessedCache(dataset, SPEC, base=tmp_path / "cache")
    first = cache.load(ids[0])
    second = cache.load(ids[0])
    assert dataset.builds == {ids[0]: 1}
    assert isinstance(second.image, np.memmap) and not second.image.flags.writeable
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.label, second.label)
    np.testing.assert_allclose(first.affine, second.affine)
    record = json.loads((cache.entry_dir(ids[0]) / ENTRY_FILE).read_text())
    source = record["sources"][0]
    assert set(source) == {"path", "size", "mtime_ns", "header_sha256"} and len(record["sources"]) == 5
    assert source["size"] == os.path.getsize(source["path"])


def test_changed_source_or_spec_rebuilds_just_that(tmp_path, brats, layouts):
    dataset, ids = brats
    cache = PreprocessedCache(dataset, SPEC, base=tmp_path / "cache")
    for subject_id in ids:
        cache.load(subject_id)
    flair = dataset.root / ids[1] / f"{ids[1]}_flair.nii.gz"
    stat = flair.stat()
    os.utime(flair, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert [cache.status(s) for s in ids] == ["valid", "stale", "valid"]
    for subject_id in ids:
        cache.load(subject_id)
    assert dataset.builds == {ids[0]: 1, ids[1]: 2, ids[2]: 1}
    other_spec = PreprocessedCache(dataset, SPEC.model_copy(update={"shape": (8, 10, 10)}), base=tmp_path / "cache")
    assert other_spec.folder != cache.folder and other_spec.status(ids[0]) == "absent"
    assert other_spec.load(ids[0]).image.shape == (4, 8, 10, 10)


@pytest.mark.parametrize("damage", ["flip-bytes", "truncate", "garbage-index"])
def test_damaged_entry_is_detected_and_rebuilt(tmp_path, brats, damage):
    dataset, ids = brats
    cache = PreprocessedCache(dataset, SPEC, base=tmp_path / "cache")
    original = np.array(cache.load(ids[0]).image)
    entry = cache.entry_dir(ids[0])
    if damage == "flip-bytes":
        data = bytearray((entry / "image.npy").read_bytes())
        data[-100:-90] = bytes(10)
        (entry / "image.npy").write_bytes(bytes(data))
    elif damage == "truncate":
        with open(entry / "image.npy", "r+b") as fh:
            fh.truncate(300)
    else:
        (entry / ENTRY_FILE).write_text("{not json")
    assert cache.status(ids[0]).startswith("corrupt")
    rebuilt = cache.load(ids[0])
    assert cache.rebuilt == [ids[0]] and dataset.builds[ids[0]] == 2
    np.testing.assert_array_equal(rebuilt.image, original)
    assert cache.status(ids[0]) == "valid"


def test_concurrent_fills_build_each_subject_once(tmp_path, brats):
    """Four workers (separate cache objects, as separate processes would have) fill one cache at the same time."""
    dataset, ids = brats

    def fill(_):
        cache = PreprocessedCache(dataset, SPEC, base=tmp_path / "cache")
        return [cache.load(s).image.sum() for s in ids]

    with ThreadPoolExecutor(max_workers=4) as pool:
        sums = list(pool.map(fill, range(4)))
    assert dataset.builds == {s: 1 for s in ids}
    assert all(np.allclose(s, sums[0]) for s in sums)
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_bad_subject_writes_nothing(tmp_path, brats):
    dataset, ids = brats
    (dataset.root / ids[2] / f"{ids[2]}_t2.nii.gz").write_bytes(b"not a nifti at all")
    cache = PreprocessedCache(dataset, SPEC, base=tmp_path / "cache")
    with pytest.raises(BadDataError, match=rf"{ids[2]}_t2\.nii\.gz"):
        cache.load(ids[2])
    assert not cache.entry_dir(ids[2]).exists()
    assert [p.name for p in cache.folder.rglob("*") if p.is_file() and p.suffix != ".lock"] == []


FILL_SCRIPT = """
import os, sys
from pathlib import Path
from mribench.data.brats import Brats2021Dataset
from mribench.data.cache import PreprocessedCache
from mribench.tasks import PreprocessSpec

class Logged(Brats2021Dataset):
    def load(self, subject_id, preprocess):
        with open(sys.argv[3], "a") as log:
            log.write(f"{subject_id} {os.getpid()}\\n")
        return super().load(subject_id, preprocess)

dataset = Logged(Path(sys.argv[1]))
cache = PreprocessedCache(dataset, PreprocessSpec.model_validate_json(sys.argv[4]), base=Path(sys.argv[2]))
for subject_id in dataset.subject_ids():
    cache.load(subject_id)
"""


def test_two_processes_filling_one_cache_build_each_subject_once(tmp_path, brats):
    dataset, ids = brats
    log = tmp_path / "builds.log"
    command = [sys.executable, "-c", FILL_SCRIPT, str(dataset.root), str(tmp_path / "cache"), str(log),
               SPEC.model_dump_json()]
    workers = [subprocess.Popen(command) for _ in range(2)]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    built = sorted(line.split()[0] for line in log.read_text().splitlines())
    assert built == sorted(ids)
    (key_folder,) = (tmp_path / "cache" / "preprocessed" / "brats2021").iterdir()  # both used one cache
    files = sorted(str(p.relative_to(key_folder)) for p in key_folder.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert files == sorted(f"{s}/{name}" for s in ids for name in (ENTRY_FILE, "image.npy", "label.npy"))
