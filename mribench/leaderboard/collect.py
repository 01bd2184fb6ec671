"""Collecting stored results for a table: grouped by (task, method, preset), checked for mixing, and described.

Results of one task must share the task hash, the test subjects, the data and, per metric, the extractor weights;
otherwise the table is refused with a message saying which results differ.

Results describe themselves: each metric entry records ``higher_is_better``, ``unit`` and ``display_name``, and the
method entry its ``display_name``, ``family`` and ``ablation_rows``. Results written before those fields existed are
described by the ``fallback`` (:class:`Descriptions`, e.g. the installed plugins, which the CLI passes); without one,
a metric has no direction (no best/second marks) and a method shows its registry name in family "other" (and fills
no ablation table).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from mribench.errors import MribenchError
from mribench.method import AblationRow, MethodDescription, config_hash
from mribench.metrics.base import MetricDescription
from mribench.results import DamagedResultError, Result, find_results

METRIC_ORDER = ("psnr", "ssim", "mae", "fid", "fvd", "fd-seg", "dice")
RowKey = tuple[str, str]  # (method name, preset)
OTHER_FAMILY = "other"


class Descriptions(Protocol):
    """Where descriptions absent from older results come from (:class:`mribench.plugins.Registry` is one)."""

    def metric_description(self, name: str) -> MetricDescription | None: ...

    def method_description(self, name: str) -> MethodDescription | None: ...

    def method_descriptions(self) -> list[MethodDescription]: ...

    def preset_config(self, method: str, preset: str, problem: str) -> Any | None: ...


# -- collection ----------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """Every result of the requested tasks: (task, method, preset) → results sorted by seed, with their paths."""

    tasks: list[str]
    results: dict[tuple[str, str, str], list[tuple[Path, Result]]]
    fallback: Descriptions | None = None

    def rows(self, task: str | None = None) -> list[RowKey]:
        return sorted({(m, p) for (t, m, p) in self.results if task is None or t == task})

    def get(self, task: str, row: RowKey) -> list[Result]:
        return [result for _, result in self.results.get((task, *row), [])]

    def task_info(self, task: str) -> dict:
        return next(items[0][1].task for (t, _, _), items in self.results.items() if t == task)

    def metrics(self, task: str) -> list[str]:
        names = {m for (t, _, _), items in self.results.items() if t == task for _, r in items for m in r.metrics}
        return sorted(names, key=metric_order)

    def all_results(self) -> list[tuple[Path, Result]]:
        return [item for key in sorted(self.results) for item in self.results[key]]

    # -- descriptions: the results' own, else the fallback's -------------------------------------------------
    def metric_description(self, metric: str) -> MetricDescription | None:
        for _, result in self.all_results():
            entry = result.metrics.get(metric) or {}
            if entry.get("higher_is_better") is not None:
                return MetricDescription(bool(entry["higher_is_better"]), str(entry.get("unit") or ""),
                                         str(entry.get("display_name") or metric))
        return self.fallback.metric_description(metric) if self.fallback else None

    def higher_is_better(self, metric: str) -> bool | None:
        """None when neither the results nor the fallback say (no best/second marks then)."""
        description = self.metric_description(metric)
        return None if description is None else description.higher_is_better

    def metric_label(self, metric: str) -> str:
        description = self.metric_description(metric)
        return description.display_name if description else metric

    def method_description(self, method: str) -> MethodDescription:
        """The results' own description, else the fallback's; a result that predates ``ablation_rows`` takes them
        from the fallback."""
        def fallback() -> MethodDescription | None:
            return self.fallback.method_description(method) if self.fallback else None

        for (_, name, _), items in sorted(self.results.items()):
            recorded = items[0][1].method
            if name == method and recorded.get("display_name"):
                if "ablation_rows" in recorded:
                    rows = tuple(AblationRow.from_json(row) for row in recorded["ablation_rows"])
                else:
                    rows = described.ablation_rows if (described := fallback()) else ()
                return MethodDescription(method, recorded["display_name"], recorded.get("family") or OTHER_FAMILY,
                                         rows)
        return fallback() or MethodDescription(method, method, OTHER_FAMILY)

    def outdated(self, row: RowKey, results: list[Result]) -> bool:
        """Whether any of ``results`` (of ``row``) was made with another config than the installed preset's on its
        task's problem (the fallback's); False for results whose method or preset the fallback does not know."""
        if self.fallback is None:
            return False
        for result in results:
            installed = self.fallback.preset_config(*row, result.task.get("problem", ""))
            if installed is not None and result.method.get("config_hash") != config_hash(installed):
                return True
        return False

    def display_name(self, method: str) -> str:
        return self.method_description(method).display_name

    def family(self, method: str) -> str:
        return self.method_description(method).family

    def family_of_display_name(self, display_name: str) -> str:
        """Family of a method known by its display name only (a method the paper reports but nobody ran here)."""
        known = [self.method_description(method) for method in dict.fromkeys(m for _, m, _ in self.results)]
        known += self.fallback.method_descriptions() if self.fallback else []
        return next((d.family for d in known if d.display_name == display_name), OTHER_FAMILY)


def collect(tasks: list[str], runs: Path, fallback: Descriptions | None = None) -> Collection:
    """Read the results of ``tasks`` under ``runs``; refuses a task without results or with mixed hashes/extractors.
    ``fallback`` describes metrics and methods of results that predate self-description."""
    grouped: dict[tuple[str, str, str], list[tuple[Path, Result]]] = defaultdict(list)
    for task in dict.fromkeys(tasks):
        try:
            found = find_results(runs, task)
        except DamagedResultError as exc:
            raise MribenchError(f"{exc}; rerun its 'mribench run' command (it redoes the evaluation) or delete the "
                                "file") from None
        if not found:
            raise MribenchError(f"no results for task {task!r} under {runs}; run 'mribench run --task {task} ...'")
        for path, result in found:
            grouped[(task, result.method["name"], result.method["preset"])].append((path, result))
    for items in grouped.values():
        items.sort(key=lambda item: item[1].seed)
    _check_consistent(grouped)
    return Collection(tasks=list(dict.fromkeys(tasks)), results=dict(grouped), fallback=fallback)


def _check_consistent(grouped) -> None:
    """Results of one task share a column only when computed on the same thing: same task hash, same test subjects
    (split hash and subject list: a ``--skip-bad`` run on fewer subjects is refused beside a full one), same data
    where recorded, and per metric the same extractor (name + SHA-256 of its weights, never a file path)."""
    by_task: dict[str, list[tuple[Path, Result]]] = defaultdict(list)
    for (task, _, _), items in grouped.items():
        by_task[task].extend(items)
    for task, items in by_task.items():
        items = sorted(items, key=lambda item: str(item[0]))
        _refuse_mixed(task, "task hashes", items, lambda r: r.task["hash"],
                      lambda p, r: f"{p}: task hash {r.task['hash'][:12]}",
                      "the spec changed between runs — rerun them, or use separate --runs folders")
        _refuse_mixed(task, "test subjects", items, lambda r: (r.task["split_hash"], tuple(sorted(r.subjects))),
                      _describe_subjects(items), "numbers over other subjects are not comparable; rerun the short "
                      "one on the full data, or use separate --runs folders")
        recorded = [(p, r) for p, r in items if r.task.get("data_fingerprint")]
        _refuse_mixed(task, "data", recorded, lambda r: r.task["data_fingerprint"],
                      lambda p, r: f"{p}: data fingerprint {r.task['data_fingerprint'][:12]}",
                      "they were computed on other data (another --data-root holding other files?)")
        metrics = sorted({m for _, r in items for m, e in r.metrics.items() if e.get("extractor")})
        for metric in metrics:
            using = [(p, r) for p, r in items if r.metrics.get(metric, {}).get("extractor")]
            _refuse_mixed(f"{task} / {metric}", "extractors", using, lambda r, m=metric: extractor_identity(r, m),
                          lambda p, r, m=metric: f"{p}: {' '.join(extractor_identity(r, m))}",
                          "they were computed with other weights")


def extractor_identity(result: Result, metric: str) -> tuple[str, str]:
    """(name, SHA-256) of the extractor behind a metric: what makes two numbers comparable, wherever it was cached."""
    info = result.metrics[metric]["extractor"]
    return str(info.get("name", "?")), str(info.get("sha256", ""))


def _describe_subjects(items: list[tuple[Path, Result]]) -> Callable[[Path, Result], str]:
    """How a result's test subjects differ from those of the first result."""
    reference = set(items[0][1].subjects)

    def describe(path: Path, result: Result) -> str:
        subjects = set(result.subjects)
        text = f"{path}: {len(subjects)} test subjects, split hash {result.task['split_hash'][:12]}"
        lacking, extra = sorted(reference - subjects), sorted(subjects - reference)
        if lacking:
            text += f", lacks {', '.join(lacking[:5])}" + (f" (+{len(lacking) - 5})" if len(lacking) > 5 else "")
        if extra:
            text += f", has {', '.join(extra[:5])}" + (f" (+{len(extra) - 5})" if len(extra) > 5 else "")
        skipped = [entry.get("subject", "?") for entry in result.skipped]
        if skipped:
            text += f" (--skip-bad left out {', '.join(skipped[:5])})"
        return text

    return describe


def _refuse_mixed(where: str, what: str, items: list[tuple[Path, Result]], key: Callable[[Result], object],
                  describe: Callable[[Path, Result], str], hint: str) -> None:
    """Raise, naming one file per distinct ``key`` and how it differs, when ``items`` do not all share the key."""
    first_of: dict[object, tuple[Path, Result, int]] = {}
    for path, result in items:
        k = key(result)
        first = first_of.get(k)
        first_of[k] = (path, result, 1) if first is None else (first[0], first[1], first[2] + 1)
    if len(first_of) > 1:
        detail = "; ".join(describe(path, result) + (f" (+{count - 1} more like it)" if count > 1 else "")
                           for path, result, count in first_of.values())
        raise MribenchError(f"{where}: results with different {what} cannot share a column: {detail}; {hint}")


def metric_order(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)
