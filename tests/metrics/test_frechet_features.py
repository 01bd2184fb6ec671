"""Fréchet distance against closed forms; FID/FVD weights policy (absent → not computed, wrong hash → refused,
nothing downloaded); the feature path exercised with explicitly labelled TEST-ONLY extractors."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from scipy import linalg

from mribench.errors import MribenchError
from mribench.metrics import features, fid as fid_module
from mribench.metrics.base import EvalContext
from mribench.metrics.features import INCEPTION_FID, add_weights, frames_for_i3d, list_weights, locate
from mribench.metrics.fid import FID
from mribench.metrics.frechet import RunningMoments, frechet_distance
from mribench.metrics.fvd import FVD


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path, monkeypatch):
    """Empty weight folders, and any attempt to download fails the test."""
    monkeypatch.setenv("MRIBENCH_WEIGHTS", str(tmp_path / "weights"))
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "weights"


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)² + (s1 - s2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == \
        pytest.approx(4.0 + 1.0)
    # general SPD: Tr √(Σ1 Σ2) = Tr √(Σ1^½ Σ2 Σ1^½)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    r1 = linalg.sqrtm(s1).real
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(r1 @ s2 @ r1).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-8)


def test_running_moments_match_numpy():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 4))
    moments = RunningMoments()
    moments.add(data[:20])
    moments.add(torch.tensor(data[20:]))
    mean, cov = moments.mean_cov()
    np.testing.assert_allclose(mean, data.mean(0))
    np.testing.assert_allclose(cov, np.cov(data, rowvar=False))


class RandomProjectionTESTONLY:
    """TEST ONLY — a fixed random projection of pooled pixels, never registered nor reachable from the CLI."""

    info = {"name": "TEST-ONLY-random-projection", "file": "", "sha256": "", "pin": "test"}

    def __init__(self):
        self.weight = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))

    def __call__(self, batch):
        pooled = torch.nn.functional.adaptive_avg_pool2d(batch.flatten(0, -3)[:, None], 8).flatten(1)
        return (pooled @ self.weight).reshape(len(batch), -1, 8).mean(1)


class FIDWithTestExtractor(FID):
    """FID's slicing and Fréchet path with the TEST-ONLY extractor (test subclass, never registered)."""

    def prepare(self, context):
        self.extractor = RandomProjectionTESTONLY()


def _brain_subject(seed, noise):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(1, 2, 6, 16, 16, generator=g)
    pred = (target + noise * torch.randn(target.shape, generator=g)).clamp(0, 1)
    mask = torch.tensor([[[True] * 6, [False] * 6]])
    meta = {"subject_id": f"s{seed}", "problem": "missing-modality", "element_names": ["A", "B"], "label": None}
    return pred, target, mask, meta


def test_feature_path_with_test_extractor():
    distances = []
    for noise in (0.0, 0.3):
        metric = FIDWithTestExtractor()
        metric.prepare(None)
        for seed in range(4):
            metric.update(*_brain_subject(seed, noise))
        result = metric.compute()
        assert result.status == "ok" and result.aggregate["n"] == 4 * 6  # 6 slices of 1 missing modality
        assert result.extractor["name"].startswith("TEST-ONLY")
        distances.append(result.aggregate["mean"])
    assert distances[0] == pytest.approx(0.0, abs=1e-6) and distances[1] > 1e-3


def test_fid_fvd_not_computed_without_weights():
    for metric_cls, filename in ((FID, "pt_inception-2015-12-05-6726825d.pth"), (FVD, "i3d_torchscript.pt")):
        metric = metric_cls()
        metric.prepare(EvalContext(task=None, train=None, preset="smoke"))
        metric.update(*_brain_subject(0, 0.1))
        result = metric.compute()
        assert result.status == "not computed"
        assert filename in result.reason and "MRIBENCH_WEIGHTS" in result.reason and "hub" in result.reason
    assert [s.describe() for s in list_weights()] == ["absent", "absent"]


