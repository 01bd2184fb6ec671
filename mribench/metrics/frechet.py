"""The Fréchet distance between two feature distributions, shared by FID, FVD and fd-seg.

FD = ||μ_r − μ_s||² + Tr(Σ_r + Σ_s − 2 (Σ_r Σ_s)^½), with Gaussians fitted to the features of real and
synthesised samples (sample covariance, N − 1, as pytorch-fid's ``np.cov``). Features are accumulated as running
sums in float64, so the whole test split never has to be held in memory.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import linalg

from mribench.metrics.base import Metric, MetricResult


class RunningMoments:
    """Running sum and sum of outer products of feature vectors (float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        """features: (N, F)."""
        values = np.asarray(torch.as_tensor(features).detach().cpu().double().numpy()).reshape(len(features), -1)
        if self.total is None:
            self.total = np.zeros(values.shape[1])
            self.outer = np.zeros((values.shape[1], values.shape[1]))
        self.count += values.shape[0]
        self.total += values.sum(axis=0)
        self.outer += values.T @ values

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """(μ (F,), Σ (F, F)) with the unbiased (N − 1) covariance; needs at least 2 samples."""
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    When the product of the covariances is singular (fewer samples than feature dimensions), ``eps`` is added
    to both diagonals before the matrix square root; the imaginary part of the root (numerical noise) is dropped.
    mu: (F,) means, sigma: (F, F) covariances.

    >>> # shifted by (3, 4) with one covariance: the squared distance of the means
    >>> round(frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), np.eye(2)), 6)
    25.0
    >>> round(frechet_distance(np.zeros(1), np.eye(1), np.zeros(1), 4 * np.eye(1)), 6)  # std 1 vs 2: (2 - 1)²
    1.0
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        offset = np.eye(sigma1.shape[0]) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    root = np.real(root)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


class FrechetMetric(Metric):
    """A distribution metric: features of real and synthesised missing elements, compared by Fréchet distance.

    Subclasses set ``self.extractor`` in :meth:`prepare` (or ``self.unavailable`` with the reason) and implement
    :meth:`samples`, which turns one subject's missing elements into (real, synthesised) extractor inputs.
    The extractor is any callable mapping a batch to (N, F) features with an ``info`` dict (name, file, SHA-256).
    ``update`` takes pred, target (1, C, D, H, W) and availability_mask (1, C, D) like every metric; ``compute``
    gives one distance over all subjects (no per-subject values), or "not computed" with the reason.
    The examples of FID, FVD and FD-Seg put a stand-in extractor (mean and std of each input) in place of the
    pretrained network their ``prepare`` loads.
    """

    higher_is_better = False

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.extractor: Any = None
        self.unavailable: str | None = None
        self.real, self.synthesised = RunningMoments(), RunningMoments()

    def samples(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
                meta: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, availability_mask: torch.Tensor,
               meta: dict[str, Any]) -> None:
        if self.extractor is None:
            return
        for real, synthesised in self.samples(pred.float(), target.float(), availability_mask, meta):
            self.real.add(self.extractor(real))
            self.synthesised.add(self.extractor(synthesised))

    def compute(self) -> MetricResult:
        info = getattr(self.extractor, "info", None)
        if self.unavailable is not None:
            return MetricResult.not_computed(self.unavailable, extractor=info)
        if self.real.count < 2:
            return MetricResult.not_computed(f"{self.real.count} sample(s): a Fréchet distance needs at least 2",
                                             extractor=info)
        value = frechet_distance(*self.real.mean_cov(), *self.synthesised.mean_cov())
        return MetricResult(aggregate={"mean": value, "std": None, "n": self.real.count}, extractor=info)
