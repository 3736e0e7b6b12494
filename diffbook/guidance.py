"""Guidance as denoiser wrappers: each function takes a denoiser and returns a new one.

Notation (code name -> book symbol): ``x0_hat`` = D(x; sigma, c) the conditional denoiser, ``x0_hat_null`` =
D(x; sigma, null) the unconditional one (the same network given the "null" condition), ``w`` = the guidance weight
w of Ho & Salimans 2022, ``scale`` = the classifier-guidance scale gamma of Dhariwal & Nichol 2021.

Guidance is linear in the model output, and x0_hat = x - sigma eps_hat is affine in eps_hat with the same x, so
mixing denoiser outputs is the same as mixing noise predictions (or scores) with the same weights. The wrapped
denoiser works with every sampler in :mod:`diffbook.samplers`.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch

from .checks import check_batch_sigma

__all__ = ["cfg", "classifier_guidance"]


def _check_weight(name: str, w) -> float:
    if isinstance(w, torch.Tensor) and w.numel() == 1 and not w.is_complex():
        w = w.item()
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {w!r}.")
    w = float(w)
    if not math.isfinite(w):
        raise ValueError(f"{name} must be finite, got {w}.")
    return w


def _as_batch(v, B: int, like):
    """Return ``v`` as a batch of B entries (expanding a scalar or 0-d tensor), or None if it cannot be batched."""
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            return v.expand(B)
        return v if v.shape[0] == B else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(like, torch.Tensor):
        return torch.full((B,), v, dtype=like.dtype, device=like.device)
    return None


def _batched_cond(cond: dict, null: dict, B: int):
    """Concatenate the conditional and null keyword arguments into one batch of 2B, or return None."""
    out = {}
    for key in cond.keys() | null.keys():
        c, n = cond.get(key), null.get(key)
        if c is n and not isinstance(c, torch.Tensor):  # the same non-tensor option for both halves
            out[key] = c
            continue
        cb, nb = _as_batch(c, B, n), _as_batch(n, B, c)
        if cb is None or nb is None or cb.shape[1:] != nb.shape[1:]:
            return None
        out[key] = torch.cat([cb, nb.to(device=cb.device, dtype=cb.dtype)])
    return out


def cfg(denoiser: Callable, w: float, null_cond: dict) -> Callable:
    """Wrap a conditional denoiser with classifier-free guidance of weight w.

    Implements Eq. (cfg): D_w(x; sigma, c) = D(x; sigma, null) + (1 + w) (D(x; sigma, c) - D(x; sigma, null));
    Ho & Salimans 2022. Convention: w = 0 is the plain conditional model, w = -1 the unconditional one, w > 0
    sharpens towards the condition. diffusers' ``guidance_scale`` is 1 + w (its
    ``noise_uncond + guidance_scale * (noise_cond - noise_uncond)``), so guidance_scale = 7.5 means w = 6.5.

    ``null_cond`` holds the keyword arguments of the unconditional call (e.g. ``{"class_labels": 10}`` for a model
    trained with label 10 as the dropped "null" class); they override the matching entries of the conditioning
    passed at call time, other entries are shared. When every conditioning value is a tensor with a batch
    dimension (or a number / 0-d tensor, broadcast to the batch) both halves run in ONE call on a batch of 2B;
    otherwise the wrapper makes two calls.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")
    w = _check_weight("w", w)
    if not isinstance(null_cond, dict):
        raise TypeError(f"null_cond must be a dict of keyword arguments, e.g. {{'class_labels': 10}}, "
                        f"got {type(null_cond).__name__}.")
    null_cond = dict(null_cond)

    def guided(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        null = {**cond, **null_cond}
        B = x.shape[0]
        batch = _batched_cond(cond, null, B)
        if batch is not None:
            out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **batch)
            x0_hat, x0_hat_null = out[:B], out[B:]
        else:
            x0_hat, x0_hat_null = denoiser(x, sigma, **cond), denoiser(x, sigma, **null)
        return x0_hat_null + (1 + w) * (x0_hat - x0_hat_null)

    guided.denoiser, guided.w, guided.null_cond = denoiser, w, null_cond
    return guided


def classifier_guidance(denoiser: Callable, log_prob_fn: Callable, scale: float = 1.0) -> Callable:
    """Wrap a denoiser with classifier guidance: add scale * sigma^2 * grad_x log p(y | x; sigma).

    Implements Eq. (classifier-guidance): the guided score is score + scale * grad log p(y | x) (Dhariwal & Nichol
    2021; Song et al. 2021, Sec. 5), and by Tweedie (Eq. (tweedie)) D = x + sigma^2 score, so
    D_guided = D + scale sigma^2 grad_x log p(y | x; sigma). ``log_prob_fn(x, sigma) -> [B]`` returns the
    noise-aware classifier's log-probability of the target labels (close over the labels). With scale = 1 and an
    exact classifier this is exactly the class-conditional denoiser (Bayes' rule).
    """
    if not callable(denoiser) or not callable(log_prob_fn):
        raise TypeError("denoiser and log_prob_fn must both be callables: denoiser(x, sigma, **cond) and "
                        "log_prob_fn(x, sigma) -> [B].")
    scale = _check_weight("scale", scale)

    def guided(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        x0_hat = denoiser(x, sigma, **cond)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_p = log_prob_fn(x_in, sigma)
            if not isinstance(log_p, torch.Tensor) or log_p.shape != (x.shape[0],):
                got = tuple(log_p.shape) if isinstance(log_p, torch.Tensor) else type(log_p).__name__
                raise ValueError(f"log_prob_fn must return one log-probability per sample, shape [{x.shape[0]}], "
                                 f"got {got}.")
            (grad,) = torch.autograd.grad(log_p.sum(), x_in)
        return x0_hat + scale * sigma.reshape(-1, *([1] * (x.dim() - 1))) ** 2 * grad

    guided.denoiser, guided.scale = denoiser, scale
    return guided
