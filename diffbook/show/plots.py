"""Plotting helpers for the chapters: image rows and grids, 2D point clouds and densities, loss curves,
sampler trajectories, and explorers that work both live (an ipywidgets slider) and on the static website
(a matplotlib animation embedded with ``to_jshtml``).

Every helper draws with matplotlib onto axes it is given (or a small figure it makes) and returns what it drew,
so a chapter decides the layout. Tensors may live on any device; they are copied to the CPU for plotting.
Images are in [-1, 1] (the range of :func:`diffbook.data.fashion.load_fashion_mnist`), shape [N, C, H, W] or [N, H, W].

The website cannot run Python, so a slider there could not redraw anything: :func:`slider` is for live
notebooks (Jupyter, Colab) and :func:`animate` precomputes the same frames for the website.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from ..checks import check_positive, check_tensor

__all__ = [
    "image_grid",
    "show_images",
    "save_image_grid",
    "scatter2d",
    "density2d",
    "moving_average",
    "plot_losses",
    "plot_trajectories",
    "Recorder",
    "to_jshtml",
    "animate",
    "slider",
]


# ----------------------------------------------------------------------------------------------- images
def _images_hw(images) -> torch.Tensor:
    """Return images as a float CPU tensor [N, H, W] (single channel) or [N, H, W, 3]."""
    check_tensor("images", images, min_dim=3)
    x = images.detach().float().cpu()
    if x.dim() == 3:
        return x
    if x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 4 and x.shape[1] == 3:
        return x.permute(0, 2, 3, 1)
    raise ValueError(
        f"images must have shape [N, H, W], [N, 1, H, W] or [N, 3, H, W], got {tuple(images.shape)}."
    )


def image_grid(images, nrow: int = 8, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images [N, (C,) H, W] into one image [H', W'] (or [H', W', 3]), ``nrow`` images per row."""
    x = _images_hw(images)
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be an integer >= 1, got {nrow!r}.")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0, got {pad!r}.")
    n, h, w = x.shape[:3]
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    out = torch.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *x.shape[3:]), float(pad_value))
    for k in range(n):
        r, c = divmod(k, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[k]
    return out


def show_images(images, titles: Sequence[str] | None = None, *, axes=None, scale: float = 1.3,
                vmin: float = -1.0, vmax: float = 1.0):
    """Show images [N, (C,) H, W] side by side, one per axis, with optional titles; return the figure.

    Values are shown on the fixed range [vmin, vmax] (default [-1, 1]), so noise stays comparable across panels.
    """
    x = _images_hw(images)
    n = x.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images; give one title per image (or None).")
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(scale * n, scale * 1.15), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(axes).ravel()
        if len(axes) < n:
            raise ValueError(f"got {len(axes)} axes for {n} images.")
        fig = axes[0].figure
    for k in range(n):
        ax = axes[k]
        ax.imshow(x[k].clamp(vmin, vmax).numpy(), cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    return fig


def save_image_grid(images, path, nrow: int = 10) -> None:
    """Save images [N, (C,) H, W] in [-1, 1] as one PNG grid (``nrow`` per row, 1-pixel white gaps)."""
    grid = image_grid(images, nrow=nrow, pad=1, pad_value=1.0).clamp(-1, 1)
    plt.imsave(path, ((grid + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)


# ----------------------------------------------------------------------------------------------- 2D clouds
def _points(x) -> np.ndarray:
    check_tensor("x", x, min_dim=2)
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {tuple(x.shape)}.")
    return x.detach().double().cpu().numpy()


def _set_lim(ax, lim) -> None:
    if lim is not None:
        lo, hi = (-lim, lim) if np.isscalar(lim) else lim
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_aspect("equal")


def scatter2d(ax, x, *, lim=None, s: float = 2.0, alpha: float = 0.5, color="C0", title: str | None = None,
              **kwargs):
    """Scatter 2D points x [N, 2] on ``ax`` with equal aspect; ``lim`` = L (square [-L, L]^2) or (lo, hi)."""
    p = _points(x)
    out = ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, color=color, linewidths=0, **kwargs)
    _set_lim(ax, lim)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return out


def density2d(ax, x, *, lim, bins: int = 60, cmap: str = "Blues", title: str | None = None):
    """Draw the 2D histogram of points x [N, 2] on the square ``lim`` as an image (density per unit area)."""
    p = _points(x)
    lo, hi = (-lim, lim) if np.isscalar(lim) else lim
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}.")
    h, xe, ye = np.histogram2d(p[:, 0], p[:, 1], bins=bins, range=[[lo, hi], [lo, hi]], density=True)
    out = ax.imshow(h.T, origin="lower", extent=(lo, hi, lo, hi), cmap=cmap, aspect="equal")
    if title is not None:
        ax.set_title(title, fontsize=9)
    return out


# ----------------------------------------------------------------------------------------------- training
def moving_average(values, window: int) -> np.ndarray:
    """Trailing moving average of a 1-D sequence: entry i is the mean of values[max(0, i-window+1) : i+1]."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}.")
    if v.size == 0:
        raise ValueError("values must hold at least one number.")
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def plot_losses(ax, losses, *, window: int = 50, label: str | None = None, color="C0", log: bool = True):
    """Plot per-step losses (faint) and their moving average over ``window`` steps (bold) on ``ax``."""
    v = np.asarray(losses, dtype=np.float64)
    steps = np.arange(1, v.size + 1)
    ax.plot(steps, v, color=color, alpha=0.2, lw=0.8)
    line = ax.plot(steps, moving_average(v, window), color=color, lw=1.5, label=label)[0]
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    return line


# ----------------------------------------------------------------------------------------------- sampling
class Recorder:
    """A sampler callback that keeps a copy of x, x0_hat (``denoised``) and sigma at every ``every``-th step.

    ``Recorder(every=10, keep=200)`` keeps the first ``keep`` samples of the batch only. After sampling,
    :meth:`trajectory` stacks the recorded x's [K, keep, ...] and can append the sampler's final output.
    """

    def __init__(self, every: int = 1, keep: int | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}.")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"keep must be None or an integer >= 1, got {keep!r}.")
        self.every, self.keep = every, keep
        self.steps: list[int] = []
        self.sigmas: list[float] = []
        self.xs: list[torch.Tensor] = []
        self.denoised: list[torch.Tensor] = []

    def __call__(self, info: dict) -> None:
        if info["i"] % self.every:
            return
        sl = slice(None) if self.keep is None else slice(0, self.keep)
        self.steps.append(int(info["i"]))
        self.sigmas.append(float(info["sigma"]))
        self.xs.append(info["x"][sl].detach().cpu().clone())
        self.denoised.append(info["denoised"][sl].detach().cpu().clone())

    def trajectory(self, final: torch.Tensor | None = None) -> torch.Tensor:
        """Return the recorded states [K, n, ...], with ``final`` (the sampler's output) appended if given."""
        if not self.xs:
            raise ValueError("nothing was recorded; pass the Recorder as callback= to a sampler first.")
        xs = list(self.xs)
        if final is not None:
            xs.append(final[: xs[0].shape[0]].detach().cpu())
        return torch.stack(xs)


def plot_trajectories(ax, traj, *, n: int = 30, color="C3", lw: float = 0.6, alpha: float = 0.6,
                      lim=None, start_color="0.5", end_color="C3"):
    """Draw the paths of the first ``n`` points of a 2D trajectory traj [K, N, 2]: line, start (grey), end (dot)."""
    check_tensor("traj", traj, min_dim=3)
    if traj.dim() != 3 or traj.shape[-1] != 2:
        raise ValueError(f"traj must have shape [K, N, 2] (K states of N points), got {tuple(traj.shape)}.")
    t = traj[:, :n].detach().double().cpu().numpy()
    for j in range(t.shape[1]):
        ax.plot(t[:, j, 0], t[:, j, 1], color=color, lw=lw, alpha=alpha)
    ax.scatter(t[0, :, 0], t[0, :, 1], s=8, color=start_color, zorder=3)
    ax.scatter(t[-1, :, 0], t[-1, :, 1], s=10, color=end_color, zorder=4)
    _set_lim(ax, lim)


# ----------------------------------------------------------------------------------------------- explorers
def to_jshtml(fig, update: Callable[[int], object], frames: int, *, interval: int = 250, dpi: int = 72,
              loop: bool = True):
    """Turn ``update(k)`` (redraws ``fig`` for frame k) into a self-contained HTML animation; close ``fig``.

    Returns an ``IPython.display.HTML`` object: displayed in a notebook or on the website it shows the frames
    (PNG, embedded) with play / step buttons and a frame slider, and needs no Python to run.
    """
    from IPython.display import HTML

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"an animation needs an integer number of frames >= 2, got {frames!r}.")
    check_positive("interval", interval)
    check_positive("dpi", dpi)
    old_dpi = fig.dpi
    fig.set_dpi(dpi)
    try:
        anim = animation.FuncAnimation(fig, update, frames=frames, interval=interval, blit=False)
        html = anim.to_jshtml(default_mode="loop" if loop else "once")
        # matplotlib links Font Awesome from a CDN for the button icons; the book's theme ships its own icons,
        # and the website must work offline, so the external stylesheet is dropped.
        html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", html)
    finally:
        fig.set_dpi(old_dpi)
        plt.close(fig)
    return HTML(html)


def _figure(ncols: int, figsize) -> tuple:
    fig, axes = plt.subplots(1, ncols, figsize=figsize, squeeze=False)
    return fig, list(axes[0])


def animate(draw: Callable, values: Sequence, *, ncols: int = 1, figsize=(6, 3), interval: int = 250,
            dpi: int = 72):
    """Animate ``draw(axes, value)`` over ``values`` (one frame each) and return it as HTML (see to_jshtml).

    ``draw`` gets a list of ``ncols`` axes (cleared before each frame) and one element of ``values``; it is the
    same function :func:`slider` calls, so the live and the static explorer show the same frames.
    """
    values = list(values)
    fig, axes = _figure(ncols, figsize)

    def update(k):
        for ax in axes:
            ax.clear()
        draw(axes, values[k])
        fig.tight_layout()

    return to_jshtml(fig, update, len(values), interval=interval, dpi=dpi)


def slider(draw: Callable, values: Sequence, *, ncols: int = 1, figsize=(6, 3), description: str = "frame",
           labels: Sequence[str] | None = None):
    """Return a live explorer: an ipywidgets ``IntSlider`` over the index of ``values`` that redraws
    ``draw(axes, values[k])`` in a fresh figure. Needs a running kernel (Jupyter, Colab); see :func:`animate`
    for the website's form.
    """
    import ipywidgets

    values = list(values)
    if len(values) < 2:
        raise ValueError(f"a slider needs at least 2 values, got {len(values)}.")
    if labels is not None and len(labels) != len(values):
        raise ValueError(f"got {len(labels)} labels for {len(values)} values.")

    def show(k):
        fig, axes = _figure(ncols, figsize)
        draw(axes, values[k])
        if labels is not None:
            fig.suptitle(labels[k], fontsize=9)
        fig.tight_layout()
        plt.show()
        plt.close(fig)

    control = ipywidgets.IntSlider(value=0, min=0, max=len(values) - 1, step=1, description=description,
                                   continuous_update=False)
    return ipywidgets.interactive(show, k=control)
