"""Preprocessed subjects cached as ``.npy`` once per (dataset, root, options, preprocessing spec).

Layout: ``cache_dir()/preprocessed/<dataset>/<key>/<subject>/{image.npy, label.npy, entry.json}`` where ``key`` hashes
the cache format, the loader class, the resolved root, the dataset options and the spec. ``entry.json`` is the
subject's index record and is written last: each source file's size, mtime and header SHA-256, each array's shape,
dtype and CRC-32, the affine and the loader's meta. A read re-fingerprints the sources and checks the arrays; a changed
source file rebuilds just that subject, an entry damaged on disk is detected and rebuilt.

Writes go to a temporary file that is renamed into place; a per-subject lock file (``fcntl.flock``) makes two
processes filling the same cache build each subject once, and the temp files of a killed builder are swept by the
next one. Bad data raises before anything is written.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mribench.atomic import atomic_path, atomic_write_bytes, file_lock, sweep_temporaries
from mribench.data.base import Subject, cache_dir
from mribench.data.nifti import NiftiDataset, file_fingerprint
from mribench.tasks import PreprocessSpec

CACHE_FORMAT = 3  # bump when preprocessing changes what it produces (2: meta holds the native grid; 3: fixed threads)
ENTRY_FILE = "entry.json"


def _checksum(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array))


class PreprocessedCache:
    """Loads subjects of a NIfTI dataset preprocessed by ``spec``, from the cache when its entry is valid.

    ``rebuilt`` lists the subjects whose entry was found damaged on disk (and rebuilt) during this object's life.
    """

    def __init__(self, dataset: NiftiDataset, spec: PreprocessSpec, base: Path | None = None):
        self.dataset = dataset
        self.spec = spec
        payload = {"format": CACHE_FORMAT, "dataset": dataset.name,
                   "loader": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
                   "root": str(Path(dataset.root).resolve()), "options": dataset.options,
                   "spec": spec.model_dump(mode="json")}
        self.key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        self.folder = Path(base or cache_dir()) / "preprocessed" / dataset.name / self.key[:16]
        self.rebuilt: list[str] = []

    def entry_dir(self, subject_id: str) -> Path:
        return self.folder / subject_id

    # -- public -------------------------------------------------------------------------------------------------
    def load(self, subject_id: str) -> Subject:
        """The preprocessed subject (arrays memory-mapped read-only when they come from the cache)."""
        sources = [file_fingerprint(p) for p in self.dataset.source_files(subject_id)]
        subject, status = self._read_entry(subject_id, sources)
        if subject is not None:
            return subject
        with file_lock(self.folder / ".locks" / f"{subject_id}.lock"):
            subject, status = self._read_entry(subject_id, sources)  # another process may have built it meanwhile
            if subject is not None:
                return subject
            sweep_temporaries(self.entry_dir(subject_id))  # what a killed builder left
            if status.startswith("corrupt"):
                self.rebuilt.append(subject_id)
            fresh = self.dataset.load(subject_id, self.spec)
            self._write(subject_id, fresh, sources)
        return fresh

    def status(self, subject_id: str) -> str:
        """``valid``, ``absent``, ``stale`` (a source changed) or ``corrupt: <why>`` — without building anything."""
        sources = [file_fingerprint(p) for p in self.dataset.source_files(subject_id)]
        return self._read_entry(subject_id, sources)[1]

    # -- internals ----------------------------------------------------------------------------------------------
    def _read_entry(self, subject_id: str, sources: list[dict[str, Any]]) -> tuple[Subject | None, str]:
        folder = self.entry_dir(subject_id)
        try:
            record = json.loads((folder / ENTRY_FILE).read_text())
        except FileNotFoundError:
            return None, "absent"
        except (OSError, ValueError) as exc:
            return None, f"corrupt: {ENTRY_FILE} unreadable ({type(exc).__name__})"
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
            return None, f"corrupt: {ENTRY_FILE} has an unknown format"
        if record.get("sources") != sources:
            return None, "stale"
        arrays: dict[str, np.ndarray] = {}
        for name, info in record.get("arrays", {}).items():
            path = folder / f"{name}.npy"
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                return None, f"corrupt: {path.name} unreadable ({type(exc).__name__})"
            if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
                return None, f"corrupt: {path.name} has shape {array.shape} {array.dtype}, index says {info}"
            if _checksum(array) != info["crc32"]:
                return None, f"corrupt: {path.name} checksum mismatch"
            arrays[name] = array
        if "image" not in arrays:
            return None, f"corrupt: {ENTRY_FILE} lists no image"
        subject = Subject(subject_id=subject_id, image=arrays["image"], affine=np.asarray(record["affine"]),
                          label=arrays.get("label"), meta=record.get("meta", {}))
        return subject, "valid"

    def _write(self, subject_id: str, subject: Subject, sources: list[dict[str, Any]]) -> None:
        folder = self.entry_dir(subject_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ENTRY_FILE).unlink(missing_ok=True)
        arrays = {"image": subject.image, "label": subject.label}
        infos = {}
        for name, array in arrays.items():
            path = folder / f"{name}.npy"
            if array is None:
                path.unlink(missing_ok=True)
                continue
            array = np.ascontiguousarray(array)
            with atomic_path(path, suffix=".npy") as temporary:
                np.save(temporary, array, allow_pickle=False)
            infos[name] = {"shape": list(array.shape), "dtype": str(array.dtype), "crc32": _checksum(array)}
        record = {"format": CACHE_FORMAT, "subject_id": subject_id, "sources": sources, "arrays": infos,
                  "affine": np.asarray(subject.affine, dtype=np.float64).tolist(), "meta": subject.meta,
                  "spec": self.spec.model_dump(mode="json")}
        text = json.dumps(record, indent=1, default=str).encode()
        atomic_write_bytes(folder / ENTRY_FILE, text)
