"""Run-to-run spread of a whole run (fit, synthesis, segmenter, scores) at different torch thread counts.

Each run is a fresh `mribench run` process with its own output folder and its own trained segmenters (the phantom
and preprocessed caches are shared, read through symlinks: they are numpy-only and thread-independent). Repeats at
one thread count must be bit-identical; across thread counts CPU float reductions are summed in another order, so
the numbers differ, and this prints by how much. It is not a speed benchmark (hence no bench_ prefix).

    python benchmarks/spread_threads.py [--method mmt] [--task phantom-brats-missing1] [--preset smoke]
                                        [--threads 1 2] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from itertools import combinations
from pathlib import Path

from mribench.locations import cache_dir


def private_cache(folder: Path) -> Path:
    """A cache sharing every entry of the user's cache but the segmenters (trained again in every run)."""
    folder.mkdir()
    shared = cache_dir()
    for entry in shared.iterdir() if shared.is_dir() else []:
        if entry.name != "segmenters":
            (folder / entry.name).symlink_to(entry.resolve())
    return folder


def one_run(args: argparse.Namespace, threads: int, repeat: int, scratch: Path) -> dict[str, float]:
    label = f"threads{threads}-repeat{repeat}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MRIBENCH_CACHE": str(private_cache(scratch / f"cache-{label}"))}
    out = scratch / f"runs-{label}"
    subprocess.run([sys.executable, "-m", "mribench", "run", "--method", args.method, "--task", args.task,
                    "--preset", args.preset, "--out", str(out)], env=env, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(next(out.rglob("result.json")).read_text())
    return {name: entry["aggregate"]["mean"] for name, entry in sorted(result["metrics"].items())
            if entry.get("status") == "ok" and entry.get("aggregate")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mmt")
    parser.add_argument("--task", default="phantom-brats-missing1")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.method} on {args.task}, preset {args.preset}; load average {os.getloadavg()[0]:.1f}")
    runs: dict[tuple[int, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mribench-spread-") as scratch:
        for threads in args.threads:
            for repeat in range(args.repeats):
                runs[(threads, repeat)] = one_run(args, threads, repeat, Path(scratch))
                shown = ", ".join(f"{name} {value:.6g}" for name, value in runs[(threads, repeat)].items())
                print(f"  {threads} thread(s), run {repeat + 1}: {shown}", flush=True)
    metrics = sorted(set.intersection(*(set(values) for values in runs.values())))
    for (a, b) in combinations(sorted(runs), 2):
        kind = "same threads" if a[0] == b[0] else f"{a[0]} vs {b[0]} threads"
        differences = {m: abs(runs[a][m] - runs[b][m]) for m in metrics}
        identical = all(value == 0 for value in differences.values())
        detail = "bit-identical" if identical else ", ".join(f"|Δ{m}| {d:.3g}" for m, d in differences.items())
        print(f"{kind} (runs {a} and {b}): {detail}")


if __name__ == "__main__":
    main()
