"""mribench's built-in plugin: its datasets, metrics and task folder, registered through the public hooks."""
from __future__ import annotations

from mribench.plugins import hookimpl
from mribench.tasks import TASKS_DIR


@hookimpl
def mribench_register_datasets() -> list[type]:
    from mribench.data.acdc import ACDCDataset
    from mribench.data.brats import Brats2021Dataset
    from mribench.data.ixi import IXIDataset
    from mribench.data.nifti_folder import NiftiFolderDataset
    from mribench.data.phantom_brain import PhantomBratsDataset, PhantomIXIDataset
    from mribench.data.phantom_cardiac import PhantomCardiacDataset

    return [Brats2021Dataset, IXIDataset, ACDCDataset, NiftiFolderDataset, PhantomBratsDataset, PhantomIXIDataset,
            PhantomCardiacDataset]


@hookimpl
def mribench_register_metrics() -> list[type]:
    from mribench.metrics.dice import Dice
    from mribench.metrics.fdseg import FDSeg
    from mribench.metrics.fid import FID
    from mribench.metrics.fvd import FVD
    from mribench.metrics.psnr import MAE, PSNR
    from mribench.metrics.ssim import SSIM, SSIMNonTumour, SSIMTumour

    return [PSNR, MAE, SSIM, SSIMTumour, SSIMNonTumour, FID, FVD, FDSeg, Dice]


@hookimpl
def mribench_task_dirs() -> list[str]:
    return [str(TASKS_DIR)]
