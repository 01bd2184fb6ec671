"""SSIM with a Gaussian window (σ 1.5, 11 taps) as separable 1-D Gaussian filters in torch: 3D per missing
modality (brain), 2D per missing slice (cardiac); plus BraSyn-style regional SSIM inside / outside the tumour.

Definition (Wang et al. 2004, population covariance, K1 0.01, K2 0.03, data range 1) and border handling match
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: skimage
filters the whole image and then discards a strip of the filter radius (5) around every border before averaging,
so only windows lying fully inside the image count. We compute exactly those windows ("valid" filtering), which
is the same number without the wasted border work.

Each 1-D filter along an axis of length n is one matrix product with a banded (n - 10, n) matrix on contiguous
memory: more multiply-adds than an 11-tap loop, but no padding, no copies and BLAS speed.

Regional SSIM (metrics ``ssim-tumour`` and ``ssim-nontumour``, brain tasks with labels only): the mean of the
same SSIM map over the voxels whose window centre lies in the tumour (label > 0), or outside it but inside the
brain (label == 0 and the target modality > 0), as the BraSyn challenge reports.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import torch

from mribench.errors import MribenchError
from mribench.metrics.elements import ElementMetric

SIGMA = 1.5
TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5 → an 11-tap window, as skimage and scipy.ndimage compute it
K1, K2 = 0.01, 0.03


def gaussian_taps(sigma: float = SIGMA, truncate: float = TRUNCATE) -> torch.Tensor:
    """The normalised 1-D Gaussian (2r + 1,) float64 with r = int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


