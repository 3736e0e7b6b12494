"""Flow matching and rectified flow: the straight path from data to noise, its velocity, and the same denoiser.

Flow matching (Lipman et al. 2023) and rectified flow (Liu et al. 2023) move a data point x_0 to a noise draw n along
the straight line z_t = (1 - t) x_0 + t n, t in [0, 1], and train a network v(z, t) on the line's velocity n - x_0.
Sampling integrates dz/dt = v(z, t) from t = 1 (noise) to t = 0. In the book's VE coordinates x = x_0 + sigma n the
same point is z = x / (1 + sigma) with t = sigma / (1 + sigma) (Eq. (flow-time)), the model's velocity is a denoiser
(Eq. (flow-denoiser)), the flow ODE is the probability-flow ODE (Eq. (pf-ode-sigma)), and an Euler step in t is a
DDIM step (Eq. (ddim-update)): :func:`sample_flow_euler` and :func:`diffbook.samplers.sample_ddim` return the same
samples on corresponding levels.

Notation (code name -> book symbol):

=============  ==============================================================================
``t``          t in [0, 1], the flow's time: 0 is data, 1 is noise; t = sigma / (1 + sigma)
``z``          z_t = (1 - t) x_0 + t n, a point on the path (flow coordinates); z = x / (1 + sigma)
``velocity``   a function v(z, t, **cond): the network's (or exact) velocity dz/dt
``v_hat``      its value at one step; x0_hat = z - t v_hat and n_hat = z + (1 - t) v_hat
``ts``         the sampler's times, strictly decreasing from t_max <= 1 to 0
=============  ==============================================================================

Reflow (Liu et al. 2023) retrains on the couplings (x_0 = ODE end point, n) of a trained flow; its paths are
straighter (:func:`straightness`), so few Euler steps follow them better.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .checks import check_batch_sigma, check_finite, check_nfe, check_positive, check_tensor, per_sample

__all__ = ["t_from_sigma", "sigma_from_t", "flow_path", "velocity_target", "flow_matching_loss",
           "logit_normal_times", "from_velocity_model", "velocity_from_denoiser", "flow_times", "sample_flow_euler",
           "reflow_pairs", "straightness"]


def _times(t, like: torch.Tensor | None = None) -> torch.Tensor:
    """t as a floating tensor in [0, 1]; with ``like``, one time per sample of that batch ([B], like's dtype)."""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.tensor(float(t), dtype=torch.float64)
    if not isinstance(t, torch.Tensor) or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be a number or a real tensor of times in [0, 1], got {type(t).__name__}.")
    if not t.is_floating_point():
        t = t.double()
    if like is not None:
        t = t.to(device=like.device, dtype=like.dtype)
        if t.dim() == 0:
            t = t.expand(like.shape[0])
        if t.dim() != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must have shape [B] = [{like.shape[0]}] (one time per sample), got {tuple(t.shape)}.")
    check_finite("t", t)
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t must lie in [0, 1] (0 = data, 1 = noise).")
    return t


def t_from_sigma(sigma):
    """The flow time of a noise level: t = sigma / (1 + sigma). Implements Eq. (flow-time)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64) if not isinstance(sigma, torch.Tensor) else sigma
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0 (it is a noise standard deviation).")
    return sigma / (1 + sigma)


def sigma_from_t(t):
    """The noise level of a flow time: sigma = t / (1 - t) (infinite at t = 1). The inverse of Eq. (flow-time)."""
    t = _times(t)
    return t / (1 - t)


def flow_path(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """The point z_t = (1 - t) x0 + t n on the straight path from x0 to the noise n. Implements Eq. (flow-path)."""
    check_tensor("x0", x0)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}.")
    t = per_sample(_times(t, x0), x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The path's velocity dz_t/dt = n - x0, the regression target of flow matching. Implements Eq. (flow-target)."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}.")
    return noise - x0


def logit_normal_times(n: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0,
                       dtype=torch.float32, device=None) -> torch.Tensor:
    """n training times t = sigmoid(u), u ~ N(mean, std^2): more of them in the middle of the path (Esser et al. 2024)."""
    n = check_nfe(n)
    std = check_positive("std", std)
    u = torch.randn(n, generator=generator, dtype=torch.float64, device=device) * std + float(mean)
    return torch.sigmoid(u).to(dtype)


def flow_matching_loss(velocity: Callable, x0: torch.Tensor, generator: torch.Generator | None = None, *,
                       noise: torch.Tensor | None = None, t: torch.Tensor | None = None, **cond) -> torch.Tensor:
    """The conditional flow-matching loss E_t E ||v(z_t, t) - (n - x0)||^2 (mean over dimensions and batch).

    Implements Eq. (flow-loss) (Lipman et al. 2023; Liu et al. 2023). ``t`` [B] defaults to uniform on [0, 1] and
    ``noise`` to fresh standard normal draws (both from ``generator``); pass ``noise`` to train on a given
    coupling, as reflow does. Its minimiser is the marginal velocity E[n - x0 | z_t] (Eq. (flow-velocity)).
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(z, t, **cond), got {type(velocity).__name__}.")
    check_tensor("x0", x0)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if t is None:
        t = torch.rand(x0.shape[0], generator=generator, device=x0.device, dtype=x0.dtype)
    t = _times(t, x0)
    z = flow_path(x0, noise, t)
    out = velocity(z, t, **cond)
    out = out.sample if hasattr(out, "sample") else out
    return (out.float() - velocity_target(x0, noise).float()).pow(2).flatten(1).mean(1).mean()


def from_velocity_model(velocity: Callable, time_scale: float = 1.0):
    """The denoiser of a flow model ``velocity(z, time_scale * t, **cond) -> v_hat``.

    Implements Eq. (flow-denoiser): z = x / (1 + sigma), t = sigma / (1 + sigma) and x0_hat = z - t v_hat.
    ``time_scale`` is the factor the network's time input was trained with (1000 for diffusers' flow models, whose
    timesteps are 1000 t). Valid for every finite sigma >= 0; the returned denoiser keeps ``velocity``.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(z, t, **cond), got {type(velocity).__name__}.")
    time_scale = check_positive("time_scale", time_scale)

    def denoiser(x, sigma, **cond):
        sigma = check_batch_sigma(x, sigma)
        t = sigma / (1 + sigma)
        z = x / per_sample(1 + sigma, x)
        v_hat = velocity(z, t * time_scale, **cond)
        v_hat = v_hat.sample if hasattr(v_hat, "sample") else v_hat
        return z - per_sample(t, x) * v_hat.to(x.dtype)

    denoiser.velocity, denoiser.time_scale = velocity, time_scale
    return denoiser


def velocity_from_denoiser(denoiser: Callable):
    """The flow velocity of any denoiser: v(z, t) = (z - D(z / (1 - t); t / (1 - t))) / t, for 0 < t < 1.

    Implements Eq. (flow-denoiser) solved for v_hat. With the exact denoiser it is the marginal velocity
    E[n - x0 | z_t] (Eq. (flow-velocity)); with a DDPM's denoiser it runs that model in a flow sampler (diffusers'
    ``FlowMatchEulerDiscreteScheduler``). At t = 1 the noise level is infinite: start at t_max < 1.
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma, **cond), got {type(denoiser).__name__}.")

    def velocity(z, t, **cond):
        t = _times(t, z)
        if ((t <= 0) | (t >= 1)).any():
            raise ValueError("velocity_from_denoiser needs 0 < t < 1: at t = 1 the noise level t / (1 - t) is "
                             "infinite; start the sampler at t_max < 1 (flow_times(n, t_max=...)).")
        x0_hat = denoiser(z / per_sample(1 - t, z), t / (1 - t), **cond)
        return (z - x0_hat) / per_sample(t, z)

    velocity.denoiser = denoiser
    return velocity


