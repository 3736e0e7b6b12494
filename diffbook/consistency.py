"""Consistency models (Song, Dhariwal, Chen & Sutskever 2023): one network that maps any point of a probability-flow
ODE trajectory straight to its end point, so that one or two evaluations give a sample.

The consistency function f(x, sigma) is the ODE's solution map from the level sigma down to sigma_min. It is a
network under a preconditioning whose scalings satisfy the boundary condition f(x, sigma_min) = x exactly
(Eq. (cm-param)); it is trained by making its outputs at two neighbouring levels of one trajectory agree
(Eq. (cd-loss) with a teacher denoiser's ODE step, Eq. (ct-loss) without a teacher). Its signature is the denoiser's,
``f(x, sigma, **cond) -> x0_hat``, so it plugs into everything that takes a denoiser; :func:`sample_consistency`
is its own multistep sampler (Alg. 1 of the paper).

Notation (code name -> book symbol):

==============  ==============================================================================
``f``           f_theta(x, sigma), the consistency function (the student)
``f_target``    f_theta-(x, sigma), the same network (or its EMA) without gradient: the target
``sigmas``      sigma_1 = sigma_min < sigma_2 < ... < sigma_N = sigma_max, the training levels (increasing)
``x_next``      x_{n+1} = x_0 + sigma_{n+1} z, a noisy point at the higher of two neighbouring levels
``x_prev``      x_hat_n, the point one ODE step lower (teacher) or x_0 + sigma_n z (training, same z)
==============  ==============================================================================

The distance is the squared Euclidean one; the paper's LPIPS needs pretrained image networks, which a 2D model does
not (and which the book could not ship offline).
"""

from __future__ import annotations

from typing import Callable

import torch

from .checks import check_batch_sigma, check_nfe, check_positive, check_sigmas, check_tensor, per_sample
from .preconditioning import Scalings, edm_scalings, precondition

__all__ = ["consistency_scalings", "consistency_function", "consistency_sigmas", "consistency_distillation_loss",
           "consistency_training_loss", "sample_consistency"]


def consistency_scalings(sigma: torch.Tensor, sigma_min: float, sigma_data: float = 0.5):
    """(c_skip, c_out) with c_skip(sigma_min) = 1 and c_out(sigma_min) = 0 exactly. Implements Eq. (cm-param).

    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2) and c_out = sigma_data (sigma - sigma_min) /
    sqrt(sigma^2 + sigma_data^2) (Song et al. 2023, App. C): EDM's scalings (Eq. (edm-precond)) shifted so that
    at sigma_min the network's output is multiplied by exactly 0 and the input passed through by exactly 1.
    """
    sd = check_positive("sigma_data", sigma_data)
    d = sigma - sigma_min
    # tensor / tensor: a number divided by a tensor is computed as number * (1 / tensor) by PyTorch, which misses
    # c_skip(sigma_min) = 1 by one rounding for some sigma_data (e.g. 3.78125)
    c_skip = torch.full_like(d, sd**2) / (d**2 + sd**2)
    return c_skip, sd * d / (sigma**2 + sd**2).sqrt()


