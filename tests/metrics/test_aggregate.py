"""Aggregation: bootstrap CI, paired Wilcoxon (vs scipy on the common subjects), per-subject CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import stats

from mribench.errors import MribenchError
from mribench.metrics.aggregate import bootstrap_ci, paired_wilcoxon, summarize, write_per_subject_csv
from mribench.metrics.base import MetricResult


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(5, 1, 20), rng.normal(5, 1, 2000)
    low_s, high_s = bootstrap_ci(small)
    low_l, high_l = bootstrap_ci(large)
    assert low_s < small.mean() < high_s and low_l < large.mean() < high_l
    assert high_l - low_l < (high_s - low_s) / 4
    # normal-theory interval for large n: mean ± 1.96 sd / sqrt(n)
    half = 1.96 * large.std() / np.sqrt(large.size)
    assert (low_l, high_l) == pytest.approx((large.mean() - half, large.mean() + half), abs=0.02)
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded


def test_summarize():
    summary = summarize({"a": 1.0, "b": 3.0})
    assert summary["mean"] == 2.0 and summary["std"] == 1.0 and summary["n"] == 2
    assert 1.0 <= summary["ci95"][0] <= summary["ci95"][1] <= 3.0


def test_paired_wilcoxon_uses_common_subjects_only():
    rng = np.random.default_rng(1)
    a = {f"s{i}": float(v) for i, v in enumerate(rng.normal(1.0, 0.5, 30))}
    b = {f"s{i}": a[f"s{i}"] - 0.3 + float(rng.normal(0, 0.1)) for i in range(25)}
    b["only-b"] = 100.0
    common = sorted(set(a) & set(b))
    expected = stats.wilcoxon([a[s] - b[s] for s in common]).pvalue
    assert paired_wilcoxon(a, b) == pytest.approx(expected)
    assert paired_wilcoxon(a, b) < 0.001
    assert paired_wilcoxon(a, dict(a)) == 1.0
    with pytest.raises(MribenchError, match="share no subject"):
        paired_wilcoxon({"x": 1.0}, {"y": 1.0})


def test_per_subject_csv(tmp_path):
    results = {"psnr": MetricResult.from_per_subject({"s1": 20.5, "s2": 22.0}),
               "ssim": MetricResult.from_per_subject({"s2": 0.8}),
               "fid": MetricResult.not_computed("no weights")}
    path = tmp_path / "run" / "per_subject.csv"
    write_per_subject_csv(results, path, {"s1": "0111", "s2": "1011", "s3": "1101"})
    rows = list(csv.DictReader(path.open()))
    assert [r["subject_id"] for r in rows] == ["s1", "s2", "s3"], "a subject scored by no metric keeps its pattern"
    assert [r["availability"] for r in rows] == ["0111", "1011", "1101"] and rows[2]["psnr"] == ""
    assert float(rows[0]["psnr"]) == 20.5 and rows[0]["ssim"] == "" and float(rows[1]["ssim"]) == 0.8
    assert "fid" not in rows[0]
    assert not list(tmp_path.glob("run/.*tmp"))
