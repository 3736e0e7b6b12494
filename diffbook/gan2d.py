"""A vanilla GAN for 2D points: an MLP generator, an MLP discriminator and a seeded training loop.

The GAN baseline of the chapter "GANs and diffusion models, measured" (Goodfellow et al. 2014): the same
kind of small MLP as the diffusion model of :class:`diffbook.nets.MLP2D`, trained on the same 2D mixtures, so
the two can be compared on the mode-collapse protocol of :func:`diffbook.metrics.mode_stats`.

Notation (code name -> book symbol):

==================  ==============================================================================
``z``               z ~ N(0, I), the latent noise [B, nz]
``generator``       G_theta(z), maps latent noise to a point [B, dim]
``discriminator``   the logit l_phi(x) [B]; D_phi(x) = sigmoid(l_phi(x)) is the probability "x is real"
``loss_d``          -E log D_phi(x) - E log(1 - D_phi(G(z))), Eq. (gan-objective) negated
``loss_g``          -E log D_phi(G(z)), the non-saturating generator loss, Eq. (gan-nonsaturating)
==================  ==============================================================================

The losses themselves are those of the image GAN, :func:`diffbook.gan.discriminator_loss` and
:func:`diffbook.gan.generator_loss`; this module only adds the 2D networks and the loop.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validate import check_finite, check_nfe, check_positive
from .gan import discriminator_loss, generator_loss

__all__ = ["Generator2D", "Discriminator2D", "fit_gan"]


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


def _check_betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise TypeError(f"betas must be two numbers (Adam's beta1, beta2), got {betas!r}.") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"Adam's betas must lie in [0, 1), got {betas!r}; GANs usually use (0.5, 0.999).")
    return b1, b2


def fit_gan(generator: Generator2D, discriminator: Discriminator2D, sample_data, *, steps: int = 2000,
            batch: int = 256, lr: float = 1e-3, betas=(0.5, 0.999), seed: int = 0, callback=None):
    """Train a GAN by alternating one discriminator and one generator Adam step per batch; return the losses.

    Implements Eq. (gan-objective) for the discriminator and Eq. (gan-nonsaturating) for the generator
    (Goodfellow et al. 2014, Alg. 1 with k = 1). ``sample_data(batch, generator)`` returns fresh real points
    [batch, dim] each step (e.g. :func:`diffbook.data2d.grid25`). Returns ``(generator_in_eval_mode, history)``
    with ``history = {"loss_d": [...], "loss_g": [...]}``, one entry per step. Seeded: the data and the latent
    noise come from ``torch.Generator().manual_seed(seed)``; the networks' initial weights are whatever the
    caller built (seed torch before building them for a fully reproducible run). The optional
    ``callback(step, generator)`` runs after every step (step = 1, 2, ..., steps), e.g. to keep snapshots of
    the generator's samples; it should not use the training's random numbers (give it its own generator).
    """
    if not isinstance(generator, nn.Module) or not isinstance(discriminator, nn.Module):
        raise TypeError("generator and discriminator must be torch.nn.Module instances "
                        "(e.g. diffbook.gan2d.Generator2D() and Discriminator2D()).")
    if not hasattr(generator, "nz"):
        raise TypeError("generator must have an attribute nz (its latent dimension), like Generator2D.")
    if not callable(sample_data):
        raise TypeError(f"sample_data must be callable as sample_data(batch, generator), got {type(sample_data).__name__}.")
    steps, batch = check_nfe(steps), check_nfe(batch)
    lr = check_positive("lr", lr)
    betas = _check_betas(betas)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(step, generator) or None, got {type(callback).__name__}.")
    p = next(generator.parameters())
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas)
    generator.train()
    discriminator.train()
    history = {"loss_d": [], "loss_g": []}
    for step in range(steps):
        x_real = sample_data(batch, g)
        if step == 0:
            dim = getattr(discriminator, "dim", None)
            if not isinstance(x_real, torch.Tensor) or x_real.dim() != 2 or (dim is not None and x_real.shape[1] != dim):
                shape = tuple(x_real.shape) if isinstance(x_real, torch.Tensor) else type(x_real).__name__
                raise ValueError(f"sample_data(batch, generator) must return real points [batch, dim] "
                                 f"(dim = {dim}), got {shape}.")
            check_finite("sample_data(batch, generator)", x_real)
        x_real = x_real.to(p.device, p.dtype)
        z = torch.randn(batch, generator.nz, generator=g).to(p.device, p.dtype)
        fake = generator(z)
        loss_d = discriminator_loss(discriminator, x_real, fake)  # fake is detached inside
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = generator_loss(discriminator, fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        history["loss_d"].append(loss_d.item())
        history["loss_g"].append(loss_g.item())
        if callback is not None:
            callback(step + 1, generator)
    discriminator.eval()
    return generator.eval(), history
