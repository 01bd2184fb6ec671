"""mribench: a plugin-based benchmark for missing-MRI synthesis. Plugins decorate their hooks with
:data:`mribench.hookimpl` (the hooks are documented in :mod:`mribench.hookspecs`)."""
from mribench.hookspecs import hookimpl

__all__ = ["hookimpl"]
