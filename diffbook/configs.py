"""Training configurations: a ``smoke`` config (CPU, seconds; run in CI) and a ``release`` config (GPU, minutes).

Each model's config is a plain dict; ``python -m diffbook train MODEL --config NAME`` looks it up here.
"""

from __future__ import annotations

import copy

# A ~3.7M-parameter UNet for 32x32 Fashion-MNIST (diffusers UNet2DModel), and a smaller one for smoke runs.
UNET_DDPM = dict(block_out_channels=(32, 64, 128), layers_per_block=2, num_class_embeds=11)
UNET_NCSN = dict(block_out_channels=(32, 64, 96), layers_per_block=2)
UNET_TINY = dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4)

CONFIGS: dict[str, dict[str, dict]] = {
    "fmnist-ddpm": {
        "release": dict(unet=UNET_DDPM, batch=1024, lr=5e-4, warmup=200, steps=6000, time_budget_s=150,
                        ema_decay=0.9995, label_drop=0.1, T=1000, ckpt_every=500, seed=0),
        "smoke": dict(unet={**UNET_TINY, "num_class_embeds": 11}, batch=16, lr=1e-3, warmup=2, steps=6,
                      time_budget_s=None, ema_decay=0.9, label_drop=0.1, T=1000, ckpt_every=2, seed=0),
    },
    "fmnist-ncsn": {
        "release": dict(unet=UNET_NCSN, batch=1024, lr=5e-4, warmup=200, steps=6000, time_budget_s=100,
                        ema_decay=0.9995, sigma_min=0.01, ckpt_every=500, seed=1),
        "smoke": dict(unet=UNET_TINY, batch=16, lr=1e-3, warmup=2, steps=6, time_budget_s=None, ema_decay=0.9,
                      sigma_min=0.01, ckpt_every=2, seed=1),
    },
    "fmnist-gan": {
        "release": dict(nz=64, ngf=64, ndf=64, batch=256, lr=2e-4, betas=(0.5, 0.999), steps=20000,
                        time_budget_s=45, ckpt_every=2000, seed=2, ema_decay=None),
        "smoke": dict(nz=16, ngf=8, ndf=8, batch=16, lr=2e-4, betas=(0.5, 0.999), steps=6, time_budget_s=None,
                      ckpt_every=2, seed=2, ema_decay=None),
    },
}


def get_config(model: str, name: str) -> dict:
    """Return a copy of the config ``name`` ("smoke" or "release") of ``model``; one clear error otherwise."""
    if model not in CONFIGS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(CONFIGS)}.")
    if name not in CONFIGS[model]:
        raise ValueError(f"unknown config {name!r} for {model}; choose one of: {', '.join(CONFIGS[model])}.")
    return copy.deepcopy(CONFIGS[model][name])
