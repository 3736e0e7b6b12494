"""The latent diffusion model: ``fmnist-vae`` (a tiny KL autoencoder, :mod:`diffbook.nets.autoencoder`) and
``fmnist-ldm`` (a class-conditional eps-prediction DDPM in its latent space, Rombach et al. 2022).

``fmnist-vae`` minimises the reconstruction error plus a small KL term (Kingma & Welling 2014's regulariser with a
weight ``kl_weight``, as in latent diffusion); its card records the latent ``scale`` (1 / the standard deviation of
the latents of 2,000 training images) and the reconstruction error on the first 1,000 test images.
``fmnist-ldm`` trains the loss of Eq. (ddpm-simple-loss) on ``scale * encode(x0)``, the autoencoder frozen and
encoding each batch on the fly, with the labels dropped to the null class 10 as for ``fmnist-ddpm`` (so CFG works).

``LATENT_CONFIGS`` and ``LATENT_OBJECTIVES`` are what the lead developer registers in :mod:`diffbook.train.recipes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..losses import ddpm_eps_loss
from ..nets.autoencoder import VAE_CONFIG, VAE_TINY, decode, encode, make_autoencoder
from ..nets.unet import make_unet
from ..schedules import betas_to_alpha_bar, linear_betas
from ..zoo.latent import load_autoencoder
from .diffusion import DiffusionObjective
from .objective import Objective
from .steps import set_lr, warmup_factor

__all__ = ["VAEObjective", "LatentDDPMObjective", "LATENT_CONFIGS", "LATENT_OBJECTIVES", "LDM_UNET", "PIXEL_TWIN_UNET"]

#: The latent U-Net: 8x8x4 latents, two levels, attention at 4x4 (about 1.0M parameters, fp16 2 MB).
LDM_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                norm_num_groups=8, num_class_embeds=11)
LDM_TINY = dict(LDM_UNET, block_out_channels=(8, 16), norm_num_groups=4)
#: The same U-Net on 32x32 pixels (attention at 16x16): the pixel-space twin that ``fmnist-ddpm``'s ``pixel-twin``
#: config trains on the CPU for comparison (chapter 5).
PIXEL_TWIN_UNET = dict(LDM_UNET, sample_size=32, in_channels=1, out_channels=1)

LATENT_CONFIGS = {
    "fmnist-vae": {
        "release": dict(vae=VAE_CONFIG, batch=256, lr=1e-3, warmup=100, steps=4000, time_budget_s=120,
                        kl_weight=1e-6, ckpt_every=500, seed=31),
        # about 14 minutes on one CPU thread (0.55 s per step)
        "cpu": dict(vae=VAE_CONFIG, batch=32, lr=2e-3, warmup=50, steps=1500, time_budget_s=None, kl_weight=1e-6,
                    ckpt_every=100, seed=31),
        "smoke": dict(vae=VAE_TINY, batch=8, lr=1e-3, warmup=2, steps=4, time_budget_s=None, kl_weight=1e-6,
                      ckpt_every=2, seed=31),
    },
    "fmnist-ldm": {
        # vae_root None = the shipped zoo; set it to the folder a fresh fmnist-vae was trained into
        "release": dict(unet=LDM_UNET, vae="fmnist-vae", vae_root=None, batch=1024, lr=5e-4, warmup=200,
                        steps=6000, time_budget_s=150, ema_decay=0.9995, label_drop=0.1, T=1000, ckpt_every=500,
                        seed=32),
        # 37 minutes on one CPU thread, beside the pixel twin (0.35 s per step, the frozen encoder included)
        "cpu": dict(unet=LDM_UNET, vae="fmnist-vae", vae_root=None, batch=64, lr=1e-3, warmup=100, steps=6400,
                    time_budget_s=None, ema_decay=0.999, label_drop=0.1, T=1000, ckpt_every=200, seed=32),
        "smoke": dict(unet=LDM_TINY, vae="fmnist-vae", vae_root=None, batch=4, lr=1e-3, warmup=2, steps=4,
                      time_budget_s=None, ema_decay=0.9, label_drop=0.1, T=1000, ckpt_every=2, seed=32),
    },
}


class VAEObjective(Objective):
    """Reconstruction (mean squared error per pixel) + kl_weight * KL(q(z | x) || N(0, I)) per image."""

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        self.data = data
        net = make_autoencoder(**cfg["vae"])
        opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=0.0)
        self.net, self.opt = acc.prepare(net, opt)
        self.modules, self.optimizers, self.plan = {"net": self.net}, {"opt": self.opt}, cfg["steps"]

    def train_step(self, step, x0, labels, g):
        lr = set_lr(self.opt, self.cfg["lr"] * warmup_factor(step, self.cfg["warmup"]))
        with self.acc.autocast():
            post = self.acc.unwrap_model(self.net).encode(x0).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g, device=x0.device)
            rec = self.acc.unwrap_model(self.net).decode(z).sample
            loss_rec = F.mse_loss(rec.float(), x0.float())
            kl = post.kl().mean()
            loss = loss_rec + self.cfg["kl_weight"] * kl
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt.step()
        return dict(loss=loss.detach(), loss_rec=loss_rec.detach(), kl=kl.detach(), lr=lr)

    @torch.no_grad()
    def outputs(self, step, run):
        from ..data.fashion import load_fashion_mnist

        vae = self.acc.unwrap_model(self.net).eval()
        dev = self.acc.device
        lat = torch.cat([encode(vae, self.data[i:i + 500]) for i in range(0, 2000, 500)])
        scale = float(1 / lat.std())
        test, _ = load_fashion_mnist("test")
        rec = torch.cat([decode(vae, encode(vae, test[i:i + 500].to(dev))) for i in range(0, 1000, 500)]).cpu()
        mse = F.mse_loss(rec.clamp(-1, 1), test[:1000]).item()
        cfg = self.cfg
        card = run.card(step, sum(p.numel() for p in vae.parameters()), arch="autoencoder-kl", config=cfg["vae"],
                        parameterisation="autoencoder", scale=round(scale, 6), latent_shape=list(lat.shape[1:]),
                        kl_weight=cfg["kl_weight"], lr=cfg["lr"],
                        evaluation=dict(test_mse_first_1000=round(mse, 6),
                                        what="mean squared error per pixel of clamped reconstructions, [-1, 1] scale"))
        return [(self.name, vae.state_dict(), card)]


class LatentDDPMObjective(DiffusionObjective):
    """Class-conditional eps-prediction DDPM on ``scale * encode(x0)`` of a frozen ``fmnist-vae``."""

    def build(self, data):
        cfg = self.cfg
        self.vae, vae_card = load_autoencoder(cfg["vae"], cfg["vae_root"])
        self.vae = self.vae.to(self.acc.device)
        self.scale = vae_card["scale"]
        self.net = make_unet(**cfg["unet"])
        self.alpha_bar = betas_to_alpha_bar(linear_betas(cfg["T"])).float()
        self.card = dict(arch="unet2d", config=cfg["unet"], parameterisation="eps", schedule="linear", T=cfg["T"],
                         beta_start=1e-4, beta_end=0.02, null_class=10, label_drop=cfg["label_drop"],
                         latent=dict(autoencoder_name=cfg["vae"], scale=self.scale, autoencoder_sha256=None))

    def loss(self, net, x0, y, g):
        with torch.no_grad():
            z0 = encode(self.vae, x0, self.scale)  # (B, 4, 8, 8)
        drop = torch.rand(y.shape, generator=g, device=y.device) < self.cfg["label_drop"]
        y = torch.where(drop, torch.full_like(y, 10), y)
        return ddpm_eps_loss(net, z0, self.alpha_bar.to(x0.device), generator=g, class_labels=y)

    def outputs(self, step, run):
        from ..zoo.registry import read_registry

        reg = read_registry(self.cfg["vae_root"]).get(self.cfg["vae"], {})
        self.card["latent"]["autoencoder_sha256"] = reg.get("sha256")
        return super().outputs(step, run)


LATENT_OBJECTIVES = {"fmnist-vae": VAEObjective, "fmnist-ldm": LatentDDPMObjective}
