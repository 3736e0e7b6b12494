"""Explore a class-conditional image diffusion model: sample chosen classes on fixed noise with a chosen guidance
weight, sampler and number of steps, live (an ipywidgets explorer) or precomputed for the website.

The four samplers are run the way the release evaluation runs them (:data:`SAMPLER_SPECS`, the specs behind
``diffbook.zoo.results.load("zoo-release")``): DDIM on the DDPM's own timesteps ("trailing" spacing, as diffusers'
``DDIMScheduler``), Euler, Heun and DPM-Solver++(2M) on the Karras et al. noise levels. Guidance is classifier-free,
Eq. (cfg), against the model's null class; sampling is :meth:`diffbook.zoo.DiffusionModel.sample`.
"""

from __future__ import annotations

import torch

from ..checks import check_nfe
from ..zoo.model import DiffusionModel

__all__ = ["SAMPLER_SPECS", "spec", "Explorer"]

#: The samplers of the explorer, named as the book names them, with the noise levels the release evaluation uses.
SAMPLER_SPECS = {
    "DDIM": dict(sampler="ddim", schedule="ddpm", spacing="trailing"),
    "Euler": dict(sampler="euler", schedule="karras"),
    "Heun": dict(sampler="heun", schedule="karras"),
    "DPM++(2M)": dict(sampler="dpmpp_2m", schedule="karras"),
}


def spec(name: str, steps: int) -> dict:
    """The spec (keyword arguments of ``model.sample``) of the explorer's sampler ``name`` with ``steps`` steps."""
    if name not in SAMPLER_SPECS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_SPECS)}.")
    return dict(SAMPLER_SPECS[name], steps=check_nfe(steps))


class Explorer:
    """A live explorer of one class-conditional model: class, guidance weight, sampler and steps, on fixed noise.

    ``images(label, w, sampler, steps)`` samples ``n`` images of one class (cached, so going back to a setting
    is instant); :meth:`widget` wraps it in ipywidgets controls for Jupyter and Colab. The noise is drawn once
    from ``seed``, so every setting starts from the same ``n`` noise images.
    """

    def __init__(self, model: DiffusionModel, *, n: int = 4, seed: int = 0, class_names=None):
        if not isinstance(model, DiffusionModel):
            raise TypeError(f"model must be a diffusion model from diffbook.load(...), got {type(model).__name__}.")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (images per setting) must be an integer >= 1, got {n!r}.")
        self.model, self.n = model, n
        self.noise = torch.randn(self.n, *model.image_shape, generator=torch.Generator().manual_seed(seed))
        if model.num_classes is None:
            raise ValueError(f"model {model.name!r} has no null class, so it is not class-conditional; "
                             "the explorer needs a class-conditional model such as fmnist-ddpm.")
        n_classes = model.num_classes
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
        if len(self.class_names) != n_classes:
            raise ValueError(f"got {len(self.class_names)} class names for a model with {n_classes} classes.")
        self.cache: dict[tuple, torch.Tensor] = {}

    def images(self, label: int, w: float = 0.0, sampler: str = "DPM++(2M)", steps: int = 10) -> torch.Tensor:
        """The ``n`` images of class ``label`` for one setting, [n, C, H, W] in [-1, 1] (sampled once, then cached)."""
        key = (int(label), float(w), sampler, check_nfe(steps))
        if key not in self.cache:
            self.cache[key] = self.model.sample(noise=self.noise.to(self.model.device), labels=key[0], guidance=key[1],
                                                progress=False, **spec(sampler, key[3]))
        return self.cache[key]

    def figure(self, label: int, w: float = 0.0, sampler: str = "DPM++(2M)", steps: int = 10):
        """A figure with the images of one setting in a row, titled with the setting."""
        from .plots import show_images

        fig = show_images(self.images(label, w, sampler, steps), scale=1.4)
        fig.suptitle(f"{self.class_names[int(label)]}, w = {w:g}, {sampler}, {steps} steps "
                     f"({self.model.nfe(**spec(sampler, steps))} NFE)", fontsize=9)
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
