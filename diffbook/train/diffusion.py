"""The diffusion objectives: ``fmnist-ddpm`` (eps-prediction DDPM, Eq. (ddpm-simple-loss)) and ``fmnist-ncsn``
(denoising score matching over NCSN's ladder of noise levels, Eq. (ncsn-loss)), with an EMA of the weights and optional ``torch.compile``.

Their configs are in :mod:`diffbook.train.recipes`; the loop that runs them is :func:`diffbook.train.loop.train`.
"""

from __future__ import annotations

import copy
import time

import torch

from ..losses import ddpm_eps_loss, dsm_loss
from ..nets.ncsn import NCSNUNet
from ..nets.unet import make_unet
from ..schedules import betas_to_alpha_bar, linear_betas, max_pairwise_distance, ncsnv2_sigmas
from .objective import Objective
from .provenance import sync
from .steps import optimiser_step, set_lr, warmup_factor

__all__ = ["DiffusionObjective", "DDPMObjective", "NCSNObjective", "compiled_forward"]


class DiffusionObjective(Objective):
    """One network, AdamW, a linear warm-up and an EMA; subclasses build ``self.net`` and define :meth:`loss`."""

    net: torch.nn.Module
    card: dict

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        self.data, self.labels = data, labels
        self.build(data)
        device = acc.device
        net = self.net.to(device)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0, fused=device.type == "cuda")
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.net, self.opt = acc.prepare(net, opt)
        self.forward = self.net
        self.modules, self.optimizers, self.plan = {"net": self.net, "ema": self.ema}, {"opt": self.opt}, cfg["steps"]
        self.compile_info = dict(compiled=False)

    def build(self, data: torch.Tensor) -> None:
        raise NotImplementedError

    def loss(self, net, x0: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def start(self, step, run):
        if self.cfg.get("compile"):
            per_proc = self.cfg["batch"] // self.acc.num_processes
            self.forward, self.compile_info = compiled_forward(self.net, self, self.data, self.labels, per_proc,
                                                               self.acc)
        run.extra.update(self.compile_info)

    def train_step(self, step, x0, labels, g):
        lr = set_lr(self.opt, self.cfg["lr"] * warmup_factor(step, self.cfg["warmup"]))
        with self.acc.autocast():
            loss = self.loss(self.forward, x0, labels, g)
        optimiser_step(self.acc, self.opt, loss, self.net, self.ema, min(self.cfg["ema_decay"], (1 + step) / (10 + step)))
        return dict(loss=loss.detach(), lr=lr)

    def eager_baseline(self, data, labels, batch: int = 256, steps: int = 30) -> float:
        """img/s of a plain eager fp32 loop (batch 256, unfused Adam) on a copy of the model."""
        device = self.acc.device
        net = copy.deepcopy(self.acc.unwrap_model(self.net)).to(device).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=False)
        g = torch.Generator(device=device).manual_seed(0)
        t0 = None
        for i in range(steps + 5):
            if i == 5:
                sync(device)
                t0 = time.perf_counter()
            idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
            loss = self.loss(net, data[idx], labels[idx], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(device)
        return steps * batch / (time.perf_counter() - t0)

    def outputs(self, step, run):
        c = self.cfg
        card = run.card(step, sum(p.numel() for p in self.ema.parameters()), **self.card, lr=c["lr"],
                        warmup=c["warmup"], ema_decay=c["ema_decay"])
        return [(self.name, self.ema.state_dict(), card)]


class DDPMObjective(DiffusionObjective):
    """A class-conditional eps-prediction DDPM on a diffusers UNet (Ho et al. 2020), labels dropped to the null
    class 10 with probability ``label_drop`` so that one network also gives the unconditional model (CFG)."""

    def build(self, data):
        cfg = self.cfg
        self.net = make_unet(**cfg["unet"])
        self.alpha_bar = betas_to_alpha_bar(linear_betas(cfg["T"])).float()
        self.card = dict(arch="unet2d", config=cfg["unet"], parameterisation="eps", schedule="linear", T=cfg["T"],
                         beta_start=1e-4, beta_end=0.02, null_class=10, label_drop=cfg["label_drop"])

    def loss(self, net, x0, y, g):
        drop = torch.rand(y.shape, generator=g, device=y.device) < self.cfg["label_drop"]
        y = torch.where(drop, torch.full_like(y, 10), y)
        return ddpm_eps_loss(net, x0, self.alpha_bar.to(x0.device), generator=g, class_labels=y)


class NCSNObjective(DiffusionObjective):
    """A noise-conditional score network on NCSNv2's ladder (Song & Ermon 2020): sigma_max the largest pairwise
    distance of 5,000 training images, the geometric ratio from Technique 2."""

    def build(self, data):
        cfg = self.cfg
        sigma_max = max_pairwise_distance(data[:5000])
        self.sigmas = ncsnv2_sigmas(sigma_max, cfg["sigma_min"], dim=data[0].numel()).float()
        self.net = NCSNUNet(cfg["unet"], cfg["sigma_min"], sigma_max)
        self.card = dict(arch="ncsn-unet", config=dict(unet_config=cfg["unet"], sigma_min=cfg["sigma_min"],
                                                       sigma_max=sigma_max),
                         parameterisation="score", n_sigmas=len(self.sigmas),
                         sigma_ladder="NCSNv2 (Song & Ermon 2020): sigma_max = largest pairwise distance of "
                                      "5,000 training images, geometric ratio from Technique 2")

    def loss(self, net, x0, y, g):
        return dsm_loss(net, x0, self.sigmas.to(x0.device), generator=g)


def compiled_forward(net, objective: DiffusionObjective, data, labels, batch: int, acc):
    """``torch.compile(net)`` for the training loss, compiled now on a throw-away batch; ``net`` if that fails.

    The compiled module shares ``net``'s parameters, so the optimiser, EMA and checkpoints see no difference.
    Compiling happens before the clock starts (its time goes to the card as ``compile_s``), with its own random
    generator and no optimiser step, so a compiled run draws the same batches and noise as an eager one. If the
    compiler is unavailable or fails, training goes on eagerly and the card says why (``compile_error``).
    """
    device = acc.device
    t = time.perf_counter()
    try:
        forward = torch.compile(net)
        g = torch.Generator(device=device).manual_seed(12345)
        idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
        x0 = data[idx].contiguous(memory_format=torch.channels_last) if device.type == "cuda" else data[idx]
        for _ in range(2):  # the second call checks that nothing recompiles on the next step
            with acc.autocast():
                loss = objective.loss(forward, x0, labels[idx], g)
            acc.backward(loss)
        for p in net.parameters():
            p.grad = None
        sync(device)
        return forward, dict(compiled=True, compile_s=round(time.perf_counter() - t, 1))
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager training
        for p in net.parameters():
            p.grad = None
        acc.print(f"torch.compile failed ({type(e).__name__}: {e}); training eagerly")
        return net, dict(compiled=False, compile_error=f"{type(e).__name__}: {str(e)[:300]}")
