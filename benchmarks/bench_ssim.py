"""SSIM speed: mribench's separable SSIM vs torchmetrics vs MONAI SSIMMetric on one 64×192×192 pair (a BraTS-sized
missing modality), measured side by side in one run (best of N repeats, same threads). Goal: ours >= 3× faster
than the faster of the two. Also prints the values (they differ by border handling: torchmetrics and MONAI average
a reflection-padded / valid map of their own; ours matches scikit-image).

Usage: python benchmarks/bench_ssim.py [--repeats 5] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch


def best_time(fn, repeats: int) -> tuple[float, float]:
    value = fn()  # warm-up (also the value shown)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from monai.metrics import SSIMMetric
    from torchmetrics.functional.image import structural_similarity_index_measure

    from mribench.metrics.ssim import ssim

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(1, 1, 64, 192, 192, generator=generator)
    pred = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    monai_metric = SSIMMetric(spatial_dims=3, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5)

    with torch.no_grad():
        rows = {
            "mribench": best_time(lambda: ssim(pred[0, 0], target[0, 0], 3), args.repeats),
            "torchmetrics": best_time(lambda: structural_similarity_index_measure(
                pred, target, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0), args.repeats),
            "monai": best_time(lambda: monai_metric(pred, target).mean(), args.repeats),
        }
    ours = rows["mribench"][0]
    print(f"SSIM on a 64x192x192 pair, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'implementation':<14} {'seconds':>8} {'value':>9} {'ours faster by':>15}")
    for name, (seconds, value) in rows.items():
        print(f"{name:<14} {seconds:8.3f} {value:9.5f} {seconds / ours:14.2f}x")
    fastest_other = min(rows["torchmetrics"][0], rows["monai"][0])
    print(f"ratio vs the faster of torchmetrics/MONAI: {fastest_other / ours:.2f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