def flow_times(n: int, t_max: float = 1.0, t_min: float = 1e-3, shift: float = 1.0) -> torch.Tensor:
    """n + 1 decreasing times: n evenly spaced from t_max to t_min, shifted, then 0 (float64).

    With ``shift`` s each time becomes s t / (1 + (s - 1) t) (Esser et al. 2024), which moves the steps towards
    the noise for s > 1. diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(n)`` uses this grid with
    t_max = 1 and t_min = its ``sigma_min`` (1/1000 for 1000 training timesteps, shifted once already).
    """
    n = check_nfe(n)
    shift = check_positive("shift", shift)
    if not 0 < t_min <= t_max <= 1 or (n > 1 and t_min == t_max):
        raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={t_min!r}, t_max={t_max!r}.")
    t = torch.linspace(t_max, t_min, n, dtype=torch.float64)
    t = shift * t / (1 + (shift - 1) * t)
    return torch.cat([t, t.new_zeros(1)])


def _check_ts(ts) -> list[float]:
    if not isinstance(ts, torch.Tensor) or ts.dim() != 1 or ts.shape[0] < 2:
        raise ValueError("ts must be a 1-D tensor of at least 2 times, decreasing from t_max <= 1 to 0; use "
                         "diffbook.flow.flow_times(n).")
    check_finite("ts", ts)
    if not (ts[1:] < ts[:-1]).all() or ts[0] > 1 or ts[-1] < 0:
        raise ValueError("ts must decrease strictly from t_max <= 1 to t >= 0 (usually 0); use flow_times(n).")
    return [float(t) for t in ts.detach().cpu().double()]


