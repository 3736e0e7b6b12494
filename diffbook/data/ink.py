"""Ink in water: a drop of particles spreading by Brownian motion, the physical picture of the forward process.

A drop of ink in still water spreads because each ink particle is pushed around at random by the water
molecules. In the idealised model (Brownian motion, Einstein 1905) every coordinate of a particle's position
performs an independent random walk with diffusion coefficient ``D``: over a time ``t`` it moves by a Gaussian
amount with mean 0 and variance ``2 D t``. So, in free space, a particle that started at x_0 sits at

    x_t = x_0 + sqrt(2 D t) n,    n ~ N(0, I),

which is the book's forward process in VE coordinates, x = x_0 + sigma n (Eq. (ve-coordinates) of the
introduction), with the noise level sigma(t) = sqrt(2 D t) (:func:`sigma_at`). The cloud's variance per
coordinate grows linearly, Var_t = Var_0 + 2 D t, and its spread (standard deviation) like sqrt(2 D t) once
it is much larger than the drop.

Notation (code name -> symbol):

============  ==============================================================
``x``         particle positions [N, 2] (one row per particle)
``D``         diffusion coefficient D (length^2 per unit time)
``t``         time t (``times`` a list of them)
``dt``        time step of one simulated jump
``sigma``     sigma(t) = sqrt(2 D t), the noise level reached after time t
``box``       half-width L of a square glass [-L, L]^2 with reflecting walls
``size``      half-height of the drop; ``sharpness`` the exponent m of its tip
============  ==============================================================

The drop is a teardrop: the region ``|x - c_x| <= size sin(theta) sin(theta / 2)^m, y - c_y = size cos(theta),
theta in [0, pi]`` (tip up, round bottom), filled uniformly (:func:`ink_drop`). The default drop (size 2,
sharpness 2) is 4 high and 2.6 wide, with standard deviations of about 0.61 and 0.87 per coordinate: the
scale of standardised data, for which DDPM's noise schedules are designed.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_positive, check_tensor

__all__ = [
    "drop_outline",
    "inside_drop",
    "ink_drop",
    "sigma_at",
    "time_at",
    "reflect",
    "brownian_step",
    "simulate",
    "variance",
    "mean_squared_displacement",
]


# ----------------------------------------------------------------------------------------------- the drop
def _check_shape_args(size, sharpness, center) -> tuple[float, float, tuple[float, float]]:
    size = check_positive("size", size)
    sharpness = check_positive("sharpness", sharpness)
    try:
        cx, cy = (float(c) for c in center)
    except (TypeError, ValueError):
        raise TypeError(f"center must be a pair of numbers (x, y), got {center!r}.") from None
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise ValueError(f"center must be finite, got {center!r}.")
    return size, sharpness, (cx, cy)


def drop_outline(n_points: int = 200, size: float = 2.0, sharpness: float = 2.0,
                 center=(0.0, 0.0)) -> torch.Tensor:
    """Return ``n_points`` points [n_points, 2] on the teardrop's outline (a closed curve, for plotting)."""
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3, got {n_points!r}.")
    size, m, (cx, cy) = _check_shape_args(size, sharpness, center)
    theta = torch.linspace(0, 2 * math.pi, n_points, dtype=torch.float64)
    half = size * theta.sin() * (theta / 2).sin().abs() ** m
    return torch.stack([cx + half, cy + size * theta.cos()], dim=1).float()


def inside_drop(x: torch.Tensor, size: float = 2.0, sharpness: float = 2.0, center=(0.0, 0.0)) -> torch.Tensor:
    """Return a bool tensor [N]: which points of x [N, 2] lie inside the teardrop."""
    check_tensor("x", x, min_dim=2)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape [N, 2] (2D points), got {tuple(x.shape)}.")
    size, m, (cx, cy) = _check_shape_args(size, sharpness, center)
    u = (x[:, 1].double() - cy) / size
    inside_y = u.abs() <= 1
    theta = u.clamp(-1, 1).acos()
    half = size * theta.sin() * (theta / 2).sin() ** m
    return inside_y & ((x[:, 0].double() - cx).abs() <= half)


