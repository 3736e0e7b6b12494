"""The autoencoder of the book's latent diffusion model: a tiny diffusers ``AutoencoderKL`` (Rombach et al. 2022's
KL-regularised autoencoder, the one Stable Diffusion uses, at a fraction of its size).

A 32x32 Fashion-MNIST image [1, 32, 32] becomes a latent [4, 8, 8] (4 times fewer numbers, 16 times fewer spatial
positions for a U-Net to process) and back. :func:`encode` returns the mean of the encoder's Gaussian times the
``scale`` that gives the training latents unit standard deviation (Stable Diffusion's ``scaling_factor``);
:func:`decode` inverts it.
"""

from __future__ import annotations

import torch

__all__ = ["VAE_CONFIG", "VAE_TINY", "make_autoencoder", "encode", "decode"]

#: The autoencoder of the latent model: 32x32 -> 4 x 8 x 8.
VAE_CONFIG = dict(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 64), layers_per_block=1,
                  latent_channels=4, norm_num_groups=8, sample_size=32)
#: A tiny one for smoke runs and tests.
VAE_TINY = dict(VAE_CONFIG, block_out_channels=(4, 8, 8), norm_num_groups=4)


def make_autoencoder(**config):
    """Build a diffusers ``AutoencoderKL`` from a config dict (defaults: :data:`VAE_CONFIG`)."""
    from diffusers import AutoencoderKL

    cfg = {**VAE_CONFIG, **config}
    for k in ("down_block_types", "up_block_types", "block_out_channels"):
        cfg[k] = tuple(cfg[k])
    return AutoencoderKL(**cfg)


def encode(vae, images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Images [B, 1, 32, 32] in [-1, 1] -> latents [B, 4, 8, 8]: the posterior mean times ``scale``."""
    return vae.encode(images).latent_dist.mean * scale


def decode(vae, latents: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Latents [B, 4, 8, 8] (scaled by ``scale``) -> images [B, 1, 32, 32] (not clamped)."""
    return vae.decode(latents / scale).sample