def test_wrong_hash_refused_with_both_hashes(isolated_weights, tmp_path):
    isolated_weights.mkdir(parents=True)
    bad = isolated_weights / INCEPTION_FID.filename
    bad.write_bytes(b"not the inception weights")
    actual = hashlib.sha256(b"not the inception weights").hexdigest()
    with pytest.raises(MribenchError, match=f"{actual}.*6726825d"):
        FID().prepare(EvalContext(task=None, train=None, preset="smoke"))
    assert locate(INCEPTION_FID).describe() == "present, HASH MISMATCH"
    outside = tmp_path / "elsewhere" / INCEPTION_FID.filename
    outside.parent.mkdir()
    outside.write_bytes(b"junk")
    with pytest.raises(MribenchError, match="does not match"):
        add_weights(outside)
    unknown = tmp_path / "random.pt"
    unknown.write_bytes(b"x")
    with pytest.raises(MribenchError, match="not a known weight file"):
        add_weights(unknown)


def test_fid_inception_built_from_local_file_without_download(isolated_weights, monkeypatch):
    # a stand-in state dict with the right architecture (random values): checks construction and loading from
    # the local file only; the pinned prefix is replaced by this file's hash for the test
    import torchvision
    from pytorch_fid import inception as fid

    stand_in = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    for name, block in (("Mixed_5b", fid.FIDInceptionA(192, 32)), ("Mixed_5c", fid.FIDInceptionA(256, 64)),
                        ("Mixed_5d", fid.FIDInceptionA(288, 64)), ("Mixed_6b", fid.FIDInceptionC(768, 128)),
                        ("Mixed_6c", fid.FIDInceptionC(768, 160)), ("Mixed_6d", fid.FIDInceptionC(768, 160)),
                        ("Mixed_6e", fid.FIDInceptionC(768, 192)), ("Mixed_7b", fid.FIDInceptionE_1(1280)),
                        ("Mixed_7c", fid.FIDInceptionE_2(2048))):
        setattr(stand_in, name, block)
    isolated_weights.mkdir(parents=True)
    path = isolated_weights / INCEPTION_FID.filename
    torch.save(stand_in.state_dict(), path)
    digest = features.sha256_of(path)
    monkeypatch.setattr(fid_module, "INCEPTION_FID", dataclasses.replace(INCEPTION_FID, sha256_prefix=digest[:8]))
    metric = FID(batch_size=4)
    metric.prepare(EvalContext(task=None, train=None, preset="smoke"))
    feats = metric.extractor(torch.rand(2, 1, 20, 20))
    assert feats.shape == (2, 2048)
    assert metric.extractor.info["sha256"] == digest


def test_fvd_through_a_test_only_torchscript_file(isolated_weights):
    class TestOnlyI3D(torch.nn.Module):
        """TEST ONLY stand-in with the I3D TorchScript calling convention."""

        def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
            assert x.shape[1] == 3 and x.shape[-1] == 224 and x.shape[2] >= 16
            return torch.stack([x.mean(dim=(1, 2, 3, 4)), x.std(dim=(1, 2, 3, 4)), x[:, :, :, 100:124].mean(
                dim=(1, 2, 3, 4))], dim=1)

    isolated_weights.mkdir(parents=True)
    torch.jit.script(TestOnlyI3D()).save(str(isolated_weights / "i3d_torchscript.pt"))
    assert locate(features.I3D_FVD).describe() == "present, hash not pinned"
    metric = FVD()
    metric.prepare(EvalContext(task=None, train=None, preset="smoke"))
    for seed in range(3):
        metric.update(*_brain_subject(seed, 0.2))
    result = metric.compute()
    assert result.status == "ok" and result.aggregate["n"] == 3 and result.aggregate["mean"] > 0
    assert result.extractor["pin"] == "unpinned" and len(result.extractor["sha256"]) == 64


def test_frames_for_i3d_resamples_short_stacks():
    video = frames_for_i3d(torch.rand(2, 1, 8, 30, 20))
    assert video.shape == (2, 3, 16, 224, 224)
    assert video.min() >= -1 and video.max() <= 1
    assert frames_for_i3d(torch.rand(1, 1, 20, 10, 10)).shape[2] == 20