@lru_cache(maxsize=32)
def band_matrix(n: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """(n - 2r, n) banded matrix whose row i holds the Gaussian taps at columns i .. i + 2r (valid filtering)."""
    taps = gaussian_taps(sigma)
    out_len = n - taps.numel() + 1
    matrix = torch.zeros(out_len, n, dtype=torch.float64)
    for row in range(out_len):
        matrix[row, row:row + taps.numel()] = taps
    return matrix.to(dtype)


def gaussian_filter_valid(values: torch.Tensor, spatial_dims: int, sigma: float = SIGMA) -> torch.Tensor:
    """Separable Gaussian filtering of the last ``spatial_dims`` (2 or 3) axes, keeping only windows fully inside.

    Every 1-D filter is one matrix product with a banded matrix on contiguous memory (no copies, no padding):
    W from the right, H from the left, D from the left with (H, W) flattened.
    """
    values = values @ band_matrix(values.shape[-1], sigma, values.dtype).T
    values = band_matrix(values.shape[-2], sigma, values.dtype) @ values
    if spatial_dims == 3:
        *batch, depth, height, width = values.shape
        flat = band_matrix(depth, sigma, values.dtype) @ values.reshape(*batch, depth, height * width)
        values = flat.reshape(*batch, -1, height, width)
    return values


def ssim_map(pred: torch.Tensor, target: torch.Tensor, spatial_dims: int, data_range: float = 1.0,
             sigma: float = SIGMA) -> torch.Tensor:
    """SSIM at every voxel whose window lies inside the image.

    pred, target: (..., *spatial) with ``spatial_dims`` (2 or 3) trailing spatial axes, each >= the window size.
    Returns (..., *(s - 2r for s in spatial)); mean of it = skimage's SSIM.
    """
    window = gaussian_taps(sigma).numel()
    spatial = pred.shape[-spatial_dims:]
    if min(spatial) < window:
        raise MribenchError(f"SSIM needs every spatial size >= the {window}-voxel window, got {tuple(spatial)}")
    # only the sum of the two variances enters SSIM, so x² + y² is filtered as one map (4 maps instead of 5)
    stacked = torch.stack([pred, target, pred * pred + target * target, pred * target])
    mu_x, mu_y, second_moments, xy = gaussian_filter_valid(stacked, spatial_dims, sigma).unbind(0)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    numerator = (2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)
    denominator = (mu_xx + mu_yy + c1) * (second_moments - mu_xx - mu_yy + c2)
    return numerator / denominator


def window_problem(spatial: tuple[int, ...]) -> str | None:
    """Why SSIM cannot be computed on elements of this spatial shape (a side shorter than the window), else None."""
    window = gaussian_taps().numel()
    if min(spatial) < window:
        return f"SSIM needs every side of an element >= its {window}-voxel window, got {tuple(spatial)}"
    return None


def ssim(pred: torch.Tensor, target: torch.Tensor, spatial_dims: int, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over the last ``spatial_dims`` axes: (..., *spatial) → (...) float64.

    >>> image = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> ssim(image, image, spatial_dims=2).round(decimals=6).tolist()  # two (16, 16) images, each against itself
    [1.0, 1.0]
    >>> bool(ssim(image, 1 - image, spatial_dims=2).max() < 0)  # inverted contrast: anti-correlated
    True
    """
    return ssim_map(pred, target, spatial_dims, data_range).double().flatten(-spatial_dims).mean(-1)


def crop_to_map(region: torch.Tensor, spatial_dims: int, radius: int) -> torch.Tensor:
    """Crop a region mask to the window centres of a valid SSIM map (strip ``radius`` at every border)."""
    for axis in range(-spatial_dims, 0):
        region = region.narrow(axis, radius, region.shape[axis] - 2 * radius)
    return region


class SSIM(ElementMetric):
    """Mean SSIM of each missing element (options ``data_range`` default 1); inputs as
    :class:`~mribench.metrics.psnr.PSNR`: pred, target (1, C, D, H, W), availability_mask (1, C, D).

    >>> target = torch.rand(1, 2, 12, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> availability = torch.tensor([[[True] * 12, [False] * 12]])  # channel 1 missing: one 3D element
    >>> metric = SSIM()
    >>> metric.update(target.clone(), target, availability, {"subject_id": "s1", "element_names": ["T1", "T2"],
    ...                                                       "problem": "missing-modality"})
    >>> round(metric.compute().per_subject["s1"], 6)
    1.0
    >>> SSIM.shape_problem("missing-modality", (8, 16, 16)) is not None  # an 8-slice side is under the window
    True
    """

    name: ClassVar[str] = "ssim"
    display_name: ClassVar[str] = "SSIM"
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = "SSIM (Gaussian σ 1.5, 11 taps) of each missing element: 3D per modality / 2D per slice"
    option_types: ClassVar[dict[str, type]] = {"data_range": float}

    @classmethod
    def shape_problem(cls, problem: str, shape: tuple[int, int, int]) -> str | None:
        return window_problem(shape if problem == "missing-modality" else shape[1:])

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float | None:
        return ssim(pred, target, pred.ndim, float(self.options.get("data_range", 1.0))).item()


class _RegionalSSIM(ElementMetric):
    """SSIM map averaged over a region derived from the tumour label (brain tasks with labels only)."""

    higher_is_better: ClassVar[bool] = True
    option_types: ClassVar[dict[str, type]] = {"data_range": float}

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.skip_reason: str | None = None

    @classmethod
    def shape_problem(cls, problem: str, shape: tuple[int, int, int]) -> str | None:
        return window_problem(shape) if problem == "missing-modality" else None

    def region(self, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, pred: torch.Tensor, target: torch.Tensor, meta: dict[str, Any],
              element: tuple[int, int | None]) -> float | None:
        if meta["problem"] != "missing-modality":
            self.skip_reason = "regional SSIM is defined for brain tumour labels (missing-modality tasks) only"
            return None
        if meta.get("label") is None:
            self.skip_reason = "the dataset has no tumour labels"
            return None
        label = torch.as_tensor(meta["label"])
        similarity = ssim_map(pred, target, 3, float(self.options.get("data_range", 1.0)))
        radius = (pred.shape[-1] - similarity.shape[-1]) // 2
        region = crop_to_map(self.region(label, target), 3, radius)
        if not region.any():
            return None
        return similarity.double()[region].mean().item()

    def empty_reason(self) -> str:
        return self.skip_reason or "no subject had voxels in the region"


class SSIMTumour(_RegionalSSIM):
    """SSIM map averaged inside the tumour; needs ``meta["label"]`` (D, H, W), brain tasks only.

    >>> target = torch.rand(1, 2, 12, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> pred = target.clone(); pred[0, 1, :, :8] = 0  # the top half of the missing channel is lost
    >>> label = torch.zeros(12, 16, 16, dtype=torch.int16); label[4:8, 2:6, 4:12] = 1  # tumour in the top half
    >>> meta = {"subject_id": "s1", "element_names": ["T1", "T2"], "problem": "missing-modality", "label": label}
    >>> availability = torch.tensor([[[True] * 12, [False] * 12]])
    >>> tumour, elsewhere = SSIMTumour(), SSIMNonTumour()
    >>> for metric in (tumour, elsewhere):
    ...     metric.update(pred, target, availability, meta)
    >>> tumour.compute().per_subject["s1"] < elsewhere.compute().per_subject["s1"]
    True
    """

    name: ClassVar[str] = "ssim-tumour"
    display_name: ClassVar[str] = "SSIM (tumour)"
    description: ClassVar[str] = "SSIM averaged inside the tumour (label > 0), per missing modality (BraSyn)"

    def region(self, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return label > 0


class SSIMNonTumour(_RegionalSSIM):
    """SSIM map averaged over the brain outside the tumour (label 0, target > 0); example: :class:`SSIMTumour`."""

    name: ClassVar[str] = "ssim-nontumour"
    display_name: ClassVar[str] = "SSIM (non-tumour)"
    description: ClassVar[str] = "SSIM averaged over brain outside the tumour (label 0, target > 0) (BraSyn)"

    def region(self, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (label == 0) & (target > 0)
