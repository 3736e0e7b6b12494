"""Argument checks shared by diffbook: each raises one clear error that names the problem and the fix."""

from __future__ import annotations

import math

import torch


def check_tensor(name: str, t, *, min_dim: int = 1) -> torch.Tensor:
    """Check that ``t`` is a floating-point tensor with at least ``min_dim`` dimensions and no NaN/inf."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; wrap it with torch.as_tensor(...).")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; call .float() on it.")
    if t.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (batch first), got shape {tuple(t.shape)}.")
    check_finite(name, t)
    return t


def check_finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """Raise ValueError if ``t`` holds NaN or infinite values."""
    if t.numel() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values; check the inputs (and the step size) that produced it.")
    return t


def check_batch_sigma(x: torch.Tensor, sigma) -> torch.Tensor:
    """Return ``sigma`` as a float tensor of shape [B] matching the batch of ``x``.

    A Python number or a 0-d tensor is broadcast to the batch; a [B] tensor is checked.
    """
    check_tensor("x", x)
    if isinstance(sigma, (int, float)):
        sigma = torch.tensor(float(sigma))
    if not isinstance(sigma, torch.Tensor):
        raise TypeError(f"sigma must be a number or a tensor of shape [B], got {type(sigma).__name__}.")
    sigma = sigma.to(device=x.device, dtype=x.dtype)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.dim() != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(
            f"sigma must have shape [B] = [{x.shape[0]}] (one noise level per sample), got {tuple(sigma.shape)}."
        )
    check_finite("sigma", sigma)
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0 (it is a noise standard deviation).")
    return sigma


def check_sigmas(sigmas) -> torch.Tensor:
    """Check a sampler's noise levels: 1-D, finite, >= 2 entries, strictly decreasing, non-negative."""
    if not isinstance(sigmas, torch.Tensor):
        raise TypeError(f"sigmas must be a 1-D torch.Tensor, got {type(sigmas).__name__}; use diffbook.schedules to make one.")
    if sigmas.dim() != 1 or sigmas.shape[0] < 2:
        raise ValueError(
            f"sigmas must be a 1-D tensor with at least 2 entries (start and end level), got shape {tuple(sigmas.shape)}."
        )
    check_finite("sigmas", sigmas)
    if (sigmas < 0).any():
        raise ValueError("sigmas must be non-negative noise levels.")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError(
            "sigmas must be strictly decreasing (from the largest noise level down to the smallest, usually ending in 0); "
            "reverse it or use diffbook.schedules to build it."
        )
    return sigmas


def check_nfe(n) -> int:
    """Check a number of steps / network evaluations: an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, (int,)) and not (isinstance(n, float) and n.is_integer()):
        raise TypeError(f"the number of steps must be an integer >= 1, got {n!r}.")
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of steps must be >= 1, got {n}.")
    return n


def check_positive(name: str, v) -> float:
    """Check a strictly positive finite scalar."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {v!r}.") from None
    if not math.isfinite(f) or f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}.")
    return f
