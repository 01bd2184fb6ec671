"""mribench's built-in plugin: its datasets, metrics and task folder, registered through the public hooks.

Classes are registered lazily (by import path, with the facts the listings read), so listing them imports neither
torch nor MONAI; each is imported when first used.
"""
from __future__ import annotations

from mribench.plugins import LazyClass, hookimpl
from mribench.tasks import TASKS_DIR


def _dataset(target: str, name: str, generated: bool) -> LazyClass:
    return LazyClass(f"mribench.data.{target}", name, {"generated": generated})


def _metric(target: str, name: str, higher_is_better: bool) -> LazyClass:
    return LazyClass(f"mribench.metrics.{target}", name, {"higher_is_better": higher_is_better})


@hookimpl
def mribench_register_datasets() -> list[LazyClass]:
    return [
        _dataset("brats:Brats2021Dataset", "brats2021", generated=False),
        _dataset("ixi:IXIDataset", "ixi", generated=False),
        _dataset("acdc:ACDCDataset", "acdc", generated=False),
        _dataset("nifti_folder:NiftiFolderDataset", "nifti-folder", generated=False),
        _dataset("phantom_brain:PhantomBratsDataset", "phantom-brats", generated=True),
        _dataset("phantom_brain:PhantomIXIDataset", "phantom-ixi", generated=True),
        _dataset("phantom_cardiac:PhantomCardiacDataset", "phantom-cardiac", generated=True),
    ]


@hookimpl
def mribench_register_metrics() -> list[LazyClass]:
    return [
        _metric("psnr:PSNR", "psnr", higher_is_better=True),
        _metric("psnr:MAE", "mae", higher_is_better=False),
        _metric("ssim:SSIM", "ssim", higher_is_better=True),
        _metric("ssim:SSIMTumour", "ssim-tumour", higher_is_better=True),
        _metric("ssim:SSIMNonTumour", "ssim-nontumour", higher_is_better=True),
        _metric("fid:FID", "fid", higher_is_better=False),
        _metric("fvd:FVD", "fvd", higher_is_better=False),
        _metric("fdseg:FDSeg", "fd-seg", higher_is_better=False),
        _metric("dice:Dice", "dice", higher_is_better=True),
    ]


@hookimpl
def mribench_register_benchmarks() -> list[LazyClass]:
    return [LazyClass(f"mribench.bench:{cls}", name, {"summary": summary}) for cls, name, summary in (
        ("SSIMBenchmark", "ssim", "SSIM of a 64x192x192 pair: the faster of torchmetrics/MONAI over mribench's "
                                  "(goal >= 3x)"),
        ("CacheBenchmark", "cache", "a preprocessed-cache read vs .nii.gz decode + preprocess of a BraTS-sized "
                                    "subject (goal >= 20x)"),
        ("PhantomBenchmark", "phantoms", "phantom generation: seconds per subject of each generator on one core "
                                         "(goal <= 1 s)"))]


@hookimpl
def mribench_task_dirs() -> list[str]:
    return [str(TASKS_DIR)]
