"""Training: the one loop (:func:`diffbook.train.loop.train`, ``python -m diffbook train``), each model's recipe
(:mod:`diffbook.train.recipes`: objective and configs), and the small live loops the chapters run on a CPU
(:mod:`diffbook.train.fit`).

- :mod:`~diffbook.train.loop`: the loop (data, clock, log, checkpoints, time budget), model-agnostic;
- :mod:`~diffbook.train.objective`: the interface between a model and the loop;
- :mod:`~diffbook.train.diffusion`, :mod:`~diffbook.train.gan`, :mod:`~diffbook.train.distill`: the objectives;
- :mod:`~diffbook.train.checkpoint`, :mod:`~diffbook.train.steps`, :mod:`~diffbook.train.provenance`: their parts;
- :mod:`~diffbook.train.classifier`: the feature classifier's training command;
- :mod:`~diffbook.train.fit`: ``fit`` and ``fit_gan`` for the 2D models trained live in the chapters.
"""

from . import checkpoint, classifier, diffusion, distill, fit, gan, loop, objective, provenance, recipes, steps

__all__ = ["checkpoint", "classifier", "diffusion", "distill", "fit", "gan", "loop", "objective", "provenance",
           "recipes", "steps"]
