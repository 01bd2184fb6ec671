"""Leaderboard tables, figures and reports from stored results, one idea per module:

* :mod:`~mribench.leaderboard.collect`: read results, refuse mixing, describe metrics and methods;
* :mod:`~mribench.leaderboard.cells`: a metric over seeds (mean, stds) and the significance of a difference;
* :mod:`~mribench.leaderboard.grid`: the table model (columns, marked cells, footnote) every layout builds;
* :mod:`~mribench.leaderboard.layouts`: ``plain`` (methods × (task, metric)) and ``paper`` (the paper's tables,
  with the ablation variants under their own heading);
* :mod:`~mribench.leaderboard.render`: Markdown, CSV, LaTeX, HTML;
* :mod:`~mribench.leaderboard.report`: figures, the HTML report and the committed ``leaderboard/`` folder;
* :mod:`~mribench.leaderboard.readme`: the README's generated results block;
* :mod:`~mribench.leaderboard.suite` and :mod:`~mribench.leaderboard.reproduce`: what ``mribench reproduce`` runs.
"""
