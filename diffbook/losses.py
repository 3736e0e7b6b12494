"""Training losses: DDPM's eps-MSE, multi-sigma denoising score matching, the continuous SDE loss, EDM's.

Each takes the network, a batch of clean data ``x0`` and a ``generator`` for the noise, and returns a scalar.
"""

from __future__ import annotations


import torch

from .checks import check_tensor, per_sample


def _randn(x, generator):
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddpm_eps_loss(eps_net, x0: torch.Tensor, alpha_bar: torch.Tensor, generator=None, **cond) -> torch.Tensor:
    """E_{t, eps} || eps - eps_net(x_t, t) ||^2 with t uniform on 0..T-1.

    Implements Eq. (ddpm-simple-loss), L_simple of Ho et al. 2020.
    """
    check_tensor("x0", x0)
    T = alpha_bar.shape[0]
    t = torch.randint(0, T, (x0.shape[0],), generator=generator, device=x0.device)
    eps = _randn(x0, generator)
    ab = per_sample(alpha_bar.to(x0.device, x0.dtype)[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    out = eps_net(x_t, t.to(x0.dtype), **cond)
    out = out.sample if hasattr(out, "sample") else out
    return ((out.float() - eps.float()) ** 2).mean()


def dsm_loss(score_net, x0: torch.Tensor, sigmas: torch.Tensor, generator=None, **cond) -> torch.Tensor:
    """Multi-sigma denoising score matching with lambda(sigma) = sigma^2.

    Implements Eq. (ncsn-loss): 1/2 E || sigma s(x0 + sigma z, sigma) + z ||^2, sigma drawn uniformly from the
    ladder; Vincent 2011, Song & Ermon 2019 Eq. (6).
    """
    check_tensor("x0", x0)
    idx = torch.randint(0, sigmas.shape[0], (x0.shape[0],), generator=generator, device=x0.device)
    sigma = sigmas.to(x0.device, x0.dtype)[idx]
    z = _randn(x0, generator)
    x = x0 + per_sample(sigma, x0) * z
    out = score_net(x, sigma, **cond)
    out = out.sample if hasattr(out, "sample") else out
    return 0.5 * ((per_sample(sigma, x0) * out.float() + z.float()) ** 2).flatten(1).sum(1).mean()


def sde_loss(score_net, x0: torch.Tensor, sde, generator=None, t_eps: float = 1e-5, **cond) -> torch.Tensor:
    """Continuous-time denoising score matching with lambda(t) = s(t)^2.

    Implements Eq. (sde-loss): E_t E || s(t) score(x_t, t) + z ||^2, t ~ U(t_eps, 1); Song et al. 2021 Eq. (7).
    ``score_net(x_t, t)`` takes the continuous time t.
    """
    check_tensor("x0", x0)
    t = torch.rand(x0.shape[0], generator=generator, device=x0.device, dtype=torch.float64) * (1 - t_eps) + t_eps
    m, s = sde.marginal(t)
    m, s = per_sample(m.to(x0.dtype), x0), per_sample(s.to(x0.dtype), x0)
    z = _randn(x0, generator)
    out = score_net(m * x0 + s * z, t.to(x0.dtype), **cond)
    out = out.sample if hasattr(out, "sample") else out
    return ((s * out.float() + z.float()) ** 2).flatten(1).sum(1).mean()


def edm_loss(denoiser, x0: torch.Tensor, generator=None, p_mean: float = -1.2, p_std: float = 1.2,
             sigma_data: float = 0.5, **cond) -> torch.Tensor:
    """EDM's loss: ln sigma ~ N(p_mean, p_std^2), weight (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

    Implements Eq. (edm-loss); Karras et al. 2022, Table 1. ``denoiser`` follows diffbook's convention.
    """
    check_tensor("x0", x0)
    ln_sigma = torch.randn(x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype) * p_std + p_mean
    sigma = ln_sigma.exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    x = x0 + per_sample(sigma, x0) * _randn(x0, generator)
    err = (denoiser(x, sigma, **cond).float() - x0.float()) ** 2
    return (per_sample(weight, x0) * err).mean()
