"""diffbook: the package behind the diffbook textbook on diffusion models.

The mathematics the book teaches stands at the top, one concept per module, importing only torch, numpy and each
other:

- :mod:`~diffbook.schedules` (noise levels), :mod:`~diffbook.forward` (the noising chain and its closed form),
  :mod:`~diffbook.sde` (VP, sub-VP and VE SDEs), :mod:`~diffbook.losses` (training objectives),
  :mod:`~diffbook.denoisers` (one interface for every model: ``denoiser(x, sigma, **cond) -> x0_hat`` with
  ``x = x0 + sigma * noise``), :mod:`~diffbook.samplers` (plain functions of a denoiser),
  :mod:`~diffbook.guidance` (denoiser wrappers), :mod:`~diffbook.likelihood` (the PF-ODE's log-likelihood),
  :mod:`~diffbook.distill` (progressive distillation), :mod:`~diffbook.inverse` (posterior sampling for inverse
  problems), :mod:`~diffbook.editing` (SDEdit and DDIM inversion), :mod:`~diffbook.preconditioning` (eps, x0, v,
  score and EDM parameterisations), :mod:`~diffbook.flow` (flow matching and rectified flow) and
  :mod:`~diffbook.consistency` (consistency models); :mod:`~diffbook.checks` holds the argument checks they share.

The machinery lives in folders by role: :mod:`~diffbook.data` (Fashion-MNIST, 2D sets, the ink drop),
:mod:`~diffbook.nets` (networks), :mod:`~diffbook.train` (the training loop and each model's recipe),
:mod:`~diffbook.zoo` (the shipped models, their results, the diffusers export), :mod:`~diffbook.show` (plots and
explorers for the chapters) and :mod:`~diffbook.eval` (metrics, evaluation, sampler comparisons, the release run).

One way in: ``model = diffbook.load("fmnist-ddpm")``, then ``model.sample(16)``.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

#: The modules and subpackages ``import diffbook`` gives access to (imported on first use, so the import is fast).
SUBMODULES = ("checks", "schedules", "forward", "sde", "losses", "denoisers", "samplers", "guidance", "likelihood",
              "distill", "inverse", "editing", "preconditioning", "flow", "consistency", "data", "nets", "train", "zoo", "show", "eval", "cli")

__all__ = ["load", "__version__", *SUBMODULES]


def load(name: str, root=None, device=None):
    """Load a shipped model (SHA-256 checked) as an object with ``.sample``: see :func:`diffbook.zoo.load`."""
    from .zoo import load as _load

    return _load(name, root=root, device=device)


def __getattr__(name: str):
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'diffbook' has no attribute {name!r}; its parts are: {', '.join(SUBMODULES)}.")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))
