"""The runnable examples in docstrings: every public metric, the Method base class, and the few helpers they use."""
import doctest
import importlib

import pytest

MODULES = ["mribench.method", "mribench.metrics.psnr", "mribench.metrics.ssim", "mribench.metrics.frechet",
           "mribench.metrics.fid", "mribench.metrics.fvd", "mribench.metrics.fdseg", "mribench.metrics.dice",
           "mribench.metrics.aggregate", "mribench.tasks"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    outcome = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0, f"{name} has no example"
    assert outcome.failed == 0, f"{outcome.failed} example(s) of {name} failed (shown above)"


@pytest.mark.parametrize("metric", ["PSNR", "MAE", "SSIM", "SSIMTumour", "SSIMNonTumour", "FID", "FVD", "FDSeg",
                                    "Dice"])
def test_every_registered_metric_class_shows_an_example(metric):
    from mribench.plugins import Registry

    registered = {entry.cls.__name__: entry.cls for entry in Registry(entry_points=False).items("metric")}
    assert metric in registered and len(registered) == 9, sorted(registered)
    examples = doctest.DocTestFinder(recurse=False).find(registered[metric])
    docstring = registered[metric].__doc__ or ""
    assert any(test.examples for test in examples) or ":class:`SSIMTumour`" in docstring, \
        f"{metric} has no example in its docstring"
