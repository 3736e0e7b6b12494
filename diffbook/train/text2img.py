"""The text-to-image objective of the spelling experiment: ``text-token`` and ``text-char``, two eps-prediction
DDPMs (Eq. (ddpm-simple-loss)) on rendered words that differ ONLY in the text encoder
(:class:`diffbook.nets.text_encoders.TextEncoder`, ``kind`` "token" or "char").

Both train on the same images (the ``train`` words of :func:`diffbook.data.words.word_sets`, each rendered once by
:func:`diffbook.data.text.render_word`), with the same U-Net, schedule, batches, noise, steps and seed; the prompt
is replaced by the empty prompt with probability ``prompt_drop`` (classifier-free guidance's null condition). The
loop hands every objective a Fashion-MNIST batch; this one ignores it and draws words with the loop's generator.

``TEXT_CONFIGS`` holds the configs the lead developer registers in :mod:`diffbook.train.recipes`; both models use
:class:`TextDiffusionObjective`.
"""

from __future__ import annotations

import copy

import torch

from ..data.text import render_words
from ..data.words import token_ids, word_sets
from ..losses import ddpm_eps_loss
from ..nets.text_encoders import TEXT_UNET, TEXT_UNET_TINY, TextUNet
from ..schedules import betas_to_alpha_bar, linear_betas
from .objective import Objective
from .steps import optimiser_step, set_lr, warmup_factor

__all__ = ["TextDiffusionObjective", "TEXT_CONFIGS", "CPU_UNET", "encoder_config", "drop_prompts"]

# The U-Net of the CPU runs: two levels (16x48 and 8x24), cross-attention at 8x24 only, no self-attention.
CPU_UNET = dict(sample_size=(16, 48), block_out_channels=(32, 64), layers_per_block=1,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8,
                only_cross_attention=True)
_ENCODER = dict(dim=64, layers=2, heads=4, max_len=6)


def _configs(kind: str) -> dict:
    common = dict(kind=kind, encoder=_ENCODER, word_seed=0, prompt_drop=0.1, T=1000)
    return {
        # GPU: the three-level U-Net with self- and cross-attention, ~40 passes over the 1,400 words per minute
        "release": dict(common, unet=TEXT_UNET, batch=256, lr=5e-4, warmup=200, steps=20000, time_budget_s=600,
                        ema_decay=0.999, ckpt_every=1000, seed=21),
        # what ran on the CPU for the shipped models: the CPU U-Net, batch 16 (same seed for both kinds)
        "cpu": dict(common, unet=CPU_UNET, batch=16, lr=1e-3, warmup=50, steps=1200, time_budget_s=None,
                    ema_decay=0.995, ckpt_every=100, seed=21),
        "smoke": dict(common, unet=TEXT_UNET_TINY, encoder=dict(_ENCODER, dim=16, layers=1), batch=4, lr=1e-3,
                      warmup=2, steps=4, time_budget_s=None, ema_decay=0.9, ckpt_every=2, seed=21),
    }


TEXT_CONFIGS = {"text-token": _configs("token"), "text-char": _configs("char")}


def encoder_config(cfg: dict) -> dict:
    """The text encoder's config of a training config (the token-level one lists its CLIP ids)."""
    enc = dict(cfg["encoder"], kind=cfg["kind"])
    if cfg["kind"] == "token":
        enc["token_ids"] = token_ids(word_sets(cfg["word_seed"]))
    return enc


def drop_prompts(tokens: torch.Tensor, null: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Replace each prompt [B, max_len] by the empty prompt ``null`` [1, max_len] with probability p (classifier-free
    guidance's condition dropout, Ho & Salimans 2022), with random numbers from ``g``."""
    drop = torch.rand(tokens.shape[:1], generator=g, device=g.device).to(tokens.device) < p
    return torch.where(drop[:, None], null.expand_as(tokens), tokens)


class TextDiffusionObjective(Objective):
    """eps-prediction DDPM of rendered words conditioned on their text, with prompt dropout and an EMA."""

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        self.words = word_sets(cfg["word_seed"])["train"]
        net = TextUNet(cfg["unet"], encoder_config(cfg))
        device = acc.device
        self.images = render_words(self.words).to(device)  # (N, 1, 16, 48)
        self.tokens = net.tokenize(self.words).to(device)  # (N, max_len)
        self.null = net.tokenize([""]).to(device)  # (1, max_len)
        self.alpha_bar = betas_to_alpha_bar(linear_betas(cfg["T"])).float().to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0)
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.net, self.opt = acc.prepare(net, opt)
        self.modules, self.optimizers, self.plan = {"net": self.net, "ema": self.ema}, {"opt": self.opt}, cfg["steps"]

    def train_step(self, step, x0, labels, g):
        cfg = self.cfg
        idx = torch.randint(0, len(self.words), (cfg["batch"],), generator=g, device=g.device).to(self.images.device)
        tokens = drop_prompts(self.tokens[idx], self.null, cfg["prompt_drop"], g)
        lr = set_lr(self.opt, cfg["lr"] * warmup_factor(step, cfg["warmup"]))
        with self.acc.autocast():
            loss = ddpm_eps_loss(self.net, self.images[idx], self.alpha_bar, generator=g, tokens=tokens)
        optimiser_step(self.acc, self.opt, loss, self.net, self.ema, min(cfg["ema_decay"], (1 + step) / (10 + step)))
        return dict(loss=loss.detach(), lr=lr)

    def outputs(self, step, run):
        cfg = self.cfg
        card = run.card(step, sum(p.numel() for p in self.ema.parameters()), arch="text-unet",
                        config=dict(unet=cfg["unet"], encoder=encoder_config(cfg)), parameterisation="eps",
                        schedule="linear", T=cfg["T"], beta_start=1e-4, beta_end=0.02, null_prompt="",
                        prompt_drop=cfg["prompt_drop"], lr=cfg["lr"], warmup=cfg["warmup"],
                        ema_decay=cfg["ema_decay"], word_seed=cfg["word_seed"],
                        n_encoder_params=sum(p.numel() for p in self.ema.encoder.parameters()),
                        train_config={k: v for k, v in cfg.items() if k not in ("unet", "encoder")})
        card["data"] = (f"{len(self.words)} words of 3-4 letters (diffbook.data.words.word_sets(seed="
                        f"{cfg['word_seed']})['train']), each rendered once in DejaVu Sans Mono, 16x48")
        return [(self.name, self.ema.state_dict(), card)]
