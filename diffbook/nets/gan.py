"""A DCGAN (Radford et al. 2016) for 32x32 Fashion-MNIST: the GAN baseline of the "GANs vs diffusion" chapter."""

from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """G(z): z [B, nz] -> image [B, 1, 32, 32] in [-1, 1]; transposed convolutions 4 -> 8 -> 16 -> 32."""

    def __init__(self, nz: int = 64, ngf: int = 64):
        super().__init__()
        self.nz = nz
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.nz, 1, 1))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n images: one network evaluation per batch (the GAN's speed advantage)."""
        p = next(self.parameters())
        z = torch.randn(n, self.nz, generator=generator, device=p.device, dtype=p.dtype)
        return self(z)


class Discriminator(nn.Module):
    """D(x): image [B, 1, 32, 32] -> logit [B]; strided convolutions 32 -> 16 -> 8 -> 4 -> 1."""

    def __init__(self, ndf: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, 1, 4, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def init_weights(m: nn.Module) -> None:
    """DCGAN's initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_generator(config: dict) -> Generator:
    """The generator a model card describes."""
    return Generator(nz=config["nz"], ngf=config["ngf"])


def discriminator_loss(D, x_real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))): the discriminator's cross-entropy. Goodfellow et al. 2014, Eq. (1)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    real_logit, fake_logit = D(x_real), D(fake.detach())
    return bce(real_logit, torch.ones_like(real_logit)) + bce(fake_logit, torch.zeros_like(fake_logit))


def generator_loss(D, fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): the non-saturating generator loss of Goodfellow et al. 2014, Sec. 3."""
    logit = D(fake)
    return nn.functional.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
