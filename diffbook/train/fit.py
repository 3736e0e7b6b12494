"""Small, seeded training loops for the models the chapters train live on the CPU (2D data): :func:`fit` for a
diffusion model's loss, :func:`fit_gan` for the 2D GAN."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..checks import check_finite, check_nfe, check_positive
from ..nets.gan import discriminator_loss, generator_loss
from ..nets.gan2d import Discriminator2D, Generator2D


def fit(model: torch.nn.Module, loss_fn, sample_data, *, steps: int = 2000, batch: int = 512, lr: float = 2e-3,
        seed: int = 0, ema_decay: float | None = 0.99, warmup: int = 0, ema_warmup: bool = False):
    """Train ``model`` by Adam on ``loss_fn(model, x0, generator)`` with fresh data ``sample_data(batch, generator)``.

    Returns ``(model_for_sampling, losses)``: the EMA copy of the weights when ``ema_decay`` is set (Polyak
    averaging; Song & Ermon 2020 Technique 5), else the model itself; ``losses`` is the per-step loss list. With
    ``ema_warmup`` the decay at step i is min(ema_decay, (1 + i) / (10 + i)), as in the image models' training loop
    (:mod:`diffbook.train.diffusion`), so the first weights are forgotten quickly.
    Seeded: the same seed and the same initial model give the same weights (seed the global RNG with
    ``torch.manual_seed`` before building the model to fix its initialisation too).
    """
    steps, batch = check_nfe(steps), check_nfe(batch)
    check_positive("lr", lr)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) if warmup else 1.0)
    ema = copy.deepcopy(model).requires_grad_(False) if ema_decay else None
    losses = []
    for i in range(steps):
        loss = loss_fn(model, sample_data(batch, g), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if ema is not None:
            decay = min(ema_decay, (1 + i) / (10 + i)) if ema_warmup else ema_decay
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(p, 1 - decay)
    out = ema if ema is not None else model
    return out.eval(), losses


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
    [batch, dim] each step (e.g. :func:`diffbook.data.toy2d.grid25`). Returns ``(generator_in_eval_mode, history)``
    with ``history = {"loss_d": [...], "loss_g": [...]}``, one entry per step. Seeded: the data and the latent
    noise come from ``torch.Generator().manual_seed(seed)``; the networks' initial weights are whatever the
    caller built (seed torch before building them for a fully reproducible run). The optional
    ``callback(step, generator)`` runs after every step (step = 1, 2, ..., steps), e.g. to keep snapshots of
    the generator's samples; it should not use the training's random numbers (give it its own generator).
    """
    if not isinstance(generator, nn.Module) or not isinstance(discriminator, nn.Module):
        raise TypeError("generator and discriminator must be torch.nn.Module instances "
                        "(e.g. diffbook.nets.gan2d.Generator2D() and Discriminator2D()).")
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
