"""A small, seeded training loop for the models the chapters train live on the CPU (2D data)."""

from __future__ import annotations

import copy

import torch

from ._validate import check_nfe, check_positive


def fit(model: torch.nn.Module, loss_fn, sample_data, *, steps: int = 2000, batch: int = 512, lr: float = 2e-3,
        seed: int = 0, ema_decay: float | None = 0.99, warmup: int = 0):
    """Train ``model`` by Adam on ``loss_fn(model, x0, generator)`` with fresh data ``sample_data(batch, generator)``.

    Returns ``(model_for_sampling, losses)``: the EMA copy of the weights when ``ema_decay`` is set (Polyak
    averaging; Song & Ermon 2020 Technique 5), else the model itself; ``losses`` is the per-step loss list.
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
    for _ in range(steps):
        loss = loss_fn(model, sample_data(batch, g), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if ema is not None:
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(p, 1 - ema_decay)
    out = ema if ema is not None else model
    return out.eval(), losses
