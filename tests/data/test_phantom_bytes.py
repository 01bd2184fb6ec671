"""The phantom generators' output is pinned: speed work on them must write the same bytes for the same seed (a
changed output would need a new generator version, and the datasets' results would no longer compare).

Each digest covers every file of one subject (gzip members decompressed: the gzip header's time stamp is not
content). They were taken from the phantom cache that the generators at their current versions (phantom-brats v1,
phantom-cardiac v2) wrote before the speed work, by the same hashing as ``subject_digest``. The IXI generator shares
the template sampling, tissue model, random fields and noise with the BraTS one.
"""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from mribench.data import phantom_brain, phantom_cardiac

WRITERS = {"phantom-brats": (phantom_brain.write_brats_subject, phantom_brain.BrainPhantomOptions),
           "phantom-cardiac": (phantom_cardiac.write_cardiac_subject, phantom_cardiac.CardiacPhantomOptions)}
DIGESTS = {
    ("phantom-brats", 0): "50eefa3388f6716e62c9012af135bdfa3725adc322b2673e2343b328864f4337",
    ("phantom-cardiac", 0): "bec3c64fc5a50993c56ecc789f48115f8d0b2489ffa2cc1dd2b33774ae93bae4",
}


def subject_digest(folder: Path) -> str:
    """SHA-256 over (relative path, content) of every file under ``folder``, gzip members decompressed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(gzip.decompress(data) if path.suffix == ".gz" else data)
    return digest.hexdigest()


@pytest.mark.parametrize("dataset, index", sorted(DIGESTS))
def test_a_generated_subject_has_the_bytes_it_always_had(tmp_path, dataset, index):
    write_subject, options_model = WRITERS[dataset]
    write_subject(tmp_path, options_model(), index)
    assert subject_digest(tmp_path) == DIGESTS[dataset, index]
