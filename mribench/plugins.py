"""Plugin manager: built-ins and entry-point plugins register through the same hooks (see hookspecs.py).

A plugin that fails to import or to register is isolated: it is listed as failed with its error and every other
plugin keeps working. Two plugins registering one name is an error naming both.

A hook may return classes, or :class:`LazyClass` entries naming a class by import path: those are imported on first
use, so ``mribench tasks``, ``methods`` and ``plugins`` import no plugin code (no torch, no MONAI) and answer at once.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from mribench import hookspecs
from mribench.errors import MribenchError, PluginError, UnknownNameError
from mribench.hookspecs import hookimpl

PROJECT = "mribench"
ENTRY_POINT_GROUP = "mribench"

_KINDS = {
    "method": "mribench_register_methods",
    "dataset": "mribench_register_datasets",
    "metric": "mribench_register_metrics",
    "analysis": "mribench_register_analyses",
    "benchmark": "mribench_register_benchmarks",
    "prompt provider": "mribench_register_prompt_providers",
}


@dataclass
class PluginInfo:
    """What the manager knows about one plugin: where it came from and whether it loaded."""

    name: str
    source: str  # "builtin", "entry-point <dist> <version>" or "registered"
    module: str
    error: str | None = None
    traceback: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LazyClass:
    """A class registered by import path (``"package.module:ClassName"``) and imported on first use.

    ``facts`` are the class attributes the listings read without importing it (methods: ``problems`` and
    ``presets`` (names); datasets: ``generated``; metrics: ``higher_is_better``); a callable fact
    ``unavailable_reason`` stands for the class method of that name. When the class is imported, its ``name`` and
    every non-callable fact must agree with it, so a listing can never show what the class is not.
    """

    target: str
    name: str
    facts: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> type:
        module_name, _, attribute = self.target.partition(":")
        cls = getattr(importlib.import_module(module_name), attribute)
        differing = [key for key, declared in [("name", self.name), *self.facts.items()]
                     if not callable(declared) and not _same_fact(declared, getattr(cls, key, None))]
        if differing:
            details = ", ".join(f"{key}: declared {_fact_text(self.facts.get(key, self.name))}, class has "
                                f"{_fact_text(getattr(cls, key, None))}" for key in differing)
            raise TypeError(f"{self.target} does not match its registration ({details})")
        return cls


def always_available() -> None:
    """The ``unavailable_reason`` fact of a lazily registered method that needs nothing beyond its plugin."""
    return None


def _same_fact(declared: Any, actual: Any) -> bool:
    if isinstance(actual, dict):  # presets: the declared names, in order
        return tuple(declared) == tuple(actual)
    if isinstance(actual, (set, frozenset)):
        return frozenset(declared) == actual
    return declared == actual


def _fact_text(value: Any) -> str:
    if isinstance(value, dict):
        return repr(tuple(value))
    if isinstance(value, (set, frozenset)):
        return repr(sorted(value))
    return repr(value)


class Registered:
    """One registered class (imported on first use when it was registered as a :class:`LazyClass`) and the plugin
    that registered it."""

    def __init__(self, name: str, entry: type | LazyClass, plugin: str, on_import_error: Callable[[str], None]):
        self.name, self.plugin = name, plugin
        self._entry = entry
        self._cls: type | None = None if isinstance(entry, LazyClass) else entry
        self._on_import_error = on_import_error

    @property
    def cls(self) -> type:
        if self._cls is None:
            try:
                self._cls = self._entry.load()
            except Exception as exc:  # noqa: BLE001 - any failure of third-party code isolates that plugin
                error = f"importing {self._entry.target} failed: {_one_line(exc)}"
                self._on_import_error(error)
                raise PluginError(f"{self.name!r} is not available: plugin {self.plugin!r} failed to load: "
                                  f"{error}") from None
        return self._cls

    @property
    def source(self) -> str:
        """Where the class lives (``module:Class``), known without importing it."""
        if isinstance(self._entry, LazyClass):
            return self._entry.target
        return f"{self._entry.__module__}:{self._entry.__qualname__}"

    def fact(self, attribute: str) -> Any:
        """A class attribute, read from the registration's facts while the class is not imported."""
        if self._cls is None and isinstance(self._entry, LazyClass) and attribute in self._entry.facts:
            return self._entry.facts[attribute]
        return getattr(self.cls, attribute)


