"""``mribench bench``: speed benchmarks as figures measured side by side in one run, their goals, and the JSON a release
keeps under ``benchmarks/history/``.

A benchmark is a class registered through the ``mribench_register_benchmarks`` hook (the core's below through
``mribench.builtins``; the CoPeDiT ones in ``mribench_copedit.bench``) with a ``name``, a one-line ``summary`` and
``run(settings) -> list[Figure]``. A figure keeps one sample per repeat (a ratio of two timings taken in the same
repeat, or a time), so load changes hit both sides of a ratio alike, and is judged on its median.
"""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mribench.allocator import retain_freed_memory
from mribench.errors import MribenchError

RELATIONS = (">=", "<=")


@dataclass(frozen=True)
class BenchSettings:
    """How to run: ``repeats`` samples per figure; ``tiny`` shrinks every problem so the machinery runs in seconds
    (its figures say nothing about speed)."""

    repeats: int = 5
    tiny: bool = False

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise MribenchError(f"--repeats {self.repeats}: give at least 1")


@dataclass(frozen=True)
class Goal:
    """A figure's goal: ``relation`` (">=" or "<=") ``value``, judged on the median."""

    relation: str
    value: float

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"goal relation {self.relation!r}; expected one of {RELATIONS}")

    def met(self, measured: float) -> bool:
        return measured >= self.value if self.relation == ">=" else measured <= self.value

    def __str__(self) -> str:
        return f"{self.relation} {self.value:g}"


@dataclass(frozen=True)
class Figure:
    """One measured figure: its samples (one per repeat) in ``unit`` ("x" for a ratio, "s" for seconds)."""

    name: str
    unit: str
    samples: tuple[float, ...]
    goal: Goal | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.median)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "median": self.median, "min": min(self.samples),
                "max": max(self.samples), "samples": list(self.samples),
                "goal": None if self.goal is None else {"relation": self.goal.relation, "value": self.goal.value},
                "met": self.met, "note": self.note}


class Benchmark:
    """Base class of a benchmark. Subclasses set ``name`` and ``summary`` and implement ``run``."""

    name: str = ""
    summary: str = ""

    def run(self, settings: BenchSettings) -> list[Figure]:
        raise NotImplementedError


