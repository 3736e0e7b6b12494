"""Samplers: plain functions that turn noise into data with a denoiser ``D(x, sigma) -> x0_hat``.

Every sampler has the signature ``sample_*(denoiser, x, sigmas, *, callback=None, generator=None, cond=None, ...)``
and works in the VE coordinates of :mod:`diffbook.denoisers` (x = x_0 + sigma n). ``sigmas`` is a strictly
decreasing 1-D tensor (see :mod:`diffbook.schedules`), usually ending in 0; the caller draws the initial ``x``
(``torch.randn(shape) * sigmas[0]``, or ``* schedules.vp_prior_std(sigmas[0])`` for a VP/DDPM model).

Notation (code name -> book symbol):

==============  ==============================================================================
``x``           x_i, the current sample at noise level sigma_i (VE coordinates)
``sigma``       sigma_i, the current noise level (``sigmas[i]``)
``sigma_next``  sigma_{i+1}, the next (smaller) noise level (``sigmas[i + 1]``)
``x0_hat``      D(x_i; sigma_i), the denoiser's estimate of E[x_0 | x_i]
``eps_hat``     (x_i - x0_hat) / sigma_i, the implied noise estimate
``d``           dx/dsigma = (x - x0_hat) / sigma, the PF-ODE derivative, Eq. (pf-ode-sigma)
``score``       (x0_hat - x) / sigma^2, grad log p_sigma(x), Eq. (tweedie)
``z``           a fresh standard normal draw (from ``generator``)
==============  ==============================================================================

Before each update the optional ``callback`` receives ``dict(i=i, x=x, sigma=sigma_i, denoised=x0_hat)``
(``sigma`` a Python float); it is called once per step (``len(sigmas) - 1`` times; for annealed Langevin once per
Langevin step). Randomness comes only from ``generator`` (``None`` uses torch's global RNG), so a seeded generator
gives identical samples. Deterministic samplers accept ``generator`` and ignore it. ``cond`` is a dict of extra
keyword arguments for the denoiser (e.g. ``{"class_labels": y}``).

Scalars (sigmas and step coefficients) are computed as Python floats in double precision; tensors keep the device
and dtype of ``x``. Samplers run under ``torch.no_grad()`` (as in k-diffusion), so a network's activations are not
kept across steps; wrappers that need gradients (:func:`diffbook.guidance.classifier_guidance`) turn them on locally.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch

from .checks import check_finite, check_nfe, check_positive, check_sigmas, check_tensor

__all__ = ["sample_ddpm_ancestral", "sample_ddim", "sample_euler", "sample_heun", "sample_edm", "sample_dpmpp_2m",
           "sample_euler_maruyama", "sample_pc", "sample_annealed_langevin", "SAMPLERS", "nfe"]


# ----------------------------------------------------------------------------------------------- shared plumbing
def _prepare(denoiser, x, sigmas, callback, generator, cond) -> tuple[list[float], dict]:
    """Validate the common arguments; return the sigmas as Python floats and the conditioning dict."""
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")
    check_tensor("x", x)
    if x.numel() == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}.")
    if isinstance(sigmas, torch.Tensor) and (sigmas.is_complex() or sigmas.dtype == torch.bool):
        raise TypeError(f"sigmas must be a real tensor, got dtype {sigmas.dtype}; use diffbook.schedules to build it.")
    check_sigmas(sigmas)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
        if generator.device.type != x.device.type:
            raise ValueError(
                f"generator lives on {generator.device} but x on {x.device}; create it with "
                f"torch.Generator(device=x.device)."
            )
    if cond is None:
        cond = {}
    if not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict of keyword arguments for the denoiser, got {type(cond).__name__}.")
    return [float(s) for s in sigmas.detach().cpu().double()], cond


def _denoise(denoiser, x: torch.Tensor, sigma: float, cond: dict) -> torch.Tensor:
    """Call the denoiser at one noise level for the whole batch and check what comes back."""
    x0_hat = denoiser(x, x.new_full((x.shape[0],), sigma), **cond)
    if not isinstance(x0_hat, torch.Tensor):
        raise TypeError(f"the denoiser must return a tensor x0_hat, got {type(x0_hat).__name__}.")
    if x0_hat.shape != x.shape:
        raise ValueError(
            f"the denoiser returned shape {tuple(x0_hat.shape)} for x of shape {tuple(x.shape)}; "
            "it must return x0_hat with the shape of x."
        )
    return x0_hat.to(x.dtype)


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _notify(callback, i: int, x: torch.Tensor, sigma: float, x0_hat: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "denoised": x0_hat})


def _finish(x: torch.Tensor) -> torch.Tensor:
    check_finite("the sampler's output", x)
    return x


# ----------------------------------------------------------------------------------------------- DDPM and DDIM
@torch.no_grad()
def sample_ddpm_ancestral(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                          generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Sample by ancestral steps through the DDPM posterior q(x_{i+1} | x_i, x0_hat), in VE coordinates.

    Implements Eq. (ddpm-ancestral): with s = sigma_next and t = sigma,
    x <- x0_hat + (s^2 / t^2)(x - x0_hat) + (s / t) sqrt(t^2 - s^2) z; Ho et al. 2020, Alg. 2.
    This is Eq. (ddpm-posterior) divided by sqrt(alpha_bar_{t-1}), so it equals diffusers' ``DDPMScheduler``
    (``variance_type="fixed_small"``, ``clip_sample=False``) on any subset of timesteps, and DDIM with eta = 1.
    The last step to sigma = 0 returns x0_hat (no noise), as DDPM does at t = 0.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        if sigma_next == 0:
            x = x0_hat
            continue
        mean = x0_hat + (sigma_next**2 / sigma**2) * (x - x0_hat)
        std = sigma_next / sigma * math.sqrt(sigma**2 - sigma_next**2)
        x = mean + std * _randn(x, generator)
    return _finish(x)


@torch.no_grad()
def sample_ddim(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, eta: float = 0.0, callback=None,
                generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Sample with DDIM (Song, Meng & Ermon 2021), deterministic for eta = 0.

    Implements Eq. (ddim-update) in VE coordinates: eps_hat = (x - x0_hat) / sigma,
    c = eta (sigma_next / sigma) sqrt(sigma^2 - sigma_next^2), x <- x0_hat + sqrt(sigma_next^2 - c^2) eps_hat + c z
    (DDIM paper Eqs. (12) and (16) divided by sqrt(alpha_bar_prev)). With eta = 0 this is exactly an Euler step of
    the PF-ODE in sigma (:func:`sample_euler`); with eta = 1 it is the DDPM ancestral step. Matches diffusers'
    ``DDIMScheduler`` with ``set_alpha_to_one=True``. ``eta`` must lie in [0, 1].
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    if (eta := _check_real("eta", eta)) > 1:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM), got {eta}.")
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        if sigma_next == 0:
            x = x0_hat
            continue
        eps_hat = (x - x0_hat) / sigma
        c = eta * sigma_next / sigma * math.sqrt(sigma**2 - sigma_next**2)
        x = x0_hat + math.sqrt(max(sigma_next**2 - c**2, 0.0)) * eps_hat
        if c > 0:
            x = x + c * _randn(x, generator)
    return _finish(x)


# ----------------------------------------------------------------------------------------------- ODE solvers
@torch.no_grad()
def sample_euler(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                 generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE dx/dsigma = (x - x0_hat) / sigma with Euler steps.

    Implements Eq. (euler-step): x <- x + (sigma_next - sigma) d; Karras et al. 2022, Alg. 1 without the Heun
    correction. Matches diffusers' ``EulerDiscreteScheduler`` (no churn). Deterministic; ``generator`` is ignored.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        d = (x - x0_hat) / sigma
        x = x + (sigma_next - sigma) * d
    return _finish(x)


@torch.no_grad()
def sample_heun(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE with Heun's second-order method (Karras et al. 2022, Alg. 1, no churn).

    Implements Eq. (heun-step): an Euler predictor x' = x + (sigma_next - sigma) d, then the trapezoidal
    correction x <- x + (sigma_next - sigma)(d + d') / 2 with d' = (x' - D(x'; sigma_next)) / sigma_next. The last
    step to sigma = 0 is a plain Euler step (d' is undefined there). 2 n - 1 denoiser calls for n steps; matches
    diffusers' ``HeunDiscreteScheduler``. Deterministic; ``generator`` is ignored.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    for i in range(len(sig) - 1):
        x = _heun_step(denoiser, x, sig[i], sig[i + 1], cond, callback, i)
    return _finish(x)


def _heun_step(denoiser, x, sigma, sigma_next, cond, callback, i):
    """One step of Eq. (heun-step) from sigma to sigma_next (a plain Euler step when sigma_next = 0)."""
    x0_hat = _denoise(denoiser, x, sigma, cond)
    _notify(callback, i, x, sigma, x0_hat)
    d = (x - x0_hat) / sigma
    x_pred = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_pred
    d_next = (x_pred - _denoise(denoiser, x_pred, sigma_next, cond)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


@torch.no_grad()
def sample_edm(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, churn: float = 0.0, s_tmin: float = 0.0,
               s_tmax: float = math.inf, s_noise: float = 1.0, callback=None,
               generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2): add fresh noise ("churn"), then take a Heun step.

    Implements Eq. (edm-churn): with N = len(sigmas) - 1 steps and gamma = min(churn / N, sqrt(2) - 1) at levels
    s_tmin <= sigma <= s_tmax (else 0), raise the level to sigma_hat = (1 + gamma) sigma by adding noise,
    x_hat = x + s_noise sqrt(sigma_hat^2 - sigma^2) z, then take the Heun step of Eq. (heun-step) from sigma_hat
    to sigma_next. With churn = 0 it is :func:`sample_heun` step for step; 2 N - 1 denoiser calls. The callback
    sees x_hat and sigma_hat. ``s_noise`` slightly above 1 (EDM: 1.003-1.007) offsets a denoiser that removes
    slightly too much noise.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    churn, s_tmin, s_noise = (_check_real(k, v) for k, v in (("churn", churn), ("s_tmin", s_tmin),
                                                             ("s_noise", s_noise)))
    s_tmax = _check_real("s_tmax", s_tmax, allow_inf=True)
    if s_tmin > s_tmax:
        raise ValueError(f"s_tmin must not exceed s_tmax (churn acts on levels between them), got {s_tmin} > {s_tmax}.")
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        gamma = min(churn / (len(sig) - 1), math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # 1. churn: move up to sigma_hat with fresh noise; 2. a Heun step down to sigma_next
            x = x + s_noise * math.sqrt(sigma_hat**2 - sigma**2) * _randn(x, generator)
        x = _heun_step(denoiser, x, sigma_hat, sigma_next, cond, callback, i)
    return _finish(x)


def _check_real(name: str, v, allow_inf: bool = False) -> float:
    """A real number >= 0 (finite unless ``allow_inf``), or one clear error."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number >= 0, got {v!r}.")
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number >= 0, got {v!r}.")
    return float(v)


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                    generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE with DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), one call per step.

    Implements Eq. (dpmpp-2m): with lambda = -log sigma, h = lambda_next - lambda, r = h_prev / h,
    x0_mix = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev and x <- (sigma_next / sigma) x + (1 - sigma_next / sigma)
    x0_mix (Lu et al.'s D_i). The first step (no previous x0_hat) and the last step to sigma = 0 are first order
    (x0_mix = x0_hat; the last one returns x0_hat), like diffusers' ``DPMSolverMultistepScheduler(
    algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")``, which it matches.
    Deterministic; ``generator`` is ignored.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    x0_hat_prev = None
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        if sigma_next == 0:
            x = x0_hat
            continue
        if x0_hat_prev is None:
            x0_mix = x0_hat
        else:
            h = math.log(sigma / sigma_next)  # step in lambda = -log sigma
            r = math.log(sig[i - 1] / sigma) / h
            x0_mix = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_hat_prev
        x = (sigma_next / sigma) * x + (1 - sigma_next / sigma) * x0_mix
        x0_hat_prev = x0_hat
    return _finish(x)


# ----------------------------------------------------------------------------------------------- SDE samplers
@torch.no_grad()
def sample_euler_maruyama(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, callback=None,
                          generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Simulate the reverse-time SDE with Euler-Maruyama steps in VE coordinates (Song et al. 2021).

    Implements Eq. (reverse-sde-step): x <- x + (sigma^2 - sigma_next^2) score + sqrt(sigma^2 - sigma_next^2) z,
    the discretisation of Eq. (sde-reverse) for dx = sqrt(d[sigma^2]/dt) dw (the "reverse diffusion" predictor of
    Song et al. 2021). The last step to sigma = 0 is taken without noise, which lands exactly on x0_hat
    (x + sigma^2 score = x0_hat, Tweedie's formula): the usual final denoising step.
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        if sigma_next == 0:
            x = x0_hat
            continue
        x = _reverse_diffusion_step(x, x0_hat, sigma, sigma_next, generator)
    return _finish(x)


def _reverse_diffusion_step(x, x0_hat, sigma, sigma_next, generator):
    """One Euler-Maruyama step of the reverse SDE from sigma to sigma_next > 0. Eq. (reverse-sde-step)."""
    score = (x0_hat - x) / sigma**2
    dvar = sigma**2 - sigma_next**2
    return x + dvar * score + math.sqrt(dvar) * _randn(x, generator)


@torch.no_grad()
def sample_pc(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, snr: float = 0.16,
              n_corrector: int = 1, callback=None, generator: torch.Generator | None = None,
              cond: dict | None = None) -> torch.Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Algs. 2-4): Langevin corrector + reverse-diffusion predictor.

    Implements Eq. (langevin-corrector) then Eq. (reverse-sde-step) at each sigma_i. The corrector runs
    ``n_corrector`` Langevin steps x <- x + e score + sqrt(2 e) z targeting p_{sigma_i}, with the step size set
    by the signal-to-noise ratio ``snr``: e = 2 (snr ||z|| / ||score||)^2 (Alg. 4; alpha = 1 in VE coordinates).
    As in the authors' code, ||z|| and ||score|| are averaged over the batch (per-sample norms make e explode for
    low-dimensional points where the score vanishes). The predictor is :func:`sample_euler_maruyama`'s step; the
    last step to sigma = 0 returns x0_hat (no corrector at sigma = 0, where the score is undefined). The callback
    sees each predictor step (its x0_hat is evaluated after the corrector).
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    snr = check_positive("snr", snr)
    n_corrector = check_nfe(n_corrector)
    for i in range(len(sig) - 1):
        sigma, sigma_next = sig[i], sig[i + 1]
        for _ in range(n_corrector):
            score = (_denoise(denoiser, x, sigma, cond) - x) / sigma**2
            z = _randn(x, generator)
            grad_norm = score.flatten(1).norm(dim=1).mean()
            noise_norm = z.flatten(1).norm(dim=1).mean()
            if grad_norm > 0:  # score == 0 everywhere: nothing to correct
                e = 2 * (snr * noise_norm / grad_norm) ** 2
                x = x + e * score + (2 * e).sqrt() * z
        x0_hat = _denoise(denoiser, x, sigma, cond)
        _notify(callback, i, x, sigma, x0_hat)
        if sigma_next == 0:
            x = x0_hat
            continue
        x = _reverse_diffusion_step(x, x0_hat, sigma, sigma_next, generator)
    return _finish(x)


@torch.no_grad()
def sample_annealed_langevin(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, *, n_steps_each: int = 5,
                             step_lr: float = 2e-5, final_denoise: bool = True, callback=None,
                             generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics of NCSN (Song & Ermon 2019, Alg. 1).

    Implements Eq. (annealed-langevin): for each sigma_i > 0 (a trailing 0 in ``sigmas`` is ignored), with
    alpha_i = step_lr sigma_i^2 / sigma_L^2 (sigma_L the smallest positive level), repeat ``n_steps_each`` times
    x <- x + (alpha_i / 2) score(x, sigma_i) + sqrt(alpha_i) z. With ``final_denoise`` the result is
    x0_hat = D(x; sigma_L) = x + sigma_L^2 score (NCSNv2, Song & Ermon 2020; Jolicoeur-Martineau et al. 2021),
    which removes the remaining noise sigma_L. ``step_lr`` is epsilon of Alg. 1 (2e-5 in NCSN with sigma_L = 0.01;
    it should be well below sigma_L^2 for the chain to be accurate). The callback is called at every Langevin step
    with ``i`` counting those steps (``n_steps_each`` per level).
    """
    sig, cond = _prepare(denoiser, x, sigmas, callback, generator, cond)
    n_steps_each = check_nfe(n_steps_each)
    step_lr = check_positive("step_lr", step_lr)
    if not isinstance(final_denoise, bool):
        raise TypeError(f"final_denoise must be True or False, got {final_denoise!r}.")
    levels = sig[:-1] if sig[-1] == 0 else sig
    sigma_L = levels[-1]
    i = 0
    for sigma in levels:
        alpha = step_lr * sigma**2 / sigma_L**2
        for _ in range(n_steps_each):
            x0_hat = _denoise(denoiser, x, sigma, cond)
            _notify(callback, i, x, sigma, x0_hat)
            score = (x0_hat - x) / sigma**2
            x = x + (alpha / 2) * score + math.sqrt(alpha) * _randn(x, generator)
            i += 1
    if final_denoise:
        x = _denoise(denoiser, x, sigma_L, cond)
    return _finish(x)


# ----------------------------------------------------------------------------------------------- by name
#: The samplers by the names that specs, result tables and the command line use.
SAMPLERS = {"ancestral": sample_ddpm_ancestral, "ddim": sample_ddim, "euler": sample_euler, "heun": sample_heun,
            "edm": sample_edm, "dpmpp_2m": sample_dpmpp_2m, "euler_maruyama": sample_euler_maruyama, "pc": sample_pc,
            "annealed_langevin": sample_annealed_langevin}


def nfe(sampler: str, steps: int, *, n_corrector: int = 1, n_steps_each: int = 5) -> int:
    """Network evaluations per sample of ``sampler`` (a key of :data:`SAMPLERS`) with ``steps`` steps.

    Heun and EDM's stochastic sampler: 2 per step but 1 on the last (no correction at sigma = 0); PC: predictor plus ``n_corrector`` corrector
    evaluations per step; annealed Langevin: ``n_steps_each`` per level, plus the final denoising step; the others:
    one per step. (A guided evaluation is one call on a batch of 2B, counted once.)
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    steps = check_nfe(steps)
    if sampler in ("heun", "edm"):
        return 2 * steps - 1
    if sampler == "pc":
        return steps * (1 + n_corrector)
    if sampler == "annealed_langevin":
        return steps * n_steps_each + 1
    return steps