class Registry:
    """Everything the plugins registered: methods, datasets, metrics and task folders."""

    def __init__(self, *, entry_points: bool = True, extra_plugins: list[tuple[str, Any]] = ()):
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[str, dict[str, Registered]] = {kind: {} for kind in _KINDS}
        self.task_dirs: list[tuple[Path, str]] = []
        self._add("builtin", "builtin", "mribench.builtins", lambda: importlib.import_module("mribench.builtins"))
        if entry_points:
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
                self._add(ep.name, f"entry-point {dist}", ep.value, ep.load)
        for name, plugin in extra_plugins:
            module_name = getattr(plugin, "__name__", type(plugin).__name__)
            self._add(name, "registered", module_name, lambda plugin=plugin: plugin)
        self._collect()

    # -- loading ---------------------------------------------------------------------------------------------
    def _add(self, name: str, source: str, module: str, load) -> None:
        info = PluginInfo(name=name, source=source, module=module)
        self.plugins[name] = info
        try:
            plugin = load()
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code isolates that plugin
            info.error = _one_line(exc)
            info.traceback = traceback.format_exc()

    def _collect(self) -> None:
        for kind, hook_name in _KINDS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                info = self.plugins[impl.plugin_name]
                if not info.ok:
                    continue
                try:
                    classes = list(impl.function() or [])
                    for cls in classes:
                        self._register(kind, cls, info)
                except PluginError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    info.error = f"{hook_name} failed: {_one_line(exc)}"
        for impl in self.pm.hook.mribench_task_dirs.get_hookimpls():
            info = self.plugins[impl.plugin_name]
            if not info.ok:
                continue
            try:
                for folder in impl.function() or []:
                    self.task_dirs.append((Path(folder), impl.plugin_name))
            except Exception as exc:  # noqa: BLE001
                info.error = f"mribench_task_dirs failed: {_one_line(exc)}"
        # a plugin that failed half-way must not leave half of its names behind
        for kind, items in self._items.items():
            for name in [n for n, r in items.items() if not self.plugins[r.plugin].ok]:
                del items[name]

    def _register(self, kind: str, entry: type | LazyClass, info: PluginInfo) -> None:
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind} {getattr(entry, '__qualname__', entry)!r} has no 'name'")
        registered = Registered(name, entry, info.name, lambda error: self._import_failed(info, error))
        items = self._items[kind]
        if name in items and items[name].source != registered.source:
            raise PluginError(
                f"{kind} name {name!r} is registered twice: by plugin {items[name].plugin!r} "
                f"({items[name].source}) and by plugin {info.name!r} ({registered.source})"
            )
        items[name] = registered
        info.provides.setdefault(kind, []).append(name)

    @staticmethod
    def _import_failed(info: PluginInfo, error: str) -> None:
        """A lazily registered class failed to import: the plugin is shown as failed from then on."""
        info.error = info.error or error

    # -- lookup ----------------------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._items[kind])

    def items(self, kind: str) -> list[Registered]:
        return [self._items[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self._items[kind][name]
        except KeyError:
            failed = [p for p in self.plugins.values() if not p.ok]
            if failed:
                details = "; ".join(f"plugin {p.name!r} ({p.module}) failed to load: {p.error}" for p in failed)
                raise PluginError(f"{kind} {name!r} is not available: {details}") from None
            raise UnknownNameError(kind, name, self._items[kind]) from None

    def method(self, name: str) -> type:
        return self.get("method", name).cls

    def dataset(self, name: str) -> type:
        return self.get("dataset", name).cls

    def metric(self, name: str) -> type:
        return self.get("metric", name).cls

    def task_metrics(self, task) -> dict[str, type]:
        """The metric classes of a task spec's metrics, by name (what evaluation needs, resolved before work)."""
        return {spec.name: self.metric(spec.name) for spec in task.metrics}

    # -- descriptions of results written before they described themselves (the leaderboard's fallback) --------
    def metric_description(self, name: str):
        """The installed metric's :class:`~mribench.metrics.base.MetricDescription`, None when not installed."""
        try:
            return self.metric(name).result_description()
        except MribenchError:
            return None

    def method_description(self, name: str):
        """The installed method's :class:`~mribench.method.MethodDescription`, None when not installed."""
        try:
            return self.method(name).result_description()
        except MribenchError:
            return None

    def preset_config(self, method: str, preset: str, problem: str) -> Any | None:
        """The installed method's ``preset`` config on ``problem``'s tasks (what a run of it made today trains with),
        None when the method is not installed or has no such preset."""
        try:
            cls = self.method(method)
        except MribenchError:
            return None
        return cls.preset_config(preset, problem) if preset in cls.presets else None

    def method_descriptions(self) -> list:
        """Descriptions of every installed method that imports."""
        return [d for name in self.names("method") if (d := self.method_description(name)) is not None]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


_current: Registry | None = None


def registry() -> Registry:
    """The registry in force: the one set by :func:`set_registry`, else built-ins + installed plugins."""
    global _current
    if _current is None:
        _current = Registry()
    return _current


def set_registry(new: Registry | None) -> None:
    """Replace the process-wide registry (tests, embedding applications); ``None`` rebuilds it on next use."""
    global _current
    _current = new


__all__ = ["hookimpl", "LazyClass", "always_available", "Registry", "PluginInfo", "Registered", "registry", "set_registry"]
