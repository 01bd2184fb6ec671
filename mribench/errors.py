"""User-facing errors: the CLI prints their message on one line and exits with code 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class MribenchError(Exception):
    """An error caused by the user's input or environment (not a bug): shown as one line, exit code 2."""


class UnknownNameError(MribenchError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = "" if close else f"; known: {', '.join(known) if known else '(none)'}"
        super().__init__(f"unknown {kind} {name!r}{hint}{listing}")
        self.kind, self.name, self.suggestions = kind, name, close


class DataMissingError(MribenchError):
    """The data a task needs is not on disk."""


class BadDataError(MribenchError):
    """A data file exists but is unusable (corrupt, wrong shape, non-finite values ...)."""


class PluginError(MribenchError):
    """A plugin failed to import or register, or two plugins clash."""


class CheckpointMismatchError(MribenchError):
    """A checkpoint was written by another configuration."""
