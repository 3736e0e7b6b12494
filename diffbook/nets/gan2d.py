"""A vanilla GAN for 2D points: an MLP generator and an MLP discriminator (trained by :func:`diffbook.train.fit.fit_gan`).

The GAN baseline of the chapter "GANs and diffusion models, measured" (Goodfellow et al. 2014): the same
kind of small MLP as the diffusion model of :class:`diffbook.nets.mlp.MLP2D`, trained on the same 2D mixtures, so
the two can be compared on the mode-collapse protocol of :func:`diffbook.eval.metrics.mode_stats`.

Notation (code name -> book symbol):

==================  ==============================================================================
``z``               z ~ N(0, I), the latent noise [B, nz]
``generator``       G_theta(z), maps latent noise to a point [B, dim]
``discriminator``   the logit l_phi(x) [B]; D_phi(x) = sigmoid(l_phi(x)) is the probability "x is real"
``loss_d``          -E log D_phi(x) - E log(1 - D_phi(G(z))), Eq. (gan-objective) negated
``loss_g``          -E log D_phi(G(z)), the non-saturating generator loss, Eq. (gan-nonsaturating)
==================  ==============================================================================

The losses themselves are those of the image GAN, :func:`diffbook.nets.gan.discriminator_loss` and
:func:`diffbook.nets.gan.generator_loss`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_nfe


__all__ = ["Generator2D", "Discriminator2D"]


def _check_width(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    return v


def _check_points(name: str, x, dim: int, hint: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != dim or not x.is_floating_point():
        desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point tensor of shape [B, {dim}], got {desc}; {hint}.")
    return x


def _mlp(d_in: int, hidden: int, depth: int, d_out: int, act) -> nn.Sequential:
    layers, width = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


class Generator2D(nn.Module):
    """G_theta(z): latent noise z [B, nz] -> points [B, dim], an MLP with ``depth`` ReLU hidden layers.

    Implements the generator of Eq. (gan-objective); Goodfellow et al. 2014. One network evaluation per sample.
    """

    def __init__(self, nz: int = 8, hidden: int = 128, depth: int = 3, dim: int = 2):
        super().__init__()
        self.nz, self.dim = _check_width("nz", nz), _check_width("dim", dim)
        self.net = _mlp(nz, _check_width("hidden", hidden), _check_width("depth", depth), dim, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_points("z (the latent noise)", z, self.nz, "draw it with torch.randn(B, nz) or use .sample(n)")
        return self.net(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n points [n, dim] (no gradients): z ~ N(0, I) from ``generator`` (a CPU torch.Generator), then G(z)."""
        n = check_nfe(n)
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise TypeError("generator must be a CPU torch.Generator or None; make one with "
                            "torch.Generator().manual_seed(0).")
        p = next(self.parameters())
        z = torch.randn(n, self.nz, generator=generator).to(p.device, p.dtype)
        with torch.no_grad():
            return self(z)


class Discriminator2D(nn.Module):
    """The discriminator's logit l_phi(x): points [B, dim] -> logits [B]; D_phi(x) = sigmoid(l_phi(x)).

    An MLP with ``depth`` LeakyReLU(0.2) hidden layers. Implements the discriminator of Eq. (gan-objective).
    """

    def __init__(self, hidden: int = 128, depth: int = 3, dim: int = 2):
        super().__init__()
        self.dim = _check_width("dim", dim)
        self.net = _mlp(dim, _check_width("hidden", hidden), _check_width("depth", depth), 1,
                        lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_points("x (the points to judge)", x, self.dim, "pass one point per row")
        return self.net(x).squeeze(1)
