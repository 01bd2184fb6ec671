"""PSNR, MAE and SSIM against independent references (scikit-image, torchmetrics, closed forms), and the
missing-elements-only protocol (3D per modality for brain, 2D per slice for cardiac)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mribench.errors import MribenchError
from mribench.metrics.psnr import MAE, PSNR, psnr
from mribench.metrics.ssim import SSIM, SSIMNonTumour, SSIMTumour, ssim, ssim_map


def _pair(shape, seed=0, noise=0.15):
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    pred = np.clip(target + noise * rng.standard_normal(shape), 0, 1)
    return pred, target


def _skimage_ssim(pred, target):
    return structural_similarity(pred, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0)


@pytest.mark.parametrize("shape", [(37, 41), (11, 11), (13, 29, 33), (16, 24, 20)])
def test_ssim_matches_skimage(shape):
    pred, target = _pair(shape)
    ours = ssim(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32), len(shape))
    assert ours.item() == pytest.approx(_skimage_ssim(pred, target), abs=1e-5)


def test_ssim_float64_long_axes_match_skimage_tightly():
    # in float64 the banded-matrix filtering reproduces skimage to rounding error
    pred, target = _pair((11, 12, 83), seed=3)
    ours = ssim(torch.tensor(pred), torch.tensor(target), 3)
    assert ours.item() == pytest.approx(_skimage_ssim(pred, target), abs=1e-10)


def test_ssim_batched_slices_match_per_slice_skimage():
    pred, target = _pair((5, 30, 26), seed=1)
    ours = ssim(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32), 2)
    expected = [_skimage_ssim(p, t) for p, t in zip(pred, target)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_ssim_map_matches_torchmetrics_interior_2d_and_3d():
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    for shape in [(1, 1, 40, 36), (1, 1, 14, 30, 28)]:
        pred, target = (torch.tensor(a, dtype=torch.float64) for a in _pair(shape, seed=2))
        # torchmetrics averages its map over the whole image, reflection-padded at the borders; away from the
        # borders (the windows skimage and we keep) its map must equal ours
        _, full_map = tm_ssim(pred, target, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0,
                              return_full_image=True)
        interior = full_map[(0, 0) + (slice(5, -5),) * (len(shape) - 2)]
        torch.testing.assert_close(ssim_map(pred[0, 0], target[0, 0], len(shape) - 2), interior, atol=1e-9, rtol=0)


def test_ssim_identity_and_too_small():
    image = torch.rand(12, 20, 20)
    assert ssim(image, image, 3).item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(MribenchError, match="window"):
        ssim_map(torch.rand(8, 20, 20), torch.rand(8, 20, 20), 3)


def test_psnr_matches_skimage_and_closed_form():
    pred, target = _pair((6, 20, 20))
    assert psnr(torch.tensor(pred), torch.tensor(target)) == pytest.approx(
        peak_signal_noise_ratio(target, pred, data_range=1.0), abs=1e-9)
    target = torch.zeros(4, 4, dtype=torch.float64)
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-9)  # 10 log10(1 / 0.01)
    assert psnr(target, target) == pytest.approx(100.0)  # MSE floored: capped, never inf


def _meta(subject_id, problem, names, label=None):
    return {"subject_id": subject_id, "problem": problem, "element_names": names, "label": label}


def test_brain_scores_only_missing_modalities_in_3d():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 12, 16, 16)
    pred = target.clone()
    pred[0, 1] = (target[0, 1] + 0.1).clamp(0, 1)          # missing: scored
    pred[0, 0] = 1 - target[0, 0]                          # observed: must not count
    mask = torch.tensor([[True, False, True]])[..., None].expand(1, 3, 12)
    names = ["T1", "T2", "PD"]
    psnr_metric, mae_metric, ssim_metric = PSNR(), MAE(), SSIM()
    for metric in (psnr_metric, mae_metric, ssim_metric):
        metric.update(pred, target, mask, _meta("s1", "missing-modality", names))
    result = psnr_metric.compute()
    assert result.per_subject["s1"] == pytest.approx(psnr(pred[0, 1], target[0, 1]))
    assert set(result.aggregate["per_element"]) == {"T2"}
    assert mae_metric.compute().per_subject["s1"] == pytest.approx((pred[0, 1] - target[0, 1]).abs().mean().item())
    assert ssim_metric.compute().per_subject["s1"] == pytest.approx(ssim(pred[0, 1], target[0, 1], 3).item())


def test_cardiac_scores_each_missing_slice_in_2d_then_averages():
    torch.manual_seed(1)
    target = torch.rand(1, 1, 8, 14, 14)
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    mask = torch.ones(1, 1, 8, dtype=torch.bool)
    mask[0, 0, 2:5] = False
    names = [f"slice{i:02d}" for i in range(8)]
    metric, ssim_metric = PSNR(), SSIM()
    metric.update(pred, target, mask, _meta("c1", "missing-slice", names))
    ssim_metric.update(pred, target, mask, _meta("c1", "missing-slice", names))
    expected = np.mean([psnr(pred[0, 0, d], target[0, 0, d]) for d in (2, 3, 4)])
    result = metric.compute()
    assert result.per_subject["c1"] == pytest.approx(expected)
    assert sorted(result.aggregate["per_element"]) == ["slice02", "slice03", "slice04"]
    expected_ssim = np.mean([_skimage_ssim(pred[0, 0, d].double().numpy(), target[0, 0, d].double().numpy())
                             for d in (2, 3, 4)])
    assert ssim_metric.compute().per_subject["c1"] == pytest.approx(expected_ssim, abs=1e-5)


def test_aggregate_mean_std_over_subjects():
    metric = MAE()
    names = ["A", "B"]
    mask = torch.tensor([[[True] * 4, [False] * 4]])
    for sid, error in (("a", 0.1), ("b", 0.3)):
        target = torch.full((1, 2, 4, 6, 6), 0.5)
        metric.update(target + error, target, mask, _meta(sid, "missing-modality", names))
    aggregate = metric.compute().aggregate
    assert aggregate["mean"] == pytest.approx(0.2)
    assert aggregate["std"] == pytest.approx(0.1)
    assert aggregate["n"] == 2 and aggregate["per_element"]["B"] == pytest.approx(0.2)


def test_regional_ssim_inside_and_outside_tumour():
    torch.manual_seed(2)
    target = torch.rand(1, 2, 14, 20, 20) * 0.9 + 0.1
    pred = target.clone()
    label = torch.zeros(14, 20, 20, dtype=torch.int16)
    label[5:10, 6:14, 6:14] = 2
    # corrupt the tumour region only: tumour SSIM drops, non-tumour windows far from it stay perfect
    pred[0, 1, 5:10, 6:14, 6:14] = torch.rand(5, 8, 8)
    mask = torch.tensor([[[True] * 14, [False] * 14]])
    meta = _meta("s", "missing-modality", ["T1", "T2"], label)
    tumour, nontumour, whole = SSIMTumour(), SSIMNonTumour(), SSIM()
    for metric in (tumour, nontumour, whole):
        metric.update(pred, target, mask, meta)
    full_map = ssim_map(pred[0, 1], target[0, 1], 3)
    inside = label[5:-5, 5:-5, 5:-5] > 0
    assert tumour.compute().per_subject["s"] == pytest.approx(full_map[inside].double().mean().item())
    assert nontumour.compute().per_subject["s"] == pytest.approx(full_map[~inside].double().mean().item())
    assert tumour.compute().per_subject["s"] < whole.compute().per_subject["s"] < 1.0


def test_regional_ssim_not_computed_without_labels():
    metric = SSIMTumour()
    target = torch.rand(1, 2, 12, 12, 12)
    metric.update(target, target, torch.tensor([[[True] * 12, [False] * 12]]),
                  _meta("s", "missing-modality", ["A", "B"]))
    result = metric.compute()
    assert result.status == "not computed" and "label" in result.reason


def test_registered_as_builtins():
    from mribench.plugins import Registry

    registry = Registry(entry_points=False)
    names = {"psnr", "mae", "ssim", "ssim-tumour", "ssim-nontumour"}
    assert names <= set(registry._items["metric"])