@torch.no_grad()
def sample_flow_euler(velocity: Callable, z: torch.Tensor, ts: torch.Tensor, *, callback=None,
                      generator: torch.Generator | None = None, cond: dict | None = None) -> torch.Tensor:
    """Integrate the flow ODE dz/dt = v(z, t) from ts[0] to ts[-1] with Euler steps z <- z + (t_next - t) v_hat.

    Implements Eq. (flow-euler); the update of diffusers' ``FlowMatchEulerDiscreteScheduler``. In VE coordinates
    each step is a DDIM step (Eq. (ddim-update)) with x = z / (1 - t) and sigma = t / (1 - t). ``z`` starts as
    standard normal noise at t = 1 (or as a point of the path at ts[0]). The callback gets
    ``dict(i, x=z, sigma=t, denoised=z - t v_hat)`` before each update. Deterministic; ``generator`` is ignored.
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be callable as velocity(z, t, **cond), got {type(velocity).__name__}.")
    check_tensor("z", z)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    if cond is None:
        cond = {}
    if not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict of keyword arguments for the velocity, got {type(cond).__name__}.")
    times = _check_ts(ts)
    for i in range(len(times) - 1):
        t, t_next = times[i], times[i + 1]
        v_hat = velocity(z, z.new_full((z.shape[0],), t), **cond)
        v_hat = v_hat.sample if hasattr(v_hat, "sample") else v_hat
        if not isinstance(v_hat, torch.Tensor) or v_hat.shape != z.shape:
            raise ValueError(f"the velocity must return a tensor of the shape of z {tuple(z.shape)}.")
        if callback is not None:
            callback({"i": i, "x": z, "sigma": t, "denoised": z - t * v_hat})
        z = z + (t_next - t) * v_hat.to(z.dtype)
    check_finite("the sampler's output", z)
    return z


def reflow_pairs(velocity: Callable, noise: torch.Tensor, ts: torch.Tensor, cond: dict | None = None):
    """The coupling (x0, noise) of a trained flow: x0 = the ODE's end point from each noise draw.

    Implements Eq. (reflow): the pairs a 2-rectified flow is trained on (:func:`flow_matching_loss` with
    ``noise=``); Liu et al. 2023, Alg. 1. Returns ``(x0, noise)``.
    """
    return sample_flow_euler(velocity, noise, ts, cond=cond), noise


@torch.no_grad()
def straightness(velocity: Callable, noise: torch.Tensor, ts: torch.Tensor, cond: dict | None = None) -> float:
    """How far the flow's paths are from straight lines: the mean of ||(z_1 - z_0) - v(z_t, t)||^2 along them.

    Implements Eq. (flow-straightness) (Liu et al. 2023, Def. 3.3), integrated over the Euler trajectory on ``ts``
    (a time-weighted average over the steps; the end point z_0 is the trajectory's). 0 means every path is a
    straight line traversed at constant speed, which one Euler step integrates exactly.
    """
    check_tensor("noise", noise)
    times = _check_ts(ts)
    vs, z = [], noise
    for i in range(len(times) - 1):
        v_hat = velocity(z, z.new_full((z.shape[0],), times[i]), **(cond or {}))
        vs.append(v_hat)
        z = z + (times[i + 1] - times[i]) * v_hat
    chord = noise - z  # z_1 - z_0: the straight line's constant velocity
    dts = [times[i] - times[i + 1] for i in range(len(times) - 1)]
    total = sum(dt * (chord - v).pow(2).flatten(1).sum(1).mean().item() for dt, v in zip(dts, vs))
    return total / math.fsum(dts)
