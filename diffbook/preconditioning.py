"""The denoiser family: eps, x0, v, score and flow-velocity prediction, and EDM's preconditioning, as one denoiser.

Every parameterisation in the literature trains a network F and reads the same denoiser off it,

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)),   Eq. (precond-denoiser)

with x = x_0 + sigma n in the book's VE coordinates (Karras et al. 2022, Table 1). The parameterisations differ only
in the four scalings. Training F by a plain mean-squared error on its own target (Eq. (precond-target)) is training D
with the loss weight lambda(sigma) = 1 / c_out(sigma)^2 (Eq. (precond-weight)); and an error e in F is an error
c_out e in x0_hat, so |c_out| is the factor by which a parameterisation amplifies the network's error.

Notation (code name -> book symbol):

==============  ==============================================================================
``sigma``       sigma, the noise level (VE coordinates), a tensor [B] or a number
``c_skip``      c_skip(sigma), how much of the noisy input passes straight through to x0_hat
``c_out``       c_out(sigma), the scale of the network's output in x0_hat (the error gain)
``c_in``        c_in(sigma), the scale of the network's input
``c_noise``     c_noise(sigma), the label of the noise level the network sees
``sigma_data``  sigma_data, the data's standard deviation (EDM; 0.5 for images in [-1, 1])
==============  ==============================================================================

``c_noise`` only names the noise level to the network (any one-to-one function of sigma works; Karras et al. list
each paper's). To compare the scalings alone, every parameterisation here uses EDM's c_noise = ln(sigma) / 4; a flow
model as trained in the literature takes the time t = sigma / (1 + sigma) instead (:func:`diffbook.flow.
from_velocity_model`).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .checks import check_batch_sigma, check_positive, check_tensor, per_sample

__all__ = ["Scalings", "eps_scalings", "x0_scalings", "v_scalings", "score_scalings", "flow_scalings",
           "edm_scalings", "PARAMETERISATIONS", "precondition", "network_target", "loss_weight",
           "preconditioned_loss", "log_uniform_sigmas"]


class Scalings(NamedTuple):
    """The four scalings of Eq. (precond-denoiser) at one or more noise levels (tensors shaped like sigma)."""

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def _sigma(sigma) -> torch.Tensor:
    """sigma as a floating tensor of levels >= 0 (numbers become float64 tensors)."""
    if not isinstance(sigma, torch.Tensor):
        try:
            sigma = torch.as_tensor(sigma, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"sigma must be a number or a tensor of noise levels, got {type(sigma).__name__}.") from None
    if not sigma.is_floating_point():
        sigma = sigma.double()
    if sigma.numel() and not torch.isfinite(sigma).all():
        raise ValueError("sigma contains NaN or infinite values; noise levels must be finite numbers >= 0.")
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0 (it is a noise standard deviation).")
    return sigma


def _c_noise(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log() / 4  # EDM's label of the noise level (-inf at sigma = 0: the network is never asked there)


def eps_scalings(sigma) -> Scalings:
    """Noise prediction (DDPM): D = x - sigma eps_hat(x / sqrt(1 + sigma^2)).

    Implements Eq. (eps-to-denoiser) as an instance of Eq. (precond-denoiser): c_skip = 1, c_out = -sigma,
    c_in = 1 / sqrt(1 + sigma^2) (the VP input x_t); Ho et al. 2020, Karras et al. 2022 Table 1 ("VP").
    """
    s = _sigma(sigma)
    return Scalings(torch.ones_like(s), -s, (1 + s**2).rsqrt(), _c_noise(s))


def x0_scalings(sigma) -> Scalings:
    """Clean-data prediction: D = x0_hat(x / sqrt(1 + sigma^2)); c_skip = 0, c_out = 1. Eq. (precond-denoiser)."""
    s = _sigma(sigma)
    return Scalings(torch.zeros_like(s), torch.ones_like(s), (1 + s**2).rsqrt(), _c_noise(s))


def v_scalings(sigma) -> Scalings:
    """Velocity prediction v = alpha eps - sigma_VP x_0 (Salimans & Ho 2022): D = c_in^2 x - sigma c_in v_hat.

    Implements Eq. (v-denoiser) as an instance of Eq. (precond-denoiser): c_skip = 1 / (1 + sigma^2),
    c_out = -sigma / sqrt(1 + sigma^2), c_in = 1 / sqrt(1 + sigma^2). It is EDM's preconditioning with
    sigma_data = 1 and the output's sign flipped.
    """
    s = _sigma(sigma)
    c_in = (1 + s**2).rsqrt()
    return Scalings(c_in**2, -s * c_in, c_in, _c_noise(s))


def score_scalings(sigma) -> Scalings:
    """Score prediction with NCSN's output scaling F = sigma s (Song & Ermon 2020): D = x + sigma F.

    Implements Eq. (tweedie) as an instance of Eq. (precond-denoiser): c_skip = 1, c_out = sigma, c_in = 1
    (Karras et al. 2022 Table 1, "VE"). A raw score network (F = s) would have c_out = sigma^2.
    """
    s = _sigma(sigma)
    return Scalings(torch.ones_like(s), s, torch.ones_like(s), _c_noise(s))


def flow_scalings(sigma) -> Scalings:
    """Flow matching's velocity v = n - x_0 on the path z = x / (1 + sigma) (Lipman et al. 2023; Liu et al. 2023).

    Implements Eq. (flow-denoiser) as an instance of Eq. (precond-denoiser): with t = sigma / (1 + sigma),
    D = z - t v_hat(z), so c_skip = c_in = 1 / (1 + sigma) and c_out = -sigma / (1 + sigma).
    """
    s = _sigma(sigma)
    c_in = 1 / (1 + s)
    return Scalings(c_in, -s * c_in, c_in, _c_noise(s))


def edm_scalings(sigma, sigma_data: float = 0.5) -> Scalings:
    """EDM's preconditioning (Karras et al. 2022, Table 1): the target of F has unit variance at every sigma.

    Implements Eq. (edm-precond): c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
    c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2), c_in = 1 / sqrt(sigma^2 + sigma_data^2),
    c_noise = ln(sigma) / 4.
    """
    s, sd = _sigma(sigma), check_positive("sigma_data", sigma_data)
    root = (s**2 + sd**2).sqrt()
    return Scalings(sd**2 / root**2, s * sd / root, 1 / root, _c_noise(s))


#: The parameterisations by name, each a function sigma -> Scalings (EDM with sigma_data = 0.5).
PARAMETERISATIONS: dict[str, Callable[..., Scalings]] = {
    "eps": eps_scalings, "x0": x0_scalings, "v": v_scalings, "score": score_scalings, "flow": flow_scalings,
    "edm": edm_scalings,
}


def _check_scalings(scalings) -> None:
    if not callable(scalings):
        raise TypeError("scalings must be a function sigma -> Scalings, e.g. diffbook.preconditioning.edm_scalings "
                        f"(or a value of PARAMETERISATIONS), got {type(scalings).__name__}.")


def precondition(net, scalings: Callable[..., Scalings]):
    """The denoiser of a network ``net(x_in, c_noise, **cond) -> F`` under ``scalings`` (a function sigma -> Scalings).

    Implements Eq. (precond-denoiser): D(x; sigma) = c_skip x + c_out F(c_in x; c_noise). The network's output is
    computed in its own dtype, the combination in x's. The returned denoiser keeps ``net`` and ``scalings``.
    """
    _check_scalings(scalings)
    if not callable(net):
        raise TypeError(f"net must be callable as net(x, c_noise, **cond), got {type(net).__name__}.")

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        c = scalings(sigma)
        out = net(x * per_sample(c.c_in, x), c.c_noise, **cond)
        out = out.sample if hasattr(out, "sample") else out
        return per_sample(c.c_skip, x) * x + per_sample(c.c_out, x) * out.to(x.dtype)

    denoiser.net, denoiser.scalings = net, scalings
    return denoiser


def network_target(scalings: Callable[..., Scalings], x0: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """The value of F that makes D(x; sigma) = x0 exactly: F_target = (x0 - c_skip x) / c_out. Eq. (precond-target).

    For eps-prediction it is the noise n, for x0-prediction x0, for v-prediction v = alpha n - sigma_VP x0, for the
    flow velocity n - x0 and for EDM (x0 - c_skip x) / c_out, a target of unit variance. Needs sigma > 0.
    """
    _check_scalings(scalings)
    check_tensor("x0", x0)
    sigma = check_batch_sigma(x, sigma)
    if (sigma == 0).any():
        raise ValueError("network_target needs sigma > 0 (at sigma = 0 some parameterisations have c_out = 0).")
    c = scalings(sigma)
    return (x0 - per_sample(c.c_skip, x) * x) / per_sample(c.c_out, x)


def loss_weight(scalings: Callable[..., Scalings], sigma) -> torch.Tensor:
    """The weight lambda(sigma) = 1 / c_out^2 that a plain MSE on F puts on the denoiser's error. Eq. (precond-weight).

    ||F - F_target||^2 = ||D - x0||^2 / c_out^2, so eps-prediction weights the error in x0_hat by 1 / sigma^2 (the
    SNR), v-prediction by 1 + 1/sigma^2 and EDM by (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Eq. (edm-weight)).
    """
    _check_scalings(scalings)
    return 1 / scalings(_sigma(sigma)).c_out ** 2


def preconditioned_loss(net, scalings: Callable[..., Scalings], x0: torch.Tensor, sigma: torch.Tensor,
                        generator: torch.Generator | None = None, **cond) -> torch.Tensor:
    """The mean-squared error of F on its target at the levels ``sigma`` [B]: E ||F(c_in x; c_noise) - F_target||^2.

    Implements Eq. (precond-loss): x = x0 + sigma n with n from ``generator``, the error averaged over the
    dimensions and the batch. Equal to the denoiser's squared error weighted by Eq. (precond-weight).
    """
    _check_scalings(scalings)
    check_tensor("x0", x0)
    sigma = check_batch_sigma(x0, sigma)
    if (sigma == 0).any():
        raise ValueError("train at sigma > 0: draw the levels with e.g. log_uniform_sigmas(...).")
    x = x0 + per_sample(sigma, x0) * torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    c = scalings(sigma)
    out = net(x * per_sample(c.c_in, x), c.c_noise, **cond)
    out = out.sample if hasattr(out, "sample") else out
    target = network_target(scalings, x0, x, sigma)
    return (out.float() - target.float()).pow(2).flatten(1).mean(1).mean()


def log_uniform_sigmas(n: int, sigma_min: float, sigma_max: float, generator: torch.Generator | None = None,
                       dtype=torch.float32, device=None) -> torch.Tensor:
    """n noise levels with ln(sigma) uniform on [ln sigma_min, ln sigma_max]: every scale of noise equally often."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}.")
    lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if lo >= hi:
        raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).to(dtype)
