"""Pretrained feature extractors and the registry of the weight files they need. Nothing is ever downloaded.

Where a weight file is looked for, in order:
  1. the mribench weights folder: ``$MRIBENCH_WEIGHTS`` if set, else ``<cache_dir()>/weights``
     (``mribench weights add FILE`` copies a verified file there);
  2. the torch hub cache: ``torch.hub.get_dir()/checkpoints`` (where pytorch-fid's own download would land).

Hashes. mribench pins what it can state reliably and says so:
  * ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's FID Inception): its file name carries the first 8 hex
    digits of its SHA-256 — the torch-hub convention that ``torch.hub.load_state_dict_from_url(check_hash=True)``
    enforces. mribench pins that prefix (``6726825d``); a file whose SHA-256 does not start with it is refused,
    with both hashes shown. The full SHA-256 of the file used is recorded with every FID number.
  * ``i3d_torchscript.pt`` (the I3D Kinetics-400 TorchScript of the StyleGAN-V / FVD community): no hash is pinned
    by mribench (none is published with the file); the file's full SHA-256 is recorded with every FVD number so
    results can be compared, and ``mribench weights`` reports it as "present, hash not pinned".
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from mribench.atomic import atomic_path
from mribench.data.base import cache_dir
from mribench.errors import MribenchError

WEIGHTS_ENV = "MRIBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightSpec:
    """A pretrained weight file a metric needs."""

    key: str
    metric: str
    filename: str
    sha256_prefix: str | None
    pin_origin: str
    source: str


INCEPTION_FID = WeightSpec(
    key="inception-fid", metric="fid", filename="pt_inception-2015-12-05-6726825d.pth", sha256_prefix="6726825d",
    pin_origin="SHA-256 prefix carried by the official file name (torch-hub check_hash convention)",
    source="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
)
I3D_FVD = WeightSpec(
    key="i3d-fvd", metric="fvd", filename="i3d_torchscript.pt", sha256_prefix=None,
    pin_origin="not pinned (no published hash); the SHA-256 of the file used is recorded with every result",
    source="the I3D Kinetics-400 TorchScript used by StyleGAN-V's FVD "
           "(https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt)",
)
WEIGHTS: dict[str, WeightSpec] = {spec.key: spec for spec in (INCEPTION_FID, I3D_FVD)}


def weights_dir() -> Path:
    """Where ``mribench weights add`` puts files: $MRIBENCH_WEIGHTS, else <cache_dir()>/weights."""
    return Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else cache_dir() / "weights"


def search_dirs() -> list[tuple[str, Path]]:
    """(how, folder) pairs searched for weight files, in order."""
    how = f"${WEIGHTS_ENV}" if os.environ.get(WEIGHTS_ENV) else "mribench weights folder"
    return [(how, weights_dir()), ("torch hub cache", Path(torch.hub.get_dir()) / "checkpoints")]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class WeightStatus:
    """Where a weight file was looked for, whether it is present, its SHA-256 and whether that matches the pin."""

    spec: WeightSpec
    looked: list[str]
    path: Path | None = None
    sha256: str | None = None

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def verified(self) -> bool:
        return (self.present and self.spec.sha256_prefix is not None
                and self.sha256.startswith(self.spec.sha256_prefix))

    @property
    def mismatch(self) -> bool:
        return self.present and self.spec.sha256_prefix is not None and not self.verified

    def describe(self) -> str:
        if not self.present:
            return "absent"
        if self.spec.sha256_prefix is None:
            return "present, hash not pinned"
        return "present, verified" if self.verified else "present, HASH MISMATCH"

    def absent_reason(self) -> str:
        return (f"weights file {self.spec.filename} for {self.spec.metric} not found (looked in: "
                f"{'; '.join(self.looked)}); get it from {self.spec.source} and run 'mribench weights add FILE' "
                f"(nothing is downloaded at run time)")

    def mismatch_message(self) -> str:
        return (f"{self.path}: SHA-256 {self.sha256} does not match the expected {self.spec.sha256_prefix}… "
                f"({self.spec.pin_origin}); refusing to compute {self.spec.metric} with it")

    def info(self) -> dict[str, str]:
        return {"name": self.spec.key, "file": self.spec.filename, "sha256": self.sha256 or "",
                "pin": self.spec.sha256_prefix or "unpinned"}


def locate(spec: WeightSpec) -> WeightStatus:
    """Find a weight file (first hit in :func:`search_dirs`) and hash it."""
    looked = []
    for how, folder in search_dirs():
        candidate = folder / spec.filename
        looked.append(f"{how}: {candidate}")
        if candidate.is_file():
            return WeightStatus(spec, looked, candidate, sha256_of(candidate))
    return WeightStatus(spec, looked)


def require(spec: WeightSpec) -> WeightStatus:
    """Locate a weight file; a present file with a wrong hash raises MribenchError showing both hashes."""
    status = locate(spec)
    if status.mismatch:
        raise MribenchError(status.mismatch_message())
    return status


def list_weights() -> list[WeightStatus]:
    return [locate(spec) for spec in WEIGHTS.values()]


def add_weights(file: Path) -> Path:
    """Copy a known weight file (matched by its file name) into :func:`weights_dir` after checking its hash."""
    file = Path(file)
    if not file.is_file():
        raise MribenchError(f"{file}: no such file")
    specs = [spec for spec in WEIGHTS.values() if spec.filename == file.name]
    if not specs:
        known = ", ".join(spec.filename for spec in WEIGHTS.values())
        raise MribenchError(f"{file}: not a known weight file name (known: {known})")
    status = WeightStatus(specs[0], [str(file)], file, sha256_of(file))
    if status.mismatch:
        raise MribenchError(status.mismatch_message())
    destination = weights_dir() / file.name
    with atomic_path(destination) as temporary:
        shutil.copyfile(file, temporary)
    return destination


# -- extractors ----------------------------------------------------------------------------------------------
def _fid_inception_from_file(path: Path) -> torch.nn.Module:
    """pytorch-fid's FID Inception network with its state dict read (safely) from a local file.

    pytorch-fid's ``fid_inception_v3`` builds the patched torchvision Inception and then downloads the weights;
    we build the same network from pytorch-fid's public blocks, load the local file, and hand it to pytorch-fid's
    ``InceptionV3`` in place of its downloading builder — so the blocks, resizing and normalisation are exactly
    pytorch-fid's and no network access can happen.
    """
    import torchvision
    from pytorch_fid import inception as fid

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise MribenchError(f"{path}: cannot load the FID Inception weights ({type(exc).__name__}: {exc})") from None
    with mock.patch.object(fid, "fid_inception_v3", return_value=net):
        model = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    return model.eval()


class InceptionFeatures:
    """pytorch-fid's InceptionV3 pool3 features (2048-d) of grey images (N, 1, H, W) in [0, 1].

    Grey is repeated to 3 channels; pytorch-fid resizes to 299×299 (bilinear) and maps [0, 1] to [-1, 1].
    """

    def __init__(self, status: WeightStatus, batch_size: int = 32):
        self.model = _fid_inception_from_file(status.path)
        self.info = status.info()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.model(chunk.expand(-1, 3, -1, -1))[0].flatten(1)
               for chunk in images.split(self.batch_size)]
        return torch.cat(out)


def frames_for_i3d(volumes: torch.Tensor, size: int = 224, min_frames: int = 16) -> torch.Tensor:
    """(N, 1, T, H, W) in [0, 1] → (N, 3, max(T, min_frames), size, size) in [-1, 1].

    Frames are resized to size×size (bilinear); fewer than ``min_frames`` slices are resampled (linearly along
    the slice axis) to ``min_frames``.
    """
    frames = max(volumes.shape[2], min_frames)
    if frames != volumes.shape[2]:
        volumes = F.interpolate(volumes, size=(frames, *volumes.shape[-2:]), mode="trilinear", align_corners=True)
    n, _, t, h, w = volumes.shape
    flat = volumes.transpose(1, 2).reshape(n * t, 1, h, w)
    resized = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    video = resized.reshape(n, t, 1, size, size).transpose(1, 2)
    return (video * 2.0 - 1.0).expand(-1, 3, -1, -1, -1).contiguous()


class I3DFeatures:
    """I3D (Kinetics-400) TorchScript features of volumes as videos (N, 1, T, H, W) in [0, 1].

    Called as the StyleGAN-V FVD detector: ``model(video, rescale=False, resize=False, return_features=True)`` on
    (N, 3, T, 224, 224) in [-1, 1] (we resize and rescale ourselves, see :func:`frames_for_i3d`).
    """

    def __init__(self, status: WeightStatus):
        try:
            self.model = torch.jit.load(str(status.path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001
            raise MribenchError(f"{status.path}: cannot load the I3D TorchScript ({type(exc).__name__})") from None
        self.info = status.info()

    @torch.no_grad()
    def __call__(self, volumes: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(frames_for_i3d(v[None]), rescale=False, resize=False, return_features=True)
                          for v in volumes])
