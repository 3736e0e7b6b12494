"""Forward SDEs of Song et al. 2021: VP, sub-VP and VE, with their reverse SDE and probability-flow ODE.

Notation (code name -> book symbol): ``t`` = t in [0, 1]; ``drift`` = f(x, t); ``diffusion`` = g(t);
``score`` = grad_x log p_t(x); ``beta`` = beta(t) = beta_min + t (beta_max - beta_min).
Every SDE here has a Gaussian marginal x_t = m(t) x_0 + s(t) z, so in VE coordinates x / m(t) it is x_0 + sigma(t) z
with sigma(t) = s(t) / m(t) (Eq. (sde-to-sigma)); that is how one set of samplers serves all three.
"""

from __future__ import annotations

import math

import torch

from .checks import check_positive, per_sample


def _like(v, x: torch.Tensor) -> torch.Tensor:
    """``v`` (a number, 0-d or [B] tensor) in x's dtype, shaped to broadcast over x (:func:`diffbook.checks.per_sample`)."""
    return per_sample(torch.as_tensor(v, dtype=x.dtype, device=x.device), x)


class SDE:
    """Base class: dx = f(x, t) dt + g(t) dw on t in [0, 1]. Eq. (sde-forward)."""

    def drift(self, x, t):
        raise NotImplementedError

    def diffusion(self, t):
        raise NotImplementedError

    def marginal(self, t):
        """Return (m(t), s(t)) with x_t | x_0 ~ N(m(t) x_0, s(t)^2 I)."""
        raise NotImplementedError

    def prior_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        """Sample x_1 from the prior N(0, s(1)^2 I) (the mean m(1) x_0 is taken as ~0 except for VE)."""
        _, s = self.marginal(torch.tensor(1.0, dtype=torch.float64))
        return torch.randn(shape, generator=generator, dtype=dtype, device=device) * float(s)

    def to_sigma(self, t):
        """Return the VE-coordinate noise level sigma(t) = s(t) / m(t). Eq. (sde-to-sigma)."""
        m, s = self.marginal(torch.as_tensor(t, dtype=torch.float64))
        return s / m

    def reverse_drift(self, x, t, score):
        """Drift of the reverse-time SDE, f - g^2 score (Anderson 1982). Eq. (sde-reverse)."""
        return self.drift(x, t) - _like(self.diffusion(t), x) ** 2 * score

    def pf_ode_drift(self, x, t, score):
        """Drift of the probability-flow ODE, f - g^2 score / 2. Eq. (pf-ode)."""
        return self.drift(x, t) - 0.5 * _like(self.diffusion(t), x) ** 2 * score

    def sample_marginal(self, x0, t, generator=None):
        """Sample x_t ~ p_t(x_t | x_0) in closed form."""
        m, s = self.marginal(torch.as_tensor(t, dtype=torch.float64))
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return _like(m, x0) * x0 + _like(s, x0) * z


class VPSDE(SDE):
    """Variance-preserving SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, the continuous limit of DDPM. Eq. (vp-sde)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min = check_positive("beta_min", beta_min)
        self.beta_max = check_positive("beta_max", beta_max)

    def beta(self, t):
        return self.beta_min + torch.as_tensor(t, dtype=torch.float64) * (self.beta_max - self.beta_min)

    def _log_mean(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift(self, x, t):
        return -0.5 * _like(self.beta(t), x) * x

    def diffusion(self, t):
        return self.beta(t).sqrt()

    def marginal(self, t):
        lm = self._log_mean(t)
        return lm.exp(), (1 - (2 * lm).exp()).sqrt()

    def discrete_betas(self, T: int = 1000) -> torch.Tensor:
        """DDPM betas whose chain discretises this SDE: beta_i = beta(t_i) / T on t_i = i / (T - 1).

        Song et al. 2021, App. B: with beta_min = 0.1, beta_max = 20 and T = 1000 these are exactly DDPM's linear
        betas 1e-4 ... 0.02, so a DDPM trained with them is a discretised VP-SDE model.
        """
        t = torch.linspace(0, 1, T, dtype=torch.float64)
        return self.beta(t) / T


class SubVPSDE(VPSDE):
    """Sub-VP SDE: same drift as VP, g(t)^2 = beta(t)(1 - exp(-2 int_0^t beta)). Eq. (subvp-sde)."""

    def diffusion(self, t):
        integral = -2 * self._log_mean(t)  # int_0^t beta(s) ds
        return (self.beta(t) * (1 - (-2 * integral).exp())).sqrt()

    def marginal(self, t):
        lm = self._log_mean(t)
        return lm.exp(), 1 - (2 * lm).exp()


class VESDE(SDE):
    """Variance-exploding SDE dx = sqrt(d sigma(t)^2 / dt) dw with sigma(t) = sigma_min (sigma_max/sigma_min)^t.

    The continuous limit of NCSN. Implements Eq. (ve-sde); Song et al. 2021.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")

    def sigma(self, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def marginal(self, t):
        s = self.sigma(t)
        return torch.ones_like(s), s

    def prior_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device) * self.sigma_max
