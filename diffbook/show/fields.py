"""Score fields in 2D: evaluate a score on a grid, compare two fields, and draw them over a density.

Notation (code name -> book symbol):

==============  ==============================================================================
``log_prob``    a function x [B, 2] -> log p(x) [B] (e.g. :func:`diffbook.denoisers.gmm_log_prob`)
``score``       s(x) = grad_x log p_sigma(x), Eq. (score) of the score-matching chapter
``denoiser``    D(x; sigma) -> x0_hat; its score is (D - x) / sigma^2 by Tweedie's formula, Eq. (tweedie)
``field``       any function x [B, 2] -> vectors [B, 2] (a score, a drift, an ODE derivative)
``lim``         the square [-lim, lim]^2 drawn, or a pair (lo, hi) for [lo, hi]^2
==============  ==============================================================================

Point clouds, trajectories, animations and sliders are drawn by :mod:`diffbook.show.plots`; this module adds what is
specific to vector fields: a grid to evaluate them on, the score of a density by automatic differentiation, the
score of a denoiser, their agreement (cosine similarity), and quiver and density plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..checks import check_batch_sigma, check_tensor
from ..denoisers import score_from_denoiser

__all__ = [
    "Grid",
    "grid2d",
    "score_by_autograd",
    "denoiser_score",
    "field_cosine",
    "plot_log_density",
    "plot_field",
]


def _limits(lim) -> tuple[float, float]:
    """Turn ``lim`` (a number L > 0, or a pair lo < hi) into the pair (lo, hi)."""
    if isinstance(lim, bool):
        raise TypeError(f"lim must be a number L > 0 or a pair (lo, hi), got {lim!r}.")
    if isinstance(lim, (int, float)):
        lo, hi = -float(lim), float(lim)
    else:
        try:
            lo, hi = (float(v) for v in lim)
        except (TypeError, ValueError):
            raise TypeError(f"lim must be a number L > 0 or a pair (lo, hi), got {lim!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"lim must give a finite interval lo < hi (or L > 0 for [-L, L]), got {lim!r}.")
    return lo, hi


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n (grid points per side) must be an integer >= 2, got {n!r}.")
    return n


def _check_points(name: str, x) -> torch.Tensor:
    check_tensor(name, x, min_dim=2)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [B, d] (one row per point), got {tuple(x.shape)}.")
    return x


@dataclass(frozen=True)
class Grid:
    """A square grid of n x n points on [lo, hi]^2.

    ``points`` [n*n, 2] lists them row by row (x varies fastest), so ``values.reshape(n, n)`` puts y on the
    rows, the layout ``imshow(origin="lower")`` and ``quiver`` expect. ``extent`` is (lo, hi, lo, hi).
    """

    xs: torch.Tensor
    points: torch.Tensor
    extent: tuple[float, float, float, float]

    @property
    def n(self) -> int:
        return self.xs.shape[0]

    def reshape(self, values: torch.Tensor) -> np.ndarray:
        """Turn values [n*n] or [n*n, k] computed at ``points`` into a NumPy array [n, n] or [n, n, k]."""
        v = values.detach().double().cpu()
        if v.shape[0] != self.n**2:
            raise ValueError(f"values must have one row per grid point ({self.n**2}), got shape {tuple(v.shape)}.")
        return v.reshape(self.n, self.n, *v.shape[1:]).numpy()


def grid2d(lim=3.0, n: int = 50, dtype=torch.float32) -> Grid:
    """Return the n x n :class:`Grid` on the square ``lim`` (L for [-L, L]^2, or a pair (lo, hi))."""
    lo, hi = _limits(lim)
    n = _check_n(n)
    xs = torch.linspace(lo, hi, n, dtype=dtype)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")  # row = y, column = x
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return Grid(xs=xs, points=points, extent=(lo, hi, lo, hi))


def score_by_autograd(log_prob: Callable, x: torch.Tensor) -> torch.Tensor:
    """Return the score grad_x log p(x) [B, d] of a log-density function, by automatic differentiation.

    Implements the definition of the score, Eq. (score). ``log_prob(x)`` must return one value per row of x;
    rows do not interact, so the gradient of their sum is each row's own gradient. Works under ``torch.no_grad``.
    """
    if not callable(log_prob):
        raise TypeError(f"log_prob must be a function x -> log p(x), got {type(log_prob).__name__}.")
    _check_points("x", x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        lp = log_prob(x)
        if not isinstance(lp, torch.Tensor) or lp.shape != (x.shape[0],):
            got = tuple(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
            raise ValueError(f"log_prob must return one log-density per point, shape [{x.shape[0]}], got {got}.")
        (grad,) = torch.autograd.grad(lp.sum(), x)
    return grad


def denoiser_score(denoiser: Callable, sigma) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the field x -> grad_x log p_sigma(x) = (D(x; sigma) - x) / sigma^2 of a denoiser at one noise level.

    Implements Tweedie's formula, Eq. (tweedie). ``sigma`` is a number > 0; the field runs the denoiser without
    building a graph (wrap the denoiser yourself if you need gradients through it).
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma), got {type(denoiser).__name__}.")
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma must be a single noise level, got a tensor of shape {tuple(sigma.shape)}.")
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite number > 0 (the score at sigma = 0 is not defined), got {sigma!r}.")
    sigma = float(sigma)

    def field(x: torch.Tensor) -> torch.Tensor:
        s = check_batch_sigma(x, sigma)
        with torch.no_grad():
            return score_from_denoiser(x, s, denoiser(x, s))

    field.sigma = sigma
    return field


def field_cosine(u: torch.Tensor, v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Return the cosine of the angle between two fields at each point: ``<u, v> / (|u| |v|)``, shape [B].

    1 means the same direction, 0 orthogonal, -1 opposite. A zero vector gets cosine 0 (no direction).
    """
    _check_points("u", u)
    _check_points("v", v)
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape [B, d], got {tuple(u.shape)} and {tuple(v.shape)}.")
    u, v = u.detach().double(), v.detach().double()
    return (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1)).clamp_min(eps)