@dataclass
class BenchOutcome:
    """What ``run_benchmarks`` measured, with the machine it ran on."""

    settings: BenchSettings
    machine: dict[str, Any]
    figures: dict[str, list[Figure]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def as_json(self) -> dict[str, Any]:
        return {"format": 1, "machine": self.machine, "repeats": self.settings.repeats, "tiny": self.settings.tiny,
                "load_average_1_5_15min": {"before": list(self.load_before), "after": list(self.load_after)},
                "benchmarks": {name: {"wall_seconds": round(self.seconds[name], 2),
                                      "figures": [figure.as_json() for figure in figures]}
                               for name, figures in self.figures.items()}}


# -- timing helpers -------------------------------------------------------------------------------------------
def interleaved_times(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall time of each function per repeat, after one warm-up call each; in every repeat the functions run in
    turn, so a change of load hits all of them alike."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def ratios(numerators: list[float], denominators: list[float]) -> tuple[float, ...]:
    """Per-repeat ratios of two interleaved timing lists."""
    return tuple(n / d for n, d in zip(numerators, denominators, strict=True))


def cpu_model() -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    import importlib.metadata

    import torch

    from mribench.results import provenance

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "mribench": importlib.metadata.version("mribench"), "git_commit": provenance()["git_commit"],
            "freed_memory_retained": retain_freed_memory()}  # applied by run_benchmarks; cached, so only read here


# -- running --------------------------------------------------------------------------------------------------
def benchmark_names() -> list[str]:
    from mribench.plugins import registry

    return registry().names("benchmark")


def resolve(names: list[str]) -> list[str]:
    """The benchmarks to run: ``names`` checked against the registry (unknown ones get "did you mean"), or all."""
    from mribench.errors import UnknownNameError

    known = benchmark_names()
    for name in names:
        if name not in known:
            raise UnknownNameError("benchmark", name, known)
    return list(dict.fromkeys(names)) or known


def run_benchmarks(names: list[str], settings: BenchSettings,
                   on_done: Callable[[str, list[Figure]], None] | None = None) -> BenchOutcome:
    """Run the named benchmarks (checked with ``resolve`` first) in turn; ``on_done`` sees each one's figures."""
    from mribench.plugins import registry

    names = resolve(names)
    benchmarks = {name: registry().get("benchmark", name).cls() for name in names}
    retain_freed_memory()  # measure as the mribench command trains (mribench.allocator)
    outcome = BenchOutcome(settings, machine_facts(), load_before=os.getloadavg())
    for name, benchmark in benchmarks.items():
        start = time.perf_counter()
        outcome.figures[name] = benchmark.run(settings)
        outcome.seconds[name] = time.perf_counter() - start
        if on_done is not None:
            on_done(name, outcome.figures[name])
    outcome.load_after = os.getloadavg()
    return outcome


# -- the core's benchmarks ------------------------------------------------------------------------------------
class SSIMBenchmark(Benchmark):
    """mribench's separable SSIM against the faster of torchmetrics and MONAI on one BraTS-sized 64 x 192 x 192 pair
    (a missing modality). The values differ by border handling (ours matches scikit-image), not the timing."""

    name = "ssim"
    summary = "SSIM of a 64x192x192 pair: the faster of torchmetrics/MONAI over mribench's (goal >= 3x)"

    def run(self, settings: BenchSettings) -> list[Figure]:
        import torch
        from monai.metrics import SSIMMetric
        from torchmetrics.functional.image import structural_similarity_index_measure

        from mribench.metrics.ssim import ssim

        shape = (16, 48, 48) if settings.tiny else (64, 192, 192)
        generator = torch.Generator().manual_seed(0)
        target = torch.rand(1, 1, *shape, generator=generator)
        prediction = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
        monai_ssim = SSIMMetric(spatial_dims=3, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5)
        with torch.no_grad():
            times = interleaved_times({
                "mribench": lambda: ssim(prediction[0, 0], target[0, 0], 3),
                "torchmetrics": lambda: structural_similarity_index_measure(
                    prediction, target, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0),
                "monai": lambda: monai_ssim(prediction, target)}, settings.repeats)
        fastest_other = [min(a, b) for a, b in zip(times["torchmetrics"], times["monai"], strict=True)]
        return [Figure("others / mribench", "x", ratios(fastest_other, times["mribench"]), Goal(">=", 3.0),
                       f"{'x'.join(map(str, shape))} pair"),
                Figure("mribench SSIM", "s", tuple(times["mribench"]))]


class CacheBenchmark(Benchmark):
    """Reading one preprocessed subject from the cache (fingerprinting its source files, memory-mapping the arrays,
    checking their CRC-32, touching every voxel) against decoding its .nii.gz files and preprocessing them again: a
    synthetic head of BraTS's size (4 contrasts of 240 x 240 x 155 int16 + labels) preprocessed to 64 x 192 x 192."""

    name = "cache"
    summary = "a preprocessed-cache read vs .nii.gz decode + preprocess of a BraTS-sized subject (goal >= 20x)"
    subject = "BraTS2021_00000"

    def run(self, settings: BenchSettings) -> list[Figure]:
        from mribench.data.brats import Brats2021Dataset
        from mribench.data.cache import PreprocessedCache
        from mribench.tasks import PreprocessSpec

        source, target = ((60, 60, 40), (16, 48, 48)) if settings.tiny else ((240, 240, 155), (64, 192, 192))
        spec = PreprocessSpec(shape=target, orientation="RAS", crop_foreground=True,
                              slice_window=None if settings.tiny else 90)
        with tempfile.TemporaryDirectory(prefix="mribench-bench-cache-") as folder:
            self.write_subject(Path(folder) / "data", source)
            dataset = Brats2021Dataset(Path(folder) / "data")
            cache = PreprocessedCache(dataset, spec, base=Path(folder) / "cache")
            cache.load(self.subject)  # fills the cache
            times = interleaved_times({
                "decode": lambda: float(dataset.load(self.subject, spec).image.sum()),
                "cache": lambda: float(np.asarray(cache.load(self.subject).image).sum())}, settings.repeats)
        return [Figure("decode / cache read", "x", ratios(times["decode"], times["cache"]), Goal(">=", 20.0),
                       f"synthetic {'x'.join(map(str, source))} subject to {'x'.join(map(str, target))}"),
                Figure("cache read", "s", tuple(times["cache"]))]

    def write_subject(self, root: Path, shape: tuple[int, int, int]) -> None:
        from mribench.data.nifti import write_volume

        folder = root / self.subject
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        index = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
        head = (index ** 2).sum(axis=0) < 0.8
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        for channel, contrast in enumerate(("t1", "t1ce", "t2", "flair")):
            volume = np.where(head, 400 + 100 * np.sin(3 * index[channel % 3]) + rng.normal(0, 20, shape), 0)
            write_volume(folder / f"{self.subject}_{contrast}.nii.gz", volume.astype(np.int16), affine)
        write_volume(folder / f"{self.subject}_seg.nii.gz", (head & (index[0] > 0.5)).astype(np.int16) * 2, affine)


@contextmanager
def one_core() -> Iterator[None]:
    """numpy / scipy / BLAS limited to one thread inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


class PhantomBenchmark(Benchmark):
    """Seconds per subject of each phantom generator (default options, one core, writing the NIfTI files), the
    MNI152 template preparation the brain generators pay once per process, and the projected time of a default
    100-subject dataset on the generator's worker pool."""

    name = "phantoms"
    summary = "phantom generation: seconds per subject of each generator on one core (goal <= 1 s)"

    def run(self, settings: BenchSettings) -> list[Figure]:
        from mribench.data import phantom_brain, phantom_cardiac
        from mribench.data.phantom_common import worker_count

        generators = {"phantom-brats": (phantom_brain.write_brats_subject, phantom_brain.BrainPhantomOptions),
                      "phantom-ixi": (phantom_brain.write_ixi_subject, phantom_brain.BrainPhantomOptions),
                      "phantom-cardiac": (phantom_cardiac.write_cardiac_subject,
                                          phantom_cardiac.CardiacPhantomOptions)}
        subjects = 1 if settings.tiny else settings.repeats
        figures = []
        with one_core():
            phantom_brain.load_template.cache_clear()
            start = time.perf_counter()
            phantom_brain.load_template(phantom_brain.BrainPhantomOptions().voxel_mm)
            template_s = time.perf_counter() - start
            for name, (write_subject, options_model) in generators.items():
                options = options_model(subjects=subjects)
                times = []
                with tempfile.TemporaryDirectory(prefix="mribench-bench-phantoms-") as folder:
                    for index in range(subjects):
                        start = time.perf_counter()
                        write_subject(Path(folder), options, index)
                        times.append(time.perf_counter() - start)
                figures.append(Figure(f"{name} s/subject", "s", tuple(times), Goal("<=", 1.0),
                                      f"subjects 0..{subjects - 1}, one core"))
        default = phantom_brain.BrainPhantomOptions().subjects  # the cardiac default is the same
        workers = worker_count(default)
        slowest = max(figures, key=lambda figure: figure.median)
        projected = tuple(sample * default / workers + template_s for sample in slowest.samples)
        figures.append(Figure("MNI152 template preparation", "s", (template_s,), note="once per process"))
        figures.append(Figure(f"{default} subjects of the slowest, {workers} workers", "s", projected,
                              Goal("<=", 120.0), f"projected from {slowest.name.split()[0]}"))
        return figures


def bench_rows(figures: dict[str, list[Figure]]) -> Iterator[tuple[str, ...]]:
    """Rows of the ratio table: benchmark, figure, median, min, max, goal, met."""
    for name, items in figures.items():
        for figure in items:
            unit = "x" if figure.unit == "x" else " s"
            cells = [f"{value:.3g}{unit}" for value in (figure.median, min(figure.samples), max(figure.samples))]
            met = "-" if figure.met is None else ("yes" if figure.met else "NO")
            yield name, figure.name, *cells, str(figure.goal) if figure.goal else "-", met


def write_json(outcome: BenchOutcome, path: Path) -> None:
    import json

    from mribench.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(outcome.as_json(), indent=2, allow_nan=False) + "\n")
