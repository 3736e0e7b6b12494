"""Noise schedules and the conversions between VP time t, alpha_bar and the VE noise level sigma.

Notation (code name -> book symbol):

=============  ===========================================================
``beta``       beta_t, the per-step noise variance of the forward chain
``alpha_bar``  bar(alpha)_t = prod_{s<=t} (1 - beta_s), Eq. (ddpm-closed-form)
``sigma``      sigma_t = sqrt((1 - bar(alpha)_t) / bar(alpha)_t), Eq. (vp-to-ve)
``snr``        SNR_t = bar(alpha)_t / (1 - bar(alpha)_t) = 1 / sigma_t^2
=============  ===========================================================

A discrete DDPM with x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps is the same process as
x = x0 + sigma_t eps after dividing by sqrt(alpha_bar_t); every sampler in :mod:`diffbook.samplers` works in those
"VE coordinates", so a schedule is, for sampling, just a decreasing list of sigmas.
"""

from __future__ import annotations

import math

import torch

from .checks import check_finite, check_nfe, check_positive, check_tensor


def _check_vector(name: str, v) -> torch.Tensor:
    check_tensor(name, v)
    if v.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor (one entry per timestep), got shape {tuple(v.shape)}.")
    return v


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Return the linear beta schedule of Ho et al. 2020 (float64, length T).

    Implements Eq. (ddpm-linear-schedule) of the DDPM chapter.
    """
    T = check_nfe(T)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}.")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def cosine_alpha_bar(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Return alpha_bar_t of the cosine schedule of Nichol & Dhariwal 2021 (float64, length T).

    Implements Eq. (ddpm-cosine-schedule). Betas are clipped at ``max_beta`` as in the paper (and in diffusers'
    ``squaredcos_cap_v2``), so alpha_bar here is rebuilt from the clipped betas.
    """
    T = check_nfe(T)
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
        raise ValueError(f"s must be a finite offset >= 0 (the paper uses 0.008), got {s!r}.")

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(T)], dtype=torch.float64)
    return betas_to_alpha_bar(betas)


def betas_to_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    """Return alpha_bar_t = prod_{s<=t} (1 - beta_s). Implements Eq. (ddpm-closed-form)."""
    _check_vector("betas", betas)
    if (betas <= 0).any() or (betas >= 1).any():
        raise ValueError("betas must lie strictly between 0 and 1.")
    return torch.cumprod(1 - betas, dim=0)


def alpha_bar_to_betas(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Invert :func:`betas_to_alpha_bar`: beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}."""
    _check_vector("alpha_bar", alpha_bar)
    prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return 1 - alpha_bar / prev


def alpha_bar_to_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Return the VE noise level sigma = sqrt((1 - alpha_bar) / alpha_bar). Implements Eq. (vp-to-ve)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def sigma_to_alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """Return alpha_bar = 1 / (1 + sigma^2), the inverse of :func:`alpha_bar_to_sigma`."""
    return 1 / (1 + sigma**2)


def snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Return the signal-to-noise ratio alpha_bar / (1 - alpha_bar) = 1 / sigma^2. Eq. (ddpm-snr)."""
    return alpha_bar / (1 - alpha_bar)


