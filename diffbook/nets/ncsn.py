"""The noise-conditional score network (NCSN) of the book: a diffusers UNet with NCSNv2's output scaling.

Its noise ladder (NCSNv2's rules) is in :mod:`diffbook.schedules`."""

from __future__ import annotations

import math

import torch
from torch import nn

from .unet import make_unet



class NCSNUNet(nn.Module):
    """A score network s(x, sigma) built on a diffusers UNet2DModel F.

    s(x, sigma) = -F(c_in x, c_noise(sigma)) / sigma with c_in = 1/sqrt(sigma_data^2 + sigma^2) (input scaling of
    Karras et al. 2022) and the 1/sigma output scaling of NCSNv2 (Technique 3); c_noise maps log sigma on the
    ladder linearly to [0, 1000] so the UNet's timestep embedding sees its usual range. Trained by
    :func:`diffbook.losses.dsm_loss`, F learns to predict the noise z.
    """

    def __init__(self, unet_config: dict, sigma_min: float, sigma_max: float, sigma_data: float = 0.5):
        super().__init__()

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
