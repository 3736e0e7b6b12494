"""The GAN objective of ``fmnist-gan``: a DCGAN trained by alternating one discriminator and one generator Adam step
per batch (Goodfellow et al. 2014, Alg. 1 with k = 1), the losses of Eqs. (gan-objective) and (gan-nonsaturating).

Both losses are logged every 50 steps: the GAN chapter plots them to show the adversarial game oscillating.
Its configs are in :mod:`diffbook.train.recipes`; the loop that runs it is :func:`diffbook.train.loop.train`.
"""

from __future__ import annotations

import torch

from ..nets.gan import Discriminator, Generator, discriminator_loss, generator_loss, init_weights
from .objective import Objective

__all__ = ["GANObjective"]


class GANObjective(Objective):
    """A DCGAN generator G and discriminator D, each with its own Adam."""

    def __init__(self, name, cfg, data, labels, acc):
        super().__init__(name, cfg, data, labels, acc)
        G, D = Generator(cfg["nz"], cfg["ngf"]), Discriminator(cfg["ndf"])
        G.apply(init_weights)
        D.apply(init_weights)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]))
        self.G, self.D, self.opt_g, self.opt_d = acc.prepare(G, D, opt_g, opt_d)
        self.nz = cfg["nz"]
        self.modules, self.optimizers = {"G": self.G, "D": self.D}, {"opt_g": self.opt_g, "opt_d": self.opt_d}
        self.plan = cfg["steps"]

    def train_step(self, step, x0, labels, g):
        acc = self.acc
        z = torch.randn(x0.shape[0], self.nz, generator=g, device=x0.device)
        with acc.autocast():
            fake = self.G(z)
            loss_d = discriminator_loss(self.D, x0, fake)  # fake is detached inside
        self.opt_d.zero_grad(set_to_none=True)
        acc.backward(loss_d)
        self.opt_d.step()
        with acc.autocast():
            loss_g = generator_loss(self.D, fake)
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        self.opt_g.step()
        return dict(loss_d=loss_d.detach(), loss_g=loss_g.detach(), lr=self.cfg["lr"])

    def outputs(self, step, run):
        G = self.acc.unwrap_model(self.G)
        c = self.cfg
        card = run.card(step, sum(p.numel() for p in G.parameters()), arch="dcgan",
                        config=dict(nz=c["nz"], ngf=c["ngf"]), parameterisation="generator", lr=c["lr"],
                        betas=list(c["betas"]))
        return [(self.name, G.state_dict(), card)]
