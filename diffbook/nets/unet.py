"""The image network of the book: a diffusers ``UNet2DModel`` (Ronneberger et al. 2015; Ho et al. 2020's variant)."""

from __future__ import annotations

from torch import nn

UNET_SMALL = dict(
    sample_size=32,
    in_channels=1,
    out_channels=1,
    layers_per_block=2,
    block_out_channels=(32, 64, 128),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)


def make_unet(**config):
    """Build a diffusers ``UNet2DModel`` from a config dict (defaults: :data:`UNET_SMALL`).

    Pass ``num_class_embeds=11`` for 10 classes plus a null class used by classifier-free guidance.
    """
    from diffusers import UNet2DModel

    cfg = {**UNET_SMALL, **config}
    for k in ("block_out_channels", "down_block_types", "up_block_types"):
        cfg[k] = tuple(cfg[k])
    return UNet2DModel(**cfg)


def n_params(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
