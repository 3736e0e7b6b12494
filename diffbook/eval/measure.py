"""Measure generative models: sample N images, embed them with the shipped classifier, and report the Frechet
distance beside the real-vs-real floor at the same N, plus precision/recall, density/coverage and wall time.

Used by ``python -m diffbook zoo`` (GPU, N=10,000) and by the chapters (CPU, small N) to re-check the shipped results
(:mod:`diffbook.zoo.results`).
"""

from __future__ import annotations

import time

import torch

from ..nets.classifier import extract_features
from ..train.provenance import sync
from ..zoo.model import GeneratorModel
from .metrics import density_coverage, frechet_distance, precision_recall
from .specs import sample_kwargs

__all__ = ["sample_images", "real_reference", "measure", "timed", "FLOOR_WHAT"]


@torch.no_grad()
def sample_images(model, spec: dict, n: int, *, batch: int = 2500, seed: int = 0) -> torch.Tensor:
    """Draw n images with a spec, as the release evaluation does: class-conditional models get balanced labels
    0, 1, ..., 9, 0, ... (and CFG weight ``spec["w"]`` against the null class when given), noise from seed ``seed``,
    bf16 autocast on CUDA, no progress bar. ``model`` is a :class:`diffbook.zoo.DiffusionModel` (or a
    :class:`~diffbook.zoo.GeneratorModel` with the spec ``{"sampler": "generator"}``). Images in [-1, 1]."""
    if isinstance(model, GeneratorModel):
        return model.sample(n, seed=seed, batch=batch)
    return model.sample(n, seed=seed, batch=batch, autocast=True, progress=False, **sample_kwargs(spec))


FLOOR_WHAT = "FD between {n} random training images and the first {n} test images, in the shipped classifier's features"


def real_reference(clf, test_x: torch.Tensor, train_x: torch.Tensor, n: int, device) -> tuple[torch.Tensor, float]:
    """The real side of every FD at sample size n: features of the first n test images, and the real-vs-real floor,
    their FD to n random training images (seed 0). Returns ``(real_feats, floor)``; see :data:`FLOOR_WHAT`."""
    real = extract_features(clf, test_x[:n].to(device))
    g = torch.Generator().manual_seed(0)
    other = extract_features(clf, train_x[torch.randperm(train_x.shape[0], generator=g)[:n]].to(device))
    return real, frechet_distance(other, real)


def measure(fake_feats: torch.Tensor, real_feats: torch.Tensor, floor: float) -> dict:
    """FD (with the floor and their ratio), precision/recall (k=3) and density/coverage (k=5) of features."""
    fd = frechet_distance(fake_feats, real_feats)
    return dict(fd=round(fd, 4), floor=round(floor, 4), fd_over_floor=round(fd / floor, 2),
                **{k: round(v, 4) for k, v in precision_recall(real_feats, fake_feats, k=3).items()},
                **{k: round(v, 4) for k, v in density_coverage(real_feats, fake_feats, k=5).items()})


def timed(fn, device):
    """Run fn() and return (result, seconds), synchronising the device around it."""
    sync(device)
    t0 = time.perf_counter()
    res = fn()
    sync(device)
    return res, time.perf_counter() - t0
