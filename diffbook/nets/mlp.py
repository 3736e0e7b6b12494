"""Small MLPs for the 2D chapters: a denoiser/noise predictor and a score network, with a sinusoidal embedding."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(c: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embed scalars c [B] as [sin(c w_k), cos(c w_k)] with geometric frequencies (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c.device, dtype=torch.float32) / half)
    args = c.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class MLP2D(nn.Module):
    """An MLP f(x, c) for 2D points x [B, 2] conditioned on a scalar c [B] (a timestep t or log sigma).

    Used as an eps-predictor (c = t), as a score network (c = log sigma, see :class:`ScoreMLP`) or, through
    :func:`diffbook.denoisers.from_eps_model`, as a denoiser.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 32, c_scale: float = 1.0):
        super().__init__()
        self.emb_dim, self.c_scale = emb_dim, c_scale
        layers, width = [], dim + emb_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(c, device=x.device)
        if c.dim() == 0:
            c = c.expand(x.shape[0])
        return self.net(torch.cat([x, sinusoidal_embedding(c * self.c_scale, self.emb_dim).to(x.dtype)], dim=1))


class ScoreMLP(nn.Module):
    """A noise-conditional score network s(x, sigma) = f(x, log sigma) / sigma (NCSNv2's output scaling).

    Song & Ermon 2020, Technique 3: the score's norm grows like 1/sigma, so the network predicts sigma * score.
    """

    def __init__(self, **mlp_kwargs):
        super().__init__()
        mlp_kwargs.setdefault("c_scale", 4.0)
        self.f = MLP2D(**mlp_kwargs)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        return self.f(x, sigma.log()) / sigma[:, None]