def vp_prior_std(sigma_max) -> torch.Tensor | float:
    """Std of x_T in VE coordinates for a VP model: x_T = eps / sqrt(alpha_bar_T), so sqrt(1 + sigma_max^2)."""
    if isinstance(sigma_max, torch.Tensor):
        return (1 + sigma_max**2).sqrt()
    return math.sqrt(1 + float(sigma_max) ** 2)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append the final noise level 0 (the clean sample) to a decreasing list of sigmas."""
    _check_vector("sigmas", sigmas)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def ve_geometric_sigmas(sigma_min: float, sigma_max: float, n: int) -> torch.Tensor:
    """Return n sigmas decreasing geometrically from sigma_max to sigma_min (NCSN's ladder; no trailing 0).

    Implements Eq. (ncsn-ladder); Song & Ermon 2019.
    """
    n = check_nfe(n)
    lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    if lo >= hi and n > 1:
        raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
    return torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """Return the n noise levels of Karras et al. 2022 followed by 0 (n + 1 entries).

    Implements Eq. (edm-sigmas): sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho.
    """
    n = check_nfe(n)
    lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
    check_positive("rho", rho)
    if lo >= hi and n > 1:
        raise ValueError(f"need sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return append_zero(sigmas)


def _sigma_table(alpha_bar: torch.Tensor) -> torch.Tensor:
    check_tensor("alpha_bar", alpha_bar)
    if alpha_bar.dim() != 1 or not ((alpha_bar > 0) & (alpha_bar < 1)).all():
        raise ValueError("alpha_bar must be a 1-D table with entries strictly between 0 and 1.")
    return alpha_bar_to_sigma(alpha_bar.double())


def _as_float64(name: str, v) -> torch.Tensor:
    """``v`` (a number, sequence, array or tensor) as a finite float64 tensor, or one clear error."""
    try:
        v = torch.as_tensor(v)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or a tensor, got {type(v).__name__}.") from None
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {v.dtype}.")
    return check_finite(name, v.to(torch.float64))


def t_to_sigma(t, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Return sigma at (possibly fractional) discrete time t, interpolating the table t -> sigma_t linearly.

    This is the interpolation diffusers' Euler/Heun schedulers use, so a fractional t means the same in both.
    """
    table = _sigma_table(alpha_bar)
    t = _as_float64("t", t)
    T = table.shape[0]
    if (t < 0).any() or (t > T - 1).any():
        raise ValueError(f"t must lie in [0, {T - 1}], got values in [{t.min().item()}, {t.max().item()}].")
    lo = t.floor().long().clamp(max=T - 2)
    w = t - lo
    return table[lo] * (1 - w) + table[lo + 1] * w


def sigma_to_t(sigma, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Return the fractional discrete time t whose interpolated sigma_t equals ``sigma`` (inverse of t_to_sigma).

    Sigmas outside the table's range are clamped to t = 0 or t = T - 1.
    """
    s = _as_float64("sigma", sigma)
    if (s < 0).any():
        raise ValueError("sigma must be >= 0 (it is a noise standard deviation).")
    table = _sigma_table(alpha_bar).to(s.device)
    T = table.shape[0]
    s = s.clamp(table[0], table[-1])
    hi = torch.searchsorted(table, s.reshape(-1)).clamp(1, T - 1).reshape(s.shape)
    lo = hi - 1
    w = (s - table[lo]) / (table[hi] - table[lo])
    return lo.double() + w


def ddpm_timesteps(T: int, n: int, spacing: str = "leading") -> torch.Tensor:
    """Return the n discrete timesteps (decreasing) that diffusers' DDPM/DDIM schedulers visit.

    ``spacing`` is diffusers' ``timestep_spacing``: "leading" (DDIM paper), "trailing" (Lin et al. 2024) or
    "linspace". Integer timesteps, like diffusers' DDIMScheduler with ``steps_offset=0``.
    """
    T, n = check_nfe(T), check_nfe(n)
    if n > T:
        raise ValueError(f"cannot take more steps ({n}) than the model has timesteps ({T}).")
    if spacing == "leading":
        ts = torch.arange(n, dtype=torch.float64) * (T // n)
    elif spacing == "trailing":
        ts = torch.round(torch.arange(T, 0, -T / n, dtype=torch.float64)) - 1
        return ts.long()
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, n, dtype=torch.float64).round()
    else:
        raise ValueError(f"spacing must be 'leading', 'trailing' or 'linspace', got {spacing!r}.")
    return ts.flip(0).long()


def ddpm_sigmas(alpha_bar: torch.Tensor, n: int, spacing: str = "leading") -> torch.Tensor:
    """Return the n + 1 decreasing sigmas (ending in 0) of an n-step sampler on a discrete DDPM.

    The levels are sigma_t at :func:`ddpm_timesteps`; the final 0 means the last step returns the clean estimate.
    """
    table = _sigma_table(alpha_bar)
    ts = ddpm_timesteps(table.shape[0], n, spacing)
    return append_zero(table[ts])


# ------------------------------------------------------------------ NCSNv2's ladder (Song & Ermon 2020)
def max_pairwise_distance(x: torch.Tensor, max_n: int = 10_000) -> float:
    """Largest Euclidean distance between two data points (on at most ``max_n`` of them).

    NCSNv2's Technique 1 (Song & Ermon 2020): sigma_1 should be about this large, so that the noisiest level
    can move a sample from any mode to any other.
    """
    check_tensor("x", x, min_dim=2)
    flat = x[:max_n].flatten(1).double()
    best = 0.0
    for chunk in flat.split(2048):
        best = max(best, torch.cdist(chunk, flat).max().item())
    return best


def ncsnv2_overlap(gamma: float, dim: int) -> float:
    """Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma): NCSNv2's overlap between adjacent levels.

    Eq. (ncsnv2-ratio); Song & Ermon 2020, Technique 2.
    """
    a = math.sqrt(2 * dim) * (gamma - 1)
    return 0.5 * (math.erf((a + 3 * gamma) / math.sqrt(2)) - math.erf((a - 3 * gamma) / math.sqrt(2)))


def ncsnv2_ratio(dim: int, target: float = 0.5) -> float:
    """The ratio gamma = sigma_{i-1}/sigma_i of NCSNv2's Technique 2 for data of dimension ``dim``.

    Solves ncsnv2_overlap(gamma, dim) = target by bisection, so that consecutive noise levels overlap enough for
    Langevin to hand samples from one level to the next. For dim <= 4 the overlap never falls to 0.5 (as gamma
    grows it tends to 1), so the rule sets no limit and a ValueError says so.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}.")
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target!r}.")
    if 2 * dim <= 9:
        raise ValueError(f"NCSNv2's ratio rule sets no limit for dim = {dim} <= 4: the overlap between levels stays "
                         "above 0.5 for every ratio; choose the ratio by hand (e.g. from the number of levels).")
    lo, hi = 1.0, 2.0
    while ncsnv2_overlap(hi, dim) > target:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ncsnv2_overlap(mid, dim) > target else (lo, mid)
    return 0.5 * (lo + hi)


def ncsnv2_sigmas(sigma_max: float, sigma_min: float, dim: int) -> torch.Tensor:
    """The geometric ladder from sigma_max to sigma_min with NCSNv2's ratio for dimension ``dim``. Eq. (ncsn-ladder)."""
    check_positive("sigma_max", sigma_max)
    check_positive("sigma_min", sigma_min)
    gamma = ncsnv2_ratio(dim)
    n = max(2, math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1)
    return ve_geometric_sigmas(sigma_min, sigma_max, n)