def consistency_function(net, sigma_min: float = 0.002, sigma_data: float = 0.5):
    """The consistency function f(x, sigma) = c_skip x + c_out net(c_in x, c_noise) of a network ``net(x, c, **cond)``.

    Implements Eq. (cm-param): the preconditioned denoiser of Eq. (precond-denoiser)
    (:func:`diffbook.preconditioning.precondition`) with the shifted c_skip, c_out of :func:`consistency_scalings`
    and EDM's c_in = 1 / sqrt(sigma^2 + sigma_data^2) and c_noise = ln(sigma) / 4. At sigma = sigma_min it returns
    x itself, bit for bit, whatever the network computes (its output is multiplied by 0 and so must be finite).
    Levels below sigma_min are an error. Keeps ``net``, ``sigma_min`` and ``sigma_data``.
    """
    sigma_min = check_positive("sigma_min", sigma_min)
    sigma_data = check_positive("sigma_data", sigma_data)
    if not callable(net):
        raise TypeError(f"net must be callable as net(x, c_noise, **cond), got {type(net).__name__}.")

    def scalings(sigma):
        edm = edm_scalings(sigma, sigma_data)
        return Scalings(*consistency_scalings(sigma, sigma_min, sigma_data), edm.c_in, edm.c_noise)

    denoiser = precondition(net, scalings)

    def f(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        if (sigma < sigma_min).any():
            raise ValueError(f"a consistency function is defined for sigma >= sigma_min = {sigma_min}, got "
                             f"{sigma.min().item()}.")
        return denoiser(x, sigma, **cond)

    f.net, f.sigma_min, f.sigma_data = net, sigma_min, sigma_data
    return f


def consistency_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The n training levels sigma_min = sigma_1 < ... < sigma_n = sigma_max (increasing, float64).

    Karras et al.'s levels (Eq. (edm-sigmas)) in increasing order, as in Song et al. 2023 (rho = 7).
    """
    n = check_nfe(n)
    if n < 2:
        raise ValueError(f"a consistency loss compares neighbouring levels: need n >= 2, got {n}.")
    lo, hi, rho = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max), \
        check_positive("rho", rho)
    if lo >= hi:
        raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    return (lo ** (1 / rho) + ramp * (hi ** (1 / rho) - lo ** (1 / rho))) ** rho


def _pairs(x0: torch.Tensor, sigmas: torch.Tensor, generator):
    """A random pair of neighbouring levels per sample, and one noise draw z: (sigma_n, sigma_{n+1}, z)."""
    check_tensor("x0", x0)
    if not isinstance(sigmas, torch.Tensor) or sigmas.dim() != 1 or sigmas.shape[0] < 2 \
            or not (sigmas[1:] > sigmas[:-1]).all() or sigmas[0] <= 0:
        raise ValueError("sigmas must be the increasing positive training levels sigma_min < ... < sigma_max; use "
                         "diffbook.consistency.consistency_sigmas(n).")
    n = torch.randint(0, sigmas.shape[0] - 1, (x0.shape[0],), generator=generator, device=x0.device)
    s = sigmas.to(device=x0.device, dtype=x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return s[n], s[n + 1], z


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).sum(1).mean()


def consistency_distillation_loss(f: Callable, f_target: Callable, teacher: Callable, x0: torch.Tensor,
                                  sigmas: torch.Tensor, generator: torch.Generator | None = None,
                                  **cond) -> torch.Tensor:
    """Consistency distillation: ||f(x_{n+1}, sigma_{n+1}) - f_target(x_hat_n, sigma_n)||^2, averaged over the batch.

    Implements Eq. (cd-loss) (Song et al. 2023, Alg. 2): x_{n+1} = x0 + sigma_{n+1} z, and x_hat_n is one Euler step
    of the probability-flow ODE (Eq. (euler-step)) from sigma_{n+1} to sigma_n with the ``teacher`` denoiser.
    ``f_target`` (the student itself, or an EMA of it) is evaluated without gradient.
    """
    sigma, sigma_next, z = _pairs(x0, sigmas, generator)
    x_next = x0 + per_sample(sigma_next, x0) * z
    with torch.no_grad():
        d = (x_next - teacher(x_next, sigma_next, **cond).to(x0.dtype)) / per_sample(sigma_next, x0)
        x_prev = x_next + per_sample(sigma - sigma_next, x0) * d  # one Euler step down to sigma_n
        target = f_target(x_prev, sigma, **cond)
    return _distance(f(x_next, sigma_next, **cond), target)


def consistency_training_loss(f: Callable, f_target: Callable, x0: torch.Tensor, sigmas: torch.Tensor,
                              generator: torch.Generator | None = None, **cond) -> torch.Tensor:
    """Consistency training: ||f(x0 + sigma_{n+1} z, sigma_{n+1}) - f_target(x0 + sigma_n z, sigma_n)||^2, no teacher.

    Implements Eq. (ct-loss) (Song et al. 2023, Alg. 3): the same noise draw z at both levels, which is the ODE step
    of Eq. (cd-loss) with the one-sample denoiser D = x0 in place of a teacher.
    """
    sigma, sigma_next, z = _pairs(x0, sigmas, generator)
    with torch.no_grad():
        target = f_target(x0 + per_sample(sigma, x0) * z, sigma, **cond)
    return _distance(f(x0 + per_sample(sigma_next, x0) * z, sigma_next, **cond), target)


@torch.no_grad()
def sample_consistency(f: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                       generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): jump to the end, re-noise, jump again.

    Implements Eq. (cm-sampling): x0_hat = f(x, sigmas[0]) with x ~ N(0, sigmas[0]^2 I); then for each further
    level sigma > 0, x = x0_hat + sqrt(sigma^2 - sigma_min^2) z and x0_hat = f(x, sigma). ``sigmas`` is decreasing
    and ends in 0 (``[sigma_max, 0]``: one step, one network evaluation; ``[sigma_max, sigma_mid, 0]``: two).
    ``sigma_min`` is ``f.sigma_min`` (0 for a plain denoiser, which makes this a re-noising denoiser chain).
    """
    if not callable(f):
        raise TypeError(f"f must be callable as f(x, sigma, **cond), got {type(f).__name__}.")
    check_tensor("x", x)
    check_sigmas(sigmas)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if cond is None:
        cond = {}
    if not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict of keyword arguments for f, got {type(cond).__name__}.")
    sigma_min = float(getattr(f, "sigma_min", 0.0))
    levels = [float(s) for s in sigmas.detach().cpu().double() if s > 0]
    if not levels or levels[-1] < sigma_min:
        raise ValueError(f"sigmas must lie at or above f.sigma_min = {sigma_min} (with a final 0).")
    for i, sigma in enumerate(levels):
        if i > 0:  # re-noise the last estimate up to sigma (from sigma_min, where f's outputs live)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x0_hat + (sigma**2 - sigma_min**2) ** 0.5 * noise
        x0_hat = f(x, x.new_full((x.shape[0],), sigma), **cond).to(x.dtype)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": x0_hat})
    return x0_hat
