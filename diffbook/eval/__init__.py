"""Evaluation: sample-quality metrics, measuring a model against real data, sampler specs and comparisons, and the
release run that trains and measures the shipped zoo.

- :mod:`~diffbook.eval.metrics`: mode counts, Frechet distance, precision/recall, density/coverage;
- :mod:`~diffbook.eval.measure`: sample N images, embed them, measure them beside the real-vs-real floor;
- :mod:`~diffbook.eval.specs`: one row of a table as a dict (sampler, schedule, steps, guidance, ...);
- :mod:`~diffbook.eval.compare`, :mod:`~diffbook.eval.summary`: every sampler at equal NFE (``python -m diffbook
  compare``) and its goal checks;
- :mod:`~diffbook.eval.release`: ``python -m diffbook zoo``, train and measure every model in one run.
"""

from . import compare, measure, metrics, release, specs, summary

__all__ = ["compare", "measure", "metrics", "release", "specs", "summary"]
