"""Preprocessed cache vs decoding the .nii.gz files and preprocessing them again, side by side in one run.

One BraTS-sized subject (4 contrasts of 240×240×155 int16 + labels, gzip-compressed) preprocessed to the
brats-missing tasks' 64×192×192: the real case of ../shared/data when present, else a synthetic subject of that size.
The cache read includes everything a run does on a hit: fingerprinting the source files, memory-mapping the arrays,
checking their CRC-32 and touching every voxel. Goal: the cache read is >= 10x faster.

    python benchmarks/bench_cache.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mribench.data.brats import Brats2021Dataset
from mribench.data.cache import PreprocessedCache
from mribench.data.nifti import write_volume
from mribench.tasks import PreprocessSpec

SUBJECT = "BraTS2021_00000"
SHARED_CASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "brain" / "TCGA-DU-7294"
SPEC = PreprocessSpec(shape=(64, 192, 192), orientation="RAS", crop_foreground=True, slice_window=90)
NAMES = ("t1", "t1ce", "t2", "flair", "seg")


def make_subject(root: Path) -> str:
    """The shared real case linked into BraTS 2021's layout, or a synthetic head of BraTS's size."""
    folder = root / SUBJECT
    folder.mkdir(parents=True)
    if SHARED_CASE.is_dir():
        for name in NAMES:
            (folder / f"{SUBJECT}_{name}.nii.gz").symlink_to(SHARED_CASE / f"TCGA-DU-7294_{name}.nii.gz")
        return f"real case {SHARED_CASE.name}"
    rng = np.random.default_rng(0)
    index = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (240, 240, 155)], indexing="ij"))
    head = (index ** 2).sum(axis=0) < 0.8
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for contrast, name in enumerate(NAMES[:4]):
        volume = np.where(head, 400 + 100 * np.sin(3 * index[contrast % 3]) + rng.normal(0, 20, head.shape), 0)
        write_volume(folder / f"{SUBJECT}_{name}.nii.gz", volume.astype(np.int16), affine)
    write_volume(folder / f"{SUBJECT}_seg.nii.gz", (head & (index[0] > 0.5)).astype(np.int16) * 2, affine)
    return "synthetic 240x240x155 subject"


def best_of(repeats: int, action) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        what = make_subject(Path(tmp) / "data")
        dataset = Brats2021Dataset(Path(tmp) / "data")
        cache = PreprocessedCache(dataset, SPEC, base=Path(tmp) / "cache")
        cache.load(SUBJECT)  # fill

        def decode_and_preprocess():
            subject = dataset.load(SUBJECT, SPEC)
            return float(subject.image.sum())

        def cache_read():
            subject = cache.load(SUBJECT)
            return float(np.asarray(subject.image).sum())

        decode = best_of(args.repeats, decode_and_preprocess)
        cached = best_of(args.repeats, cache_read)
    print(f"subject: {what}; preprocessed to (4, {', '.join(map(str, SPEC.shape))}); best of {args.repeats}")
    print(f"{'path':<34}{'seconds':>10}")
    print(f"{'.nii.gz decode + preprocess':<34}{decode:>10.3f}")
    print(f"{'cache read (verified, mmap)':<34}{cached:>10.3f}")
    print(f"speed-up: {decode / cached:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
