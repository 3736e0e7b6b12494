"""Noise-conditional score networks (NCSN): the sigma ladder rules of NCSNv2 and a UNet score network."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import check_positive, check_tensor
from .schedules import ve_geometric_sigmas


def max_pairwise_distance(x: torch.Tensor, max_n: int = 10_000) -> float:
    """Largest Euclidean distance between two data points (on at most ``max_n`` of them).

    NCSNv2's Technique 1 (Song & Ermon 2020): sigma_1 should be about this large, so that the noisiest level
    can move a sample from any mode to any other.
    """
    check_tensor("x", x, min_dim=2)
    flat = x[:max_n].flatten(1).double()
    best = 0.0
    for chunk in flat.split(2048):
        best = max(best, torch.cdist(chunk, flat).max().item())
    return best


def ncsnv2_overlap(gamma: float, dim: int) -> float:
    """Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma): NCSNv2's overlap between adjacent levels.

    Eq. (ncsnv2-ratio); Song & Ermon 2020, Technique 2.
    """
    a = math.sqrt(2 * dim) * (gamma - 1)
    return 0.5 * (math.erf((a + 3 * gamma) / math.sqrt(2)) - math.erf((a - 3 * gamma) / math.sqrt(2)))


def ncsnv2_ratio(dim: int, target: float = 0.5) -> float:
    """The ratio gamma = sigma_{i-1}/sigma_i of NCSNv2's Technique 2 for data of dimension ``dim``.

    Solves ncsnv2_overlap(gamma, dim) = target by bisection, so that consecutive noise levels overlap enough for
    Langevin to hand samples from one level to the next. For dim <= 4 the overlap never falls to 0.5 (as gamma
    grows it tends to 1), so the rule sets no limit and a ValueError says so.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}.")
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target!r}.")
    if 2 * dim <= 9:
        raise ValueError(f"NCSNv2's ratio rule sets no limit for dim = {dim} <= 4: the overlap between levels stays "
                         "above 0.5 for every ratio; choose the ratio by hand (e.g. from the number of levels).")
    lo, hi = 1.0, 2.0
    while ncsnv2_overlap(hi, dim) > target:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ncsnv2_overlap(mid, dim) > target else (lo, mid)
    return 0.5 * (lo + hi)


def ncsnv2_sigmas(sigma_max: float, sigma_min: float, dim: int) -> torch.Tensor:
    """The geometric ladder from sigma_max to sigma_min with NCSNv2's ratio for dimension ``dim``. Eq. (ncsn-ladder)."""
    check_positive("sigma_max", sigma_max)
    check_positive("sigma_min", sigma_min)
    gamma = ncsnv2_ratio(dim)
    n = max(2, math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1)
    return ve_geometric_sigmas(sigma_min, sigma_max, n)


class NCSNUNet(nn.Module):
    """A score network s(x, sigma) built on a diffusers UNet2DModel F.

    s(x, sigma) = -F(c_in x, c_noise(sigma)) / sigma with c_in = 1/sqrt(sigma_data^2 + sigma^2) (input scaling of
    Karras et al. 2022) and the 1/sigma output scaling of NCSNv2 (Technique 3); c_noise maps log sigma on the
    ladder linearly to [0, 1000] so the UNet's timestep embedding sees its usual range. Trained by
    :func:`diffbook.losses.dsm_loss`, F learns to predict the noise z.
    """

    def __init__(self, unet_config: dict, sigma_min: float, sigma_max: float, sigma_data: float = 0.5):
        super().__init__()
        from .nets import make_unet

        self.unet = make_unet(**unet_config)
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return 1000 * (sigma.float().log() - lo) / (hi - lo)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
        c_in = (self.sigma_data**2 + s**2).rsqrt()
        return -self.unet(x * c_in, self.c_noise(sigma)).sample / s
