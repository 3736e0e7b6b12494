"""Editing real images with a diffusion model: SDEdit, and deterministic DDIM inversion followed by regeneration.

Notation (code name -> book symbol):

=================  =================================================================================
``x_guide``        the guide image: a sketch, a collage, or a real image to edit (in [-1, 1])
``sigma_start``    sigma_0, the noise level the guide is pushed to before sampling (``sigmas[0]``)
``x_T``            the inverted image: the point at sigma_0 whose ODE trajectory ends on the input
``d``              dx/dsigma = (x - x0_hat) / sigma, the PF-ODE derivative, Eq. (pf-ode-sigma)
=================  =================================================================================

SDEdit (Meng et al. 2022) adds noise of level sigma_0 to a guide and lets a sampler remove it: a low sigma_0
keeps the guide (faithful, but unrealistic if the guide is), a high one forgets it (realistic, unfaithful).
DDIM inversion (Song, Meng and Ermon 2021, Sec. 4.3; Dhariwal and Nichol 2021, App. F) runs the deterministic
sampler backwards, from the image up to sigma_0; running DDIM forwards from there with the same condition comes
back (nearly) to the image, with another condition it makes an edited image that keeps the rest.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .checks import check_sigmas, check_tensor
from .samplers import sample_ddpm_ancestral

__all__ = ["sigma_range", "check_levels", "sdedit", "ddim_invert"]


def sigma_range(denoiser) -> tuple[float, float] | None:
    """The noise levels (sigma_min, sigma_max) a denoiser was trained on, when it says: a wrapped DDPM network
    (:func:`diffbook.denoisers.from_eps_model`) carries its alpha_bar table; wrappers pass it on. None if unknown."""
    if getattr(denoiser, "sigma_range", None) is not None:
        return tuple(denoiser.sigma_range)
    table = getattr(denoiser, "alpha_bar", None)
    if isinstance(table, torch.Tensor) and table.dim() == 1 and table.numel() > 1:
        sig = ((1 - table.double()) / table.double()).sqrt()
        return float(sig.min()), float(sig.max())
    inner = getattr(denoiser, "denoiser", None)
    return sigma_range(inner) if inner is not None and inner is not denoiser else None


def check_levels(sigmas, denoiser, sigma_max: float | None = None) -> torch.Tensor:
    """Check a sampler's noise levels and that they lie in the denoiser's range (when it is known, or up to
    ``sigma_max``): one ValueError naming the level and the range."""
    check_sigmas(sigmas)
    known = sigma_range(denoiser)
    hi = sigma_max if sigma_max is not None else (known[1] if known else None)
    lo = known[0] if known else None
    top = float(sigmas[0])
    if hi is not None and top > hi * (1 + 1e-6):
        raise ValueError(f"the first noise level {top:.4g} lies above the model's largest, sigma_max = {hi:.4g}; "
                         "start at or below sigma_max.")
    positive = sigmas[sigmas > 0]
    if lo is not None and positive.numel() and float(positive.min()) < lo * (1 - 1e-6):
        raise ValueError(f"the noise level {float(positive.min()):.4g} lies below the model's smallest, "
                         f"sigma_min = {lo:.4g}; end the levels with sigma_min and then 0.")
    return sigmas


def sdedit(denoiser: Callable, x_guide: torch.Tensor, sigmas: torch.Tensor, *, sampler: Callable | None = None,
           generator: torch.Generator | None = None, cond: dict | None = None, callback=None,
           sigma_max: float | None = None) -> torch.Tensor:
    """Edit a guide image by noising it to sigma_0 = ``sigmas[0]`` and sampling back to sigma = 0.

    Implements Eq. (sdedit): x = x_guide + sigma_0 z, then ``sampler`` (default: DDPM's ancestral sampler,
    :func:`diffbook.samplers.sample_ddpm_ancestral`) on the levels ``sigmas``; Meng et al. 2022. In the book's
    VE coordinates the noised guide is exactly a point the model was trained on, for a VP model too. The levels
    must lie in the model's range (:func:`check_levels`).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")
    check_tensor("x_guide", x_guide)
    check_levels(sigmas, denoiser, sigma_max)
    sampler = sample_ddpm_ancestral if sampler is None else sampler
    z = torch.randn(x_guide.shape, generator=generator, dtype=x_guide.dtype).to(x_guide.device)
    x = x_guide + float(sigmas[0]) * z
    return sampler(denoiser, x, sigmas.to(x_guide.device), generator=generator, cond=cond, callback=callback)


@torch.no_grad()
def ddim_invert(denoiser: Callable, x0: torch.Tensor, sigmas: torch.Tensor, *, cond: dict | None = None,
                callback=None, sigma_max: float | None = None) -> torch.Tensor:
    """Run deterministic DDIM backwards: carry an image from the smallest level of ``sigmas`` up to ``sigmas[0]``.

    Implements Eq. (ddim-inversion): with the levels of ``sigmas`` in increasing order (the trailing 0 dropped) and
    x starting at x0, each step is x <- x + (sigma_up - sigma) d with d = (x - D(x; sigma)) / sigma evaluated at the
    *lower* level, an Euler step of the PF-ODE upwards. DDIM with the same ``sigmas`` (:func:`diffbook.samplers.
    sample_ddim`) evaluates d at the upper end of each step instead, so regenerating comes back to x0 only up to
    an error that shrinks like 1 / steps. Returns x at sigma_0. ``callback`` sees ``{"i", "x", "sigma",
    "denoised"}`` before each step.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")
    check_tensor("x0", x0)
    check_levels(sigmas, denoiser, sigma_max)
    cond = {} if cond is None else cond
    levels = [float(s) for s in sigmas.detach().cpu().double() if s > 0][::-1]  # increasing
    if len(levels) < 2:
        raise ValueError("ddim_invert needs at least two positive noise levels in sigmas.")
    x = x0
    for i in range(len(levels) - 1):
        sigma, sigma_up = levels[i], levels[i + 1]
        x0_hat = denoiser(x, x.new_full((x.shape[0],), sigma), **cond)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": x0_hat})
        d = (x - x0_hat) / sigma
        x = x + (sigma_up - sigma) * d
    if not math.isfinite(float(x.abs().max())):
        raise ValueError("the inversion diverged (NaN or infinite values); check the denoiser and the levels.")
    return x
