"""The phantom generators' output is pinned: speed work on them must write the same bytes for the same seed (a
changed output would need a new generator version, and the datasets' results would no longer compare).

Two digests per subject, both over (relative path, content) of every file of the subject:

- ``content``: gzip members decompressed, i.e. the voxels and headers the generator produced;
- ``files``: the files as written. The data fingerprint in every result holds each file's size, so a change in the
  compressed bytes alone (another nibabel or zlib writing the same content) also makes results incomparable.

The BraTS and cardiac digests were taken from the phantom cache that the generators at their current versions
(phantom-brats v1, phantom-cardiac v2) wrote before the first speed work; the IXI ones (subject 4 is a Hammersmith,
3 T subject) from the generator before the second, whose files equal those of the cache behind the leaderboard.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mribench.data import phantom_brain, phantom_cardiac

WRITERS = {"phantom-brats": (phantom_brain.write_brats_subject, phantom_brain.BrainPhantomOptions),
           "phantom-ixi": (phantom_brain.write_ixi_subject, phantom_brain.BrainPhantomOptions),
           "phantom-cardiac": (phantom_cardiac.write_cardiac_subject, phantom_cardiac.CardiacPhantomOptions)}
DIGESTS = {  # (dataset, subject index): (content digest, files digest)
    ("phantom-brats", 0): ("50eefa3388f6716e62c9012af135bdfa3725adc322b2673e2343b328864f4337",
                           "4b37cea7bcce6c8af15baa2605fa92a6fcef558d4482ae22f5127dacd43df672"),
    ("phantom-cardiac", 0): ("bec3c64fc5a50993c56ecc789f48115f8d0b2489ffa2cc1dd2b33774ae93bae4",
                             "94ffd21248000d4d46d4db6309889dbbbd003a2356a78ae41c18042788816d79"),
    ("phantom-ixi", 0): ("ca035c39665bef752fe416e47cb0c75815f104f030fae7515ebfd1889e49f10e",
                         "2a0e031c86bc6f000979aaef2c06ca3d8272fbcb3cbab96dc98b2dd4c8ba76f4"),
    ("phantom-ixi", 4): ("1de7e8d33de98d9cb6c36a6c52f7952a3ebaf117c7aaba5084be660e35e07b0c",
                         "3cdc838be58240ceea98377326e18a64fdb58f923e1fac53f2c115cf5f18683c"),
}


def subject_digest(folder: Path, decompress: bool) -> str:
    """SHA-256 over (relative path, content) of every file under ``folder``; gzip members decompressed if asked."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(gzip.decompress(data) if decompress and path.suffix == ".gz" else data)
    return digest.hexdigest()


@pytest.mark.parametrize("dataset, index", sorted(DIGESTS))
def test_a_generated_subject_has_the_bytes_it_always_had(tmp_path, dataset, index):
    write_subject, options_model = WRITERS[dataset]
    write_subject(tmp_path, options_model(), index)
    content, files = DIGESTS[dataset, index]
    assert subject_digest(tmp_path, decompress=True) == content, "the generator now writes other voxels or headers"
    assert subject_digest(tmp_path, decompress=False) == files, (
        "same content, other compressed bytes: the NIfTI writer or zlib changed, and with them the file sizes in "
        "the results' data fingerprints")


def test_phantom_noise_is_numpys_normal_draw_for_draw():
    from mribench.data.phantom_common import gaussian

    for sigma in (0.013, 2.5):
        expected = np.random.default_rng(7).normal(0.0, sigma, (33, 5, 4)).astype(np.float32)
        noise = gaussian(np.random.default_rng(7), sigma, (33, 5, 4))
        assert noise.dtype == np.float32 and np.array_equal(noise.view(np.int32), expected.view(np.int32))
