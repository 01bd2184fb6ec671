"""Convergence of the downstream segmenter: train one variant of a preset for ``--factor`` times its steps (a private
temporary folder, never the segmenter cache), score the protocol's VALIDATION subjects every ``--every`` steps, and
write validation Dice against steps and training seconds as CSV + PNG to ``benchmarks/curves/``. The preset sits on
its plateau when the Dice at ``factor`` × its steps exceeds the Dice at its steps by less than ``--tolerance``.
The network at the preset's steps is the one ``get_segmenter`` trains (same seed, same batches). Test subjects are
read only with ``--test``, once at the end: the Dice of that network on the all-real test volumes (the Dice
table's Full row).

Usage: python benchmarks/segmenter_curve.py --task phantom-brats-missing1 [--preset cpu] [--variant full]
       [--factor 2] [--every 50] [--tolerance 0.01] [--out benchmarks/curves] [--test]
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--variant", default="full", help="full, or the available modalities: T1+T2+FLAIR ...")
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=HERE / "curves")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--test", action="store_true", help="at the end, score the preset's network on the test split")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mribench.data import load_task_data
    from mribench.errors import MribenchError
    from mribench.plugins import registry
    from mribench.metrics.segmenter import (PRESETS, Segmenter, initial_network, mean_dice, regions_for,
                                            train_network, variant_name)
    from mribench.tasks import get_task
    from mribench.training import EMA, TrainState

    try:
        task = get_task(args.task)
        if args.preset not in PRESETS:
            raise MribenchError(f"unknown segmenter preset {args.preset!r}; known: {', '.join(PRESETS)}")
        if args.variant == "full":
            channels = list(range(task.channels))
        else:
            names = args.variant.split("+")
            if task.problem != "missing-modality":
                raise MribenchError(f"task {task.name} has one segmenter, 'full'; not {args.variant!r}")
            if any(n not in task.element_names for n in names):
                raise MribenchError(f"variant {args.variant!r}: not full, nor a '+'-joined subset of "
                                    f"{'+'.join(task.element_names)}")
            channels = sorted(task.element_names.index(n) for n in names)
        data = load_task_data(task, registry().dataset(task.dataset), None)
        if len(data.validation) == 0:
            raise MribenchError(f"task {task.name} has no validation subjects")
    except MribenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    preset = PRESETS[args.preset]
    config = dataclasses.replace(preset, steps=preset.steps * args.factor, save_every=10 ** 9)
    regions = regions_for(task.problem)
    variant = variant_name(channels, task.element_names, task.channels)
    net = initial_network(task, args.preset, channels)
    stride = 2 ** (len(config.blocks_down) - 1)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    ema = EMA(net, config.ema_decay)
    segmenter = Segmenter(ema.model, channels, regions, stride, {}, slicewise=bool(config.slices))
    rows: list[dict[str, float]] = []
    at_preset_weights: dict[str, torch.Tensor] = {}
    # wall and CPU seconds of training only (scoring excluded); CPU seconds do not grow with the machine's load
    clock = {"wall": -time.perf_counter(), "cpu": -time.process_time()}

    def score(step: int) -> None:
        if step % args.every and step != config.steps:
            return
        clock["wall"] += time.perf_counter()
        clock["cpu"] += time.process_time()
        dice = mean_dice(segmenter, data.validation)
        if step == preset.steps:
            at_preset_weights.update(copy.deepcopy(ema.model.state_dict()))
        rows.append({"step": step, "train_seconds": round(clock["wall"], 1),
                     "train_cpu_seconds": round(clock["cpu"], 1), **{k: round(v, 4) for k, v in dice.items()}})
        clock["wall"] -= time.perf_counter()
        clock["cpu"] -= time.process_time()
        print(f"step {step:5d}  {rows[-1]['train_seconds']:7.1f} s  " +
              "  ".join(f"{k} {v:.3f}" for k, v in dice.items()), flush=True)

    with tempfile.TemporaryDirectory() as folder:
        state = TrainState(Path(folder) / "curve.pt", "curve", model=net, opt=opt, ema=ema)
        train_network(net, opt, ema, state, 0, config, data.train, channels, regions, stride, None,
                      f"segmenter {variant}", after_step=score)

    stem = f"segmenter-{task.dataset}-{args.preset}-{variant}"
    args.out.mkdir(parents=True, exist_ok=True)
    _write_csv(args.out / f"{stem}.csv", rows)
    at_preset = next(r for r in rows if r["step"] == preset.steps)
    gain = rows[-1]["mean"] - at_preset["mean"]
    verdict = "plateau" if gain < args.tolerance else "NOT on its plateau"
    title = (f"{stem}: validation Dice ({len(data.validation)} subjects)\n{args.factor}x the steps gains "
             f"{gain:+.3f} ({verdict})")
    _plot(args.out / f"{stem}.png", rows, list(regions) + ["mean"], preset.steps, title)
    load = os.getloadavg()[0]
    print(f"{task.dataset} {args.preset} {variant}: validation mean Dice {at_preset['mean']:.4f} at {preset.steps} "
          f"steps ({at_preset['train_seconds']:.0f} s, {at_preset['train_cpu_seconds']:.0f} CPU s), "
          f"{rows[-1]['mean']:.4f} at {config.steps} ({rows[-1]['train_seconds']:.0f} s, "
          f"{rows[-1]['train_cpu_seconds']:.0f} CPU s); gain {gain:+.4f} (tolerance {args.tolerance}): {verdict}; "
          f"load average {load:.1f}")
    print(f"wrote {args.out / stem}.csv and .png")
    if args.test:
        ema.model.load_state_dict(at_preset_weights)
        test = mean_dice(segmenter, data.test)
        print(f"test ({len(data.test)} subjects, all real) Dice of the {preset.steps}-step network: " +
              "  ".join(f"{k} {v:.4f}" for k, v in test.items()))
    return 0


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    temporary.replace(path)


def _plot(path: Path, rows: list[dict[str, float]], columns: list[str], preset_steps: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    steps = [r["step"] for r in rows]
    for column in columns:
        axis.plot(steps, [r[column] for r in rows], label=column, linewidth=2.0 if column == "mean" else 1.0)
    axis.axvline(preset_steps, color="grey", linestyle="--", linewidth=1, label="preset steps")
    axis.set(xlabel="training steps", ylabel="validation Dice", ylim=(0, 1))
    axis.set_title(title, fontsize=8)
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    temporary = path.with_suffix(".tmp.png")
    figure.savefig(temporary)
    plt.close(figure)
    temporary.replace(path)


if __name__ == "__main__":
    sys.exit(main())
