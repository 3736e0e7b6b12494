"""Each model's training recipe: its objective (what it trains, :mod:`diffbook.train.objective`) and its configs, a
``smoke`` config (CPU, seconds; run in CI) and a ``release`` config (GPU, minutes).

Each config is a plain dict; ``python -m diffbook train MODEL --config NAME`` looks both up here, and
:func:`diffbook.train.loop.train` runs them.
"""

from __future__ import annotations

import copy

from .diffusion import DDPMObjective, NCSNObjective
from .distill import DistillObjective
from .flow import FLOW_CONFIGS, FlowObjective
from .gan import GANObjective
from .latent import LATENT_CONFIGS, LATENT_OBJECTIVES, PIXEL_TWIN_UNET
from .objective import Objective
from .ocr import OCR_CONFIGS, OCRObjective
from .text2img import TEXT_CONFIGS, TextDiffusionObjective

# A ~3.7M-parameter UNet for 32x32 Fashion-MNIST (diffusers UNet2DModel), and a smaller one for smoke runs.
UNET_DDPM = dict(block_out_channels=(32, 64, 128), layers_per_block=2, num_class_embeds=11)
UNET_NCSN = dict(block_out_channels=(32, 64, 96), layers_per_block=2)
UNET_TINY = dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4)

CONFIGS: dict[str, dict[str, dict]] = {
    "fmnist-ddpm": {
        # compile: torch.compile the U-Net for training (diffbook.train.diffusion.compiled_forward; eager if it fails).
        "release": dict(unet=UNET_DDPM, batch=1024, lr=5e-4, warmup=200, steps=6000, time_budget_s=150,
                        ema_decay=0.9995, label_drop=0.1, T=1000, ckpt_every=500, seed=0, compile=True),
        "smoke": dict(unet={**UNET_TINY, "num_class_embeds": 11}, batch=16, lr=1e-3, warmup=2, steps=6,
                      time_budget_s=None, ema_decay=0.9, label_drop=0.1, T=1000, ckpt_every=2, seed=0),
        # The latent model's U-Net on pixels, on the CPU with a 45-minute budget (chapter 5's pixels-vs-latents
        # comparison; not shipped). Its speed over steps 10-60 planned 394 steps, which took 36 minutes.
        "pixel-twin": dict(unet=PIXEL_TWIN_UNET, batch=64, lr=1e-3, warmup=100, steps=100000, time_budget_s=2700,
                           ema_decay=0.999, label_drop=0.1, T=1000, ckpt_every=50, seed=33),
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
    # Progressive distillation of fmnist-ddpm (diffbook.distill, diffbook.train.distill): rounds halve the DDIM
    # steps from start_steps to end_steps with steps_per_round optimiser steps each (an int, or one per round); the
    # round-1 teacher is guided with weight guidance_w, and with teacher_clip its guided x0_hat is clamped to [-1, 1]
    # (the repair of chapter 5). teacher_root None = the shipped zoo. The students of the rounds in keep_rounds are
    # also written, as fmnist-fast-{N}step. Release: 6 rounds 64 -> 1 at batch 512; round 1
    # gets more steps because it also turns the copied eps-network into a v-network. Estimated H100 time, from the
    # teacher's 8,400 img/s (fwd+bwd) in bf16: round 1 (guided: 4 teacher forward passes + 1 student fwd/bwd per
    # image) ~0.14 s/step, later rounds ~0.10 s/step: ~125 s of steps + ~10 s start-up; the budget trims every round.
    "fmnist-fast": {
        "release": dict(teacher="fmnist-ddpm", teacher_root=None, start_steps=64, end_steps=1,
                        steps_per_round=(300, 160, 160, 160, 160, 160), batch=512, lr=2e-4, warmup=20,
                        ema_decay=0.995, guidance_w=1.0, teacher_clip=True, label_drop=0.1, keep_rounds=(8, 4, 2),
                        time_budget_s=150, ckpt_every=100, seed=3),
        "smoke": dict(teacher="fmnist-ddpm", teacher_root=None, start_steps=8, end_steps=1, steps_per_round=3,
                      batch=2, lr=1e-4, warmup=1, ema_decay=0.9, guidance_w=1.0, teacher_clip=True,
                      label_drop=0.1, keep_rounds=(4, 2), time_budget_s=None, ckpt_every=2, seed=3),
    },
    # A rectified flow with fmnist-ddpm's U-Net and budget (diffbook.flow, diffbook.train.flow).
    **FLOW_CONFIGS,
    # The spelling experiment (diffbook.train.text2img, diffbook.train.ocr): two text-to-image models that differ
    # only in the text encoder (CLIP BPE tokens or characters), and the OCR model that judges their spelling.
    **TEXT_CONFIGS,
    **OCR_CONFIGS,
    # The latent diffusion model (diffbook.train.latent): a tiny AutoencoderKL and a DDPM in its 4x8x8 latents.
    **LATENT_CONFIGS,
}


#: What each model trains.
OBJECTIVES: dict[str, type[Objective]] = {
    "fmnist-ddpm": DDPMObjective,
    "fmnist-ncsn": NCSNObjective,
    "fmnist-gan": GANObjective,
    "fmnist-fast": DistillObjective,
    "fmnist-flow": FlowObjective,
    "text-token": TextDiffusionObjective,
    "text-char": TextDiffusionObjective,
    "text-ocr": OCRObjective,
    **LATENT_OBJECTIVES,
}


def objective_class(model: str) -> type[Objective]:
    """The objective that trains ``model``; one clear error for an unknown name."""
    if model not in OBJECTIVES:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(OBJECTIVES)}.")
    return OBJECTIVES[model]


def get_config(model: str, name: str) -> dict:
    """Return a copy of the config ``name`` ("smoke" or "release") of ``model``; one clear error otherwise."""
    if model not in CONFIGS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(CONFIGS)}.")
    if name not in CONFIGS[model]:
        raise ValueError(f"unknown config {name!r} for {model}; choose one of: {', '.join(CONFIGS[model])}.")
    return copy.deepcopy(CONFIGS[model][name])
