"""Explore a class-conditional image diffusion model: sample chosen classes on fixed noise with a chosen guidance
weight, sampler and number of steps, live (an ipywidgets explorer) or precomputed for the website.

The four samplers are run the way the release evaluation runs them (:data:`SAMPLER_SPECS`, the specs behind
diffbook/results/zoo-release.json): DDIM on the DDPM's own timesteps ("trailing" spacing, as diffusers' ``DDIMScheduler``),
Euler, Heun and DPM-Solver++(2M) on the Karras et al. noise levels. Guidance is classifier-free,
Eq. (cfg), against the model's null class.

Notation (code name -> book symbol):

==============  ==========================================================================
``noise``       n, standard normal noise [B, C, H, W]; the sampler starts at x = prior_std * n
``labels``      c, the requested class of each image [B]
``w``           the guidance weight of Eq. (cfg); 0 = the plain conditional model
``steps``       the sampler's number of steps (Heun evaluates the network 2 steps - 1 times)
==============  ==========================================================================
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple

import torch

from ._validate import check_nfe, check_tensor
from .evaluate import SAMPLERS, nfe_of, sigmas_for
from .guidance import cfg

__all__ = ["SAMPLER_SPECS", "Model", "load", "nfe", "sigmas", "sample", "Explorer"]

#: The samplers of the explorer, named as the book names them, with the noise levels the release evaluation uses.
SAMPLER_SPECS = {
    "DDIM": dict(sampler="ddim", schedule="ddpm", spacing="trailing"),
    "Euler": dict(sampler="euler", schedule="karras"),
    "Heun": dict(sampler="heun", schedule="karras"),
    "DPM++(2M)": dict(sampler="dpmpp_2m", schedule="karras"),
}


class Model(NamedTuple):
    """A diffusion model from the zoo, as :func:`diffbook.zoo.load_denoiser` returns it, with names."""

    denoiser: Callable
    card: dict
    sigma_min: float
    sigma_max: float
    prior_std: float


def load(name: str = "fmnist-ddpm", root=None, device=None) -> Model:
    """Load a shipped diffusion model (SHA-256 checked) as a :class:`Model`."""
    from .zoo import load_denoiser

    return Model(*load_denoiser(name, root, device))


def _spec(sampler: str, steps) -> dict:
    if sampler not in SAMPLER_SPECS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLER_SPECS)}.")
    return dict(SAMPLER_SPECS[sampler], steps=check_nfe(steps))


def _check_w(w) -> float:
    if isinstance(w, torch.Tensor) and w.numel() == 1 and not w.is_complex():
        w = w.item()
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
        raise TypeError(f"the guidance weight w must be a real number, got {w!r}.")
    if not math.isfinite(w):
        raise ValueError(f"the guidance weight w must be finite, got {w}.")
    return float(w)


def nfe(sampler: str, steps: int) -> int:
    """Network evaluations per image of ``sampler`` with ``steps`` steps (classifier-free guidance doubles the batch
    of each evaluation, not their number)."""
    return nfe_of(_spec(sampler, steps))


def sigmas(model: Model, sampler: str, steps: int) -> torch.Tensor:
    """The decreasing noise levels (ending in 0) that ``sampler`` visits with ``steps`` steps on ``model``."""
    return sigmas_for(_spec(sampler, steps), model.card, model.sigma_min, model.sigma_max)


@torch.no_grad()
def sample(model: Model, labels: torch.Tensor, noise: torch.Tensor, *, w: float = 0.0, sampler: str = "DPM++(2M)",
           steps: int = 10, batch: int | None = None, callback=None) -> torch.Tensor:
    """Sample one image per noise with class ``labels``, guidance weight ``w``, ``sampler`` and ``steps``.

    Implements Eq. (cfg) around the samplers of Eqs. (ddim-update), (euler-step), (heun-step) and (dpmpp-2m):
    x = prior_std * noise at the largest noise level, then the sampler with the guided denoiser
    (w = 0 uses the conditional denoiser alone, one network call per evaluation). Returns images clamped to
    [-1, 1]. Deterministic: the same noise gives the same images, whatever the ``batch``.

    ``batch`` splits the work into chunks of at most that many images (guidance doubles each network batch);
    a CPU is fastest on moderate batches. The ``callback`` then sees each chunk in turn.
    """
    spec = _spec(sampler, steps)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be None or an integer >= 1 (images per network batch), got {batch!r}.")
    w = _check_w(w)
    check_tensor("noise", noise, min_dim=2)
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.shape != noise.shape[:1]:
        raise ValueError(f"labels must be an integer tensor of shape [{noise.shape[0]}] (one class per noise "
                         f"image), got {getattr(labels, 'shape', type(labels).__name__)}.")
    null = model.card.get("null_class")
    if null is None:
        raise ValueError(f"model {model.card.get('name')!r} has no null class, so it is not class-conditional; "
                         "sample it with diffbook.samplers directly.")
    n_classes = int(null)
    if ((labels < 0) | (labels >= n_classes)).any():
        raise ValueError(f"labels must lie in 0..{n_classes - 1} (class {n_classes} is the null class), "
                         f"got {labels.tolist()}.")
    labels = labels.to(noise.device)
    denoiser = model.denoiser
    if w != 0:
        denoiser = cfg(denoiser, w, {"class_labels": n_classes})   # the null class, broadcast to each batch
    levels = sigmas(model, sampler, spec["steps"]).to(noise.device, noise.dtype)
    run = SAMPLERS[spec["sampler"]]
    size = batch or len(noise)
    out = [run(denoiser, noise[i:i + size] * model.prior_std, levels, cond={"class_labels": labels[i:i + size]},
               callback=callback) for i in range(0, len(noise), size)]
    return torch.cat(out).clamp(-1, 1)


class Explorer:
    """A live explorer of one class-conditional model: class, guidance weight, sampler and steps, on fixed noise.

    ``images(label, w, sampler, steps)`` samples ``n`` images of one class (cached, so going back to a setting
    is instant); :meth:`widget` wraps it in ipywidgets controls for Jupyter and Colab. The noise is drawn once
    from ``seed``, so every setting starts from the same ``n`` noise images.
    """

    def __init__(self, model: Model, *, n: int = 4, seed: int = 0, class_names=None, shape=(1, 32, 32)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (images per setting) must be an integer >= 1, got {n!r}.")
        self.model, self.n = model, n
        self.noise = torch.randn(self.n, *shape, generator=torch.Generator().manual_seed(seed))
        if model.card.get("null_class") is None:
            raise ValueError(f"model {model.card.get('name')!r} has no null class, so it is not class-conditional; "
                             "the explorer needs a class-conditional model such as fmnist-ddpm.")
        n_classes = int(model.card["null_class"])
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
        if len(self.class_names) != n_classes:
            raise ValueError(f"got {len(self.class_names)} class names for a model with {n_classes} classes.")
        self.cache: dict[tuple, torch.Tensor] = {}

    def images(self, label: int, w: float = 0.0, sampler: str = "DPM++(2M)", steps: int = 10) -> torch.Tensor:
        """The ``n`` images of class ``label`` for one setting, [n, C, H, W] in [-1, 1] (sampled once, then cached)."""
        key = (int(label), _check_w(w), sampler, check_nfe(steps))
        if key not in self.cache:
            labels = torch.full((self.n,), key[0], dtype=torch.long)
            self.cache[key] = sample(self.model, labels, self.noise, w=key[1], sampler=sampler, steps=key[3])
        return self.cache[key]

    def figure(self, label: int, w: float = 0.0, sampler: str = "DPM++(2M)", steps: int = 10):
        """A figure with the images of one setting in a row, titled with the setting."""
        from .viz import show_images

        fig = show_images(self.images(label, w, sampler, steps), scale=1.4)
        fig.suptitle(f"{self.class_names[int(label)]}, w = {w:g}, {sampler}, {steps} steps "
                     f"({nfe(sampler, steps)} NFE)", fontsize=9)
        fig.tight_layout()
        return fig

    def widget(self, label: int = 0, w: float = 0.0, sampler: str = "DPM++(2M)", steps: int = 10,
               max_w: float = 5.0, max_steps: int = 50):
        """An ipywidgets explorer over class, guidance weight, sampler and steps (needs a running kernel)."""
        import ipywidgets

        controls = dict(
            label=ipywidgets.Dropdown(options=[(name, c) for c, name in enumerate(self.class_names)], value=label,
                                      description="class"),
            w=ipywidgets.FloatSlider(value=w, min=0.0, max=max_w, step=0.5, description="guidance w",
                                     continuous_update=False),
            sampler=ipywidgets.Dropdown(options=list(SAMPLER_SPECS), value=sampler, description="sampler"),
            steps=ipywidgets.IntSlider(value=steps, min=2, max=max_steps, step=1, description="steps",
                                       continuous_update=False),
        )

        def show(label, w, sampler, steps):
            import matplotlib.pyplot as plt

            fig = self.figure(label, w, sampler, steps)
            plt.show()
            plt.close(fig)

        return ipywidgets.interactive(show, **controls)
