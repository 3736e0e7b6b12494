"""The flow-matching objective of ``fmnist-flow``: rectified flow (Liu et al. 2023; Lipman et al. 2023) on
Fashion-MNIST with the U-Net of ``fmnist-ddpm`` (the mathematics: :mod:`diffbook.flow`).

The network is a class-conditional diffusers ``UNet2DModel`` of the same size as ``fmnist-ddpm``'s, trained on the
flow-matching loss (Eq. (flow-loss)): z_t = (1 - t) x_0 + t n, target n - x_0, with the time given to the network as
1000 t (diffusers' convention for flow models, ``FlowMatchEulerDiscreteScheduler``'s timesteps) and t drawn
logit-normal (Esser et al. 2024) or uniform. Labels are dropped to the null class 10 with probability
``label_drop``, so one network also gives the unconditional model (classifier-free guidance). The denoiser of the
trained network is :func:`diffbook.flow.from_velocity_model` with ``time_scale=1000`` (card: ``parameterisation
"flow"``, ``time_scale``, ``t_min``, ``t_max``).

:data:`FLOW_CONFIGS` holds its ``smoke`` config (CPU, seconds; CI) and its ``release`` config (a GPU, minutes: the
same budget as fmnist-ddpm's). It is registered in :mod:`diffbook.train.recipes` as ``fmnist-flow``.
"""

from __future__ import annotations

import torch

from ..flow import flow_matching_loss, logit_normal_times
from ..nets.unet import make_unet
from .diffusion import DiffusionObjective

__all__ = ["FlowObjective", "FLOW_CONFIGS", "UNET_FLOW", "TIME_SCALE"]

#: The network's time input is TIME_SCALE * t (diffusers' flow models: timesteps 1000 t).
TIME_SCALE = 1000.0
#: The U-Net of fmnist-ddpm (3.7M parameters, 10 classes + the null class).
UNET_FLOW = dict(block_out_channels=(32, 64, 128), layers_per_block=2, num_class_embeds=11)
UNET_FLOW_TINY = dict(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4, num_class_embeds=11)

FLOW_CONFIGS: dict[str, dict[str, dict]] = {
    "fmnist-flow": {
        # the release run of fmnist-ddpm with the flow-matching loss: batch 1024, 6000 planned steps, 150 s budget
        "release": dict(unet=UNET_FLOW, batch=1024, lr=5e-4, warmup=200, steps=6000, time_budget_s=150,
                        ema_decay=0.9995, label_drop=0.1, t_sampling="logit_normal", t_min=1e-3, t_max=1.0,
                        ckpt_every=500, seed=4, compile=True),
        "smoke": dict(unet=UNET_FLOW_TINY, batch=16, lr=1e-3, warmup=2, steps=6, time_budget_s=None,
                      ema_decay=0.9, label_drop=0.1, t_sampling="logit_normal", t_min=1e-3, t_max=1.0,
                      ckpt_every=2, seed=4),
    },
}


class FlowObjective(DiffusionObjective):
    """A class-conditional rectified flow on a diffusers UNet: the velocity n - x_0 of the straight path, with
    labels dropped to the null class 10 with probability ``label_drop``."""

    def build(self, data):
        cfg = self.cfg
        if cfg["t_sampling"] not in ("logit_normal", "uniform"):
            raise ValueError(f"t_sampling must be 'logit_normal' or 'uniform', got {cfg['t_sampling']!r}.")
        self.net = make_unet(**cfg["unet"])
        self.card = dict(arch="unet2d", config=cfg["unet"], parameterisation="flow", time_scale=TIME_SCALE,
                         t_sampling=cfg["t_sampling"], t_min=cfg["t_min"], t_max=cfg["t_max"], null_class=10,
                         label_drop=cfg["label_drop"],
                         method="rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): "
                                "z_t = (1 - t) x_0 + t n, target n - x_0, network time input 1000 t")

    def loss(self, net, x0, y, g):
        drop = torch.rand(y.shape, generator=g, device=y.device) < self.cfg["label_drop"]
        y = torch.where(drop, torch.full_like(y, 10), y)
        if self.cfg["t_sampling"] == "logit_normal":
            t = logit_normal_times(x0.shape[0], g, device=x0.device)
        else:
            t = torch.rand(x0.shape[0], generator=g, device=x0.device)

        def velocity(z, t, **cond):
            return net(z, t * TIME_SCALE, **cond)

        return flow_matching_loss(velocity, x0, g, t=t.to(x0.dtype), class_labels=y)