def ink_drop(n: int, generator: torch.Generator | None = None, size: float = 2.0, sharpness: float = 2.0,
             center=(0.0, 0.0)) -> torch.Tensor:
    """Sample n particle positions [n, 2] uniformly inside the teardrop (rejection sampling from its box).

    The same ``generator`` state gives the same drop. Returns float32 on the CPU.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the number of particles) must be an integer >= 1, got {n!r}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    size, m, (cx, cy) = _check_shape_args(size, sharpness, center)
    kept, total = [], 0
    while total < n:
        batch = 2 * (n - total) + 64  # the drop fills about 40% of its bounding box
        u = torch.rand(batch, 2, generator=generator, dtype=torch.float64) * 2 - 1  # uniform in [-1, 1]^2
        pts = torch.stack([cx + size * u[:, 0], cy + size * u[:, 1]], dim=1)
        pts = pts[inside_drop(pts, size, m, (cx, cy))]
        kept.append(pts)
        total += pts.shape[0]
    return torch.cat(kept)[:n].float()


# ----------------------------------------------------------------------------------------------- Brownian motion
def sigma_at(D: float, t) -> torch.Tensor:
    """Return the noise level sigma(t) = sqrt(2 D t) that Brownian motion reaches after time t.

    Implements Eq. (ve-coordinates) with sigma^2 = 2 D t: a particle at x_0 is at x_0 + sigma(t) n at time t.
    """
    D = check_positive("D", D)
    t = torch.as_tensor(t, dtype=torch.float64)
    if (t < 0).any() or not torch.isfinite(t).all():
        raise ValueError("times must be finite and >= 0.")
    return (2 * D * t).sqrt()


def time_at(D: float, sigma) -> torch.Tensor:
    """Return the time t = sigma^2 / (2 D) at which Brownian motion reaches the noise level sigma (inverse of sigma_at)."""
    D = check_positive("D", D)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if (sigma < 0).any() or not torch.isfinite(sigma).all():
        raise ValueError("sigma must be finite and >= 0.")
    return sigma**2 / (2 * D)


def reflect(x: torch.Tensor, box: float) -> torch.Tensor:
    """Fold positions back into the square [-box, box]^2 as if the walls were mirrors (any number of bounces)."""
    L = check_positive("box", box)
    y = torch.remainder(x + L, 4 * L)
    y = torch.where(y > 2 * L, 4 * L - y, y)
    return y - L


def brownian_step(x: torch.Tensor, D: float, dt: float, generator: torch.Generator | None = None,
                  box: float | None = None) -> torch.Tensor:
    """Move every particle by one Brownian jump: x + sqrt(2 D dt) n, reflected at the walls of ``box`` if given."""
    check_tensor("x", x, min_dim=2)
    D, dt = check_positive("D", D), check_positive("dt", dt)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    x = x + math.sqrt(2 * D * dt) * noise
    return reflect(x, box) if box is not None else x


def simulate(x0: torch.Tensor, D: float, times, *, generator: torch.Generator | None = None,
             box: float | None = None, max_dt: float | None = None) -> torch.Tensor:
    """Simulate the particles from time 0 and return their positions at each of ``times``: [K, N, 2].

    ``times`` are increasing and >= 0 (a 0 returns x0 itself). In free space one Gaussian jump per interval is
    exact, because the sum of independent Gaussian jumps is Gaussian with the summed variance; ``max_dt``
    splits intervals into smaller jumps (same distribution, other random numbers). In a ``box`` the walls make
    the jumps' size matter, so ``max_dt`` defaults to the time in which a particle moves about box / 20.
    """
    check_tensor("x0", x0, min_dim=2)
    D = check_positive("D", D)
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    if times.numel() < 1 or not torch.isfinite(times).all() or (times < 0).any():
        raise ValueError("times must be a non-empty list of finite times >= 0.")
    if (times[1:] <= times[:-1]).any():
        raise ValueError("times must be strictly increasing.")
    if box is not None:
        L = check_positive("box", box)
        if (x0.abs() > L).any():
            raise ValueError(f"every particle must start inside the box [-{L}, {L}]^2.")
        if max_dt is None:
            max_dt = (L / 20) ** 2 / (2 * D)
    if max_dt is not None:
        max_dt = check_positive("max_dt", max_dt)
    frames, x, t_now = [], x0, 0.0
    for t in times.tolist():
        interval = t - t_now
        if interval > 0:
            n_jumps = 1 if max_dt is None else max(1, math.ceil(interval / max_dt - 1e-9))
            for _ in range(n_jumps):
                x = brownian_step(x, D, interval / n_jumps, generator, box)
        frames.append(x)
        t_now = t
    return torch.stack(frames)


# ----------------------------------------------------------------------------------------------- measuring spread
def variance(x: torch.Tensor) -> torch.Tensor:
    """Return the variance per coordinate of a cloud x [..., N, d], averaged over the d coordinates."""
    check_tensor("x", x, min_dim=2)
    return x.double().var(dim=-2, unbiased=False).mean(dim=-1)


def mean_squared_displacement(frames: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Return the mean squared displacement per coordinate, ``mean |x_t - x_0|^2 / d``, for frames [K, N, d].

    For Brownian motion in free space it equals 2 D t whatever the starting cloud (Einstein's relation).
    """
    check_tensor("frames", frames, min_dim=2)
    check_tensor("x0", x0, min_dim=2)
    if frames.shape[-2:] != x0.shape[-2:]:
        raise ValueError(f"frames [K, N, d] and x0 [N, d] disagree: {tuple(frames.shape)} vs {tuple(x0.shape)}.")
    return ((frames.double() - x0.double()) ** 2).mean(dim=(-2, -1))
