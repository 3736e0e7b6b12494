"""The DDPM forward (noising) process: the iterated chain and its closed form.

Notation: ``x0`` = x_0 (data), ``x_t`` = x_t, ``beta`` = beta_t, ``alpha_bar`` = bar(alpha)_t, ``eps`` = epsilon.
Coordinates are the VP ones of Ho et al. 2020: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
"""

from __future__ import annotations

import torch

from .checks import check_tensor, per_sample


def _check_table(name: str, v: torch.Tensor, upper_inclusive: bool) -> torch.Tensor:
    """A 1-D schedule table (betas or alpha_bar) with entries in (0, 1) (alpha_bar may reach 1)."""
    check_tensor(name, v)
    if v.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor (one entry per timestep), got shape {tuple(v.shape)}.")
    if (v <= 0).any() or (v > 1).any() or (not upper_inclusive and (v >= 1).any()):
        raise ValueError(f"{name} must lie strictly between 0 and 1.")
    return v


def _check_t(t, n_steps: int, batch: int, device) -> torch.Tensor:
    try:
        t = torch.as_tensor(t, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"t must be an integer or an integer tensor of shape [B], got {type(t).__name__}.") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps in 0..{n_steps - 1}, got dtype {t.dtype}.")
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape [B] = [{batch}], got {tuple(t.shape)}.")
    if (t < 0).any() or (t >= n_steps).any():
        raise ValueError(f"t must lie in 0..{n_steps - 1} (0-based timesteps).")
    return t


def q_sample(x0: torch.Tensor, t, alpha_bar: torch.Tensor, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one shot.

    Implements Eq. (ddpm-closed-form): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps; Ho et al. 2020, Eq. (4).
    ``t`` holds 0-based integer timesteps, one per sample (or one for all).
    """
    check_tensor("x0", x0)
    _check_table("alpha_bar", alpha_bar, upper_inclusive=True)
    t = _check_t(t, alpha_bar.shape[0], x0.shape[0], x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    elif check_tensor("noise", noise).shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}.")
    ab = per_sample(alpha_bar.to(x0.device)[t], x0).to(x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_step(x_prev: torch.Tensor, beta_t: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One step of the forward chain: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps. Eq. (ddpm-forward-step)."""
    check_tensor("x_prev", x_prev)
    if not isinstance(beta_t, (float, int, torch.Tensor)) or isinstance(beta_t, bool):
        raise TypeError(f"beta_t must be a number, got {type(beta_t).__name__}.")
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    if beta_t.numel() != 1 or not (0 < beta_t.item() < 1):
        raise ValueError(f"beta_t must be one number strictly between 0 and 1, got {beta_t.tolist()}.")
    noise = torch.randn(x_prev.shape, generator=generator, device=x_prev.device, dtype=x_prev.dtype)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


def q_chain(x0: torch.Tensor, betas: torch.Tensor, generator: torch.Generator | None = None,
            keep: int | None = None) -> list[torch.Tensor]:
    """Run the forward chain x_0 -> x_1 -> ... -> x_T step by step; return [x_0, x_1, ..., x_T].

    Implements Eq. (ddpm-forward-step) iterated. With ``keep=k`` only every k-th state is kept (plus x_T).
    """
    check_tensor("x0", x0)
    _check_table("betas", betas, upper_inclusive=False)
    out, x = [x0], x0
    for i, b in enumerate(betas):
        x = q_step(x, b, generator)
        if keep is None or (i + 1) % keep == 0 or i + 1 == len(betas):
            out.append(x)
    return out


def q_posterior_mean_var(x0: torch.Tensor, x_t: torch.Tensor, t, betas: torch.Tensor):
    """Return the mean and variance of q(x_{t-1} | x_t, x_0) for t >= 1.

    Implements Eq. (ddpm-posterior): mean = sqrt(ab_{t-1}) beta_t/(1-ab_t) x_0 + sqrt(alpha_t)(1-ab_{t-1})/(1-ab_t) x_t,
    var = (1-ab_{t-1})/(1-ab_t) beta_t; Ho et al. 2020, Eqs. (6)-(7).
    """
    check_tensor("x0", x0)
    check_tensor("x_t", x_t)
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}.")
    _check_table("betas", betas, upper_inclusive=False)
    t = _check_t(t, betas.shape[0], x0.shape[0], x0.device)
    if (t < 1).any():
        raise ValueError("q(x_{t-1} | x_t, x_0) needs t >= 1 (x_{-1} does not exist).")
    betas = betas.to(x0.device, torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    ab_t, ab_prev, beta_t = alpha_bar[t], alpha_bar[t - 1], betas[t]
    c0 = ab_prev.sqrt() * beta_t / (1 - ab_t)
    ct = (1 - beta_t).sqrt() * (1 - ab_prev) / (1 - ab_t)
    var = (1 - ab_prev) / (1 - ab_t) * beta_t
    mean = per_sample(c0, x0).to(x0) * x0 + per_sample(ct, x0).to(x0) * x_t
    return mean, per_sample(var, x0).to(x0)
