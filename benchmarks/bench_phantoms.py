"""Phantom generation speed: seconds per subject per dataset (one process), the projected time of a default-size
dataset with the generator's worker pool, and the time to read a generated subject back with the real loader.

    python benchmarks/bench_phantoms.py [--subjects 4]

Goal: a full default phantom dataset (100 subjects) builds in under 2 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mribench.data import phantom_brain as pb
from mribench.data import phantom_cardiac as pc
from mribench.data.phantom_common import worker_count
from mribench.tasks import PreprocessSpec

DEFAULT_SUBJECTS = 100
GOAL_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4, help="subjects timed per dataset")
    args = parser.parse_args()
    os.environ["MRIBENCH_CACHE"] = tempfile.mkdtemp(prefix="mribench-bench-phantoms-")
    cases = [("phantom-brats", pb.PhantomBratsDataset, pb.BrainPhantomOptions, PreprocessSpec(shape=(32, 96, 96))),
             ("phantom-ixi", pb.PhantomIXIDataset, pb.BrainPhantomOptions, PreprocessSpec(shape=(32, 96, 96))),
             ("phantom-cardiac", pc.PhantomCardiacDataset, pc.CardiacPhantomOptions,
              PreprocessSpec(shape=(32, 96, 96), orientation=None, crop_foreground=False))]
    start = time.perf_counter()
    pb.load_template(pb.BrainPhantomOptions().voxel_mm)
    template_s = time.perf_counter() - start
    print(f"MNI152 template load + preparation (once per process): {template_s:.2f} s")
    workers = worker_count(DEFAULT_SUBJECTS)
    print(f"{'dataset':16s} {'s/subject':>10s} {'default n':>10s} {'projected':>10s} {'vs goal':>8s} "
          f"{'read s':>8s} {'read/gen':>9s}")
    for name, cls, options_model, spec in cases:
        options = options_model(subjects=args.subjects)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            for index in range(args.subjects):
                cls.subject_writer(Path(folder), options, index)
            per_subject = (time.perf_counter() - start) / args.subjects
            dataset = cls(Path(folder), options.model_dump())
            ids = dataset.subject_ids()
            start = time.perf_counter()
            for subject_id in ids:
                dataset.load(subject_id, spec)
            read = (time.perf_counter() - start) / len(ids)
        projected = per_subject * DEFAULT_SUBJECTS / workers + (template_s if name != "phantom-cardiac" else 0.0)
        print(f"{name:16s} {per_subject:10.2f} {DEFAULT_SUBJECTS:10d} {projected:9.0f}s {projected / GOAL_SECONDS:7.2f}x "
              f"{read:8.2f} {read / per_subject:9.2f}")
    print(f"(projected = s/subject x {DEFAULT_SUBJECTS} / {workers} workers + template load; "
          f"'vs goal' < 1 meets the {GOAL_SECONDS:.0f} s goal)")


if __name__ == "__main__":
    main()