def _apply(fn: Callable, name: str, points: torch.Tensor, shape: tuple) -> torch.Tensor:
    out = fn(points)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor of shape {list(shape)} for {points.shape[0]} points, got {got}.")
    return out.detach()


def _set_square(ax, lo: float, hi: float) -> None:
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")


def plot_log_density(ax, log_prob: Callable, *, lim=3.0, n: int = 150, floor: float = 12.0, cmap: str = "Greys",
                     strength: float = 0.6, title: str | None = None):
    """Shade the density of ``log_prob`` on the square ``lim``: darker where p is larger, on a log scale.

    Draws log p - max log p clipped below at -``floor`` nats, so a mixture's narrow modes and the valleys
    between them are both visible. The maximum is drawn at the fraction ``strength`` of the colour map (not its
    darkest end), so arrows drawn on top stay visible even where the density is nearly flat. Returns the image
    (``AxesImage``); its data are the clipped values in [-floor, 0].
    """
    if not callable(log_prob):
        raise TypeError(f"log_prob must be a function x -> log p(x), got {type(log_prob).__name__}.")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not floor > 0:
        raise ValueError(f"floor must be a number > 0 (nats below the maximum to show), got {floor!r}.")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength must be a number in (0, 1] (the shade of the maximum), got {strength!r}.")
    g = grid2d(lim, n)
    with torch.no_grad():
        lp = _apply(log_prob, "log_prob", g.points, (g.points.shape[0],))
    img = g.reshape(lp)
    img = np.clip(img - img.max(), -float(floor), 0.0)
    vmax = float(floor) * (1 - strength) / strength  # value 0 (the maximum) lands at `strength` of the map
    out = ax.imshow(img, origin="lower", extent=g.extent, cmap=cmap, vmin=-float(floor), vmax=vmax,
                    interpolation="bilinear")
    _set_square(ax, g.extent[0], g.extent[1])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return out


def plot_field(ax, field: Callable, *, lim=3.0, n: int = 17, normalize: bool = True, color="C0",
               color_by: Callable | None = None, cmap: str = "coolwarm_r", clim=(0.0, 1.0),
               scale: float | None = None, width: float = 0.005, title: str | None = None, **kwargs):
    """Draw a vector field (a function x [B, 2] -> [B, 2], e.g. a score) as arrows on an n x n grid.

    With ``normalize`` every arrow has the same length and shows only the direction: a score's size spans
    orders of magnitude (it grows like 1 / sigma^2 near a narrow mode), which would hide most arrows otherwise.
    Without it the arrow lengths are the field's, scaled by matplotlib's ``scale`` rule. ``color_by`` (a
    function x [B, 2] -> [B], e.g. the cosine agreement with another field) colours each arrow with ``cmap``
    on the range ``clim`` instead of the single ``color``; the defaults suit a cosine: 1 (agreement) blue,
    0 or less red. Returns the ``Quiver`` (pass it to ``fig.colorbar`` for a colour scale).
    """
    if not callable(field):
        raise TypeError(f"field must be a function x [B, 2] -> [B, 2], got {type(field).__name__}.")
    if color_by is not None and not callable(color_by):
        raise TypeError(f"color_by must be None or a function x [B, 2] -> [B], got {type(color_by).__name__}.")
    g = grid2d(lim, n)
    v = _apply(field, "field", g.points, (g.points.shape[0], 2)).double()
    if not torch.isfinite(v).all():
        raise ValueError("the field returned NaN or infinite vectors on the grid; check it (and sigma > 0).")
    if normalize:
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
        if scale is None:
            scale = 1.1 * n  # arrows a little shorter than the grid spacing
    uv = g.reshape(v)
    xs = g.xs.double().numpy()
    if color_by is None:
        out = ax.quiver(xs, xs, uv[..., 0], uv[..., 1], color=color, scale=scale, width=width, angles="xy",
                        **kwargs)
    else:
        c = g.reshape(_apply(color_by, "color_by", g.points, (g.points.shape[0],)))
        out = ax.quiver(xs, xs, uv[..., 0], uv[..., 1], c, cmap=cmap, clim=tuple(clim), scale=scale, width=width,
                        angles="xy", **kwargs)
    _set_square(ax, g.extent[0], g.extent[1])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return out
