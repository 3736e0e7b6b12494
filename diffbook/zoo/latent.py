"""The latent diffusion model as an object: ``fmnist-ldm`` samples 4x8x8 latents with any sampler of
:mod:`diffbook.samplers` (classifier-free guidance as for ``fmnist-ddpm``) and decodes them with ``fmnist-vae``.

``load_latent_model(root)`` (or ``diffbook.load("fmnist-ldm")``) loads both (SHA-256 checked) and checks that the
autoencoder is the one the diffusion model was trained with (its card records the autoencoder's hash);
``diffbook.load("fmnist-vae")`` gives the autoencoder alone as an :class:`AutoencoderModel`.
"""

from __future__ import annotations

import torch

from ..denoisers import from_eps_model
from ..guidance import cfg
from ..samplers import SAMPLERS
from ..schedules import alpha_bar_to_sigma, betas_to_alpha_bar, karras_sigmas, linear_betas, vp_prior_std
from .registry import ZooError, load_network, read_registry

__all__ = ["LatentDiffusionModel", "AutoencoderModel", "latent_model", "load_latent_model", "load_autoencoder"]


def load_autoencoder(name: str = "fmnist-vae", root=None):
    """The autoencoder network (eval mode, frozen) and its card."""
    vae, card = load_network(name, root)
    return vae.requires_grad_(False), card


class _Shipped:
    """name, network (eval mode), card, device and ``.to(device)``, as every model object of the zoo has."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        self.name, self.net, self.card = name, net, card

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device):
        """Move the network(s) to ``device``; returns the model."""
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.net.parameters())
        return (f"<{type(self).__name__} {self.name!r}: {self.card.get('arch')}, {n / 1e6:.2f}M parameters, "
                f"trained on {self.card.get('device', '?')}>")


class AutoencoderModel(_Shipped):
    """The autoencoder ``fmnist-vae``: ``.encode(images)`` -> scaled latents, ``.decode(latents)`` -> images and
    ``.reconstruct(images)``; ``.scale`` is the card's latent scale (unit standard deviation on training images)."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        super().__init__(name, net, card)
        self.scale = float(card["scale"])

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, 32, 32] in [-1, 1] -> scaled latents [B, 4, 8, 8] (the encoder's posterior mean)."""
        from ..nets.autoencoder import encode

        return encode(self.net, images, self.scale)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, 4, 8, 8] -> images [B, 1, 32, 32] clamped to [-1, 1]."""
        from ..nets.autoencoder import decode

        return decode(self.net, latents, self.scale).clamp(-1, 1)

    def reconstruct(self, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
        """decode(encode(images)), in batches: what the latent model could give back at best."""
        return torch.cat([self.decode(self.encode(images[i:i + batch])) for i in range(0, images.shape[0], batch)])


class LatentDiffusionModel(_Shipped):
    """``.denoiser`` (in latent space), ``.encode(images)``, ``.decode(latents)`` and ``.sample(n, ...)``;
    ``.autoencoder`` is the :class:`AutoencoderModel` (``.vae`` and ``.vae_card`` its network and card)."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict, autoencoder: AutoencoderModel):
        super().__init__(name, net, card)
        self.autoencoder, self.vae, self.vae_card = autoencoder, autoencoder.net, autoencoder.card
        alpha_bar = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        sig = alpha_bar_to_sigma(alpha_bar)
        self.denoiser, self.scale = from_eps_model(net, alpha_bar), autoencoder.scale
        self.sigma_min, self.sigma_max = float(sig[0]), float(sig[-1])
        self.prior_std, self.null_class = vp_prior_std(self.sigma_max), int(card["null_class"])
        c = card["config"]
        self.latent_shape = (int(c["in_channels"]), int(c["sample_size"]), int(c["sample_size"]))

    def to(self, device):
        """Move the latent U-Net and the autoencoder to ``device``; returns the model."""
        self.net.to(device)
        self.autoencoder.to(device)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, 32, 32] in [-1, 1] -> scaled latents [B, 4, 8, 8] (:meth:`AutoencoderModel.encode`)."""
        return self.autoencoder.encode(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, 4, 8, 8] -> images clamped to [-1, 1] (:meth:`AutoencoderModel.decode`)."""
        return self.autoencoder.decode(latents)

    @torch.no_grad()
    def sample(self, n: int = 16, *, labels=None, guidance: float = 0.0, sampler: str = "dpmpp_2m", steps: int = 10,
               seed: int = 0, noise: torch.Tensor | None = None, batch: int = 500,
               return_latents: bool = False) -> torch.Tensor:
        """Draw n images (balanced labels 0..9 by default) via latents: ``sampler`` on ``steps`` Karras levels with
        CFG weight ``guidance``, then the decoder. With ``return_latents`` also the latents."""
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
        if noise is None:
            noise = torch.randn(n, *self.latent_shape, generator=torch.Generator().manual_seed(seed))
        dev = self.device
        noise = noise.to(dev)
        n = noise.shape[0]
        labels = torch.arange(n) % self.null_class if labels is None else torch.as_tensor(labels).expand(n)
        labels = labels.to(dev)
        sigmas = karras_sigmas(self.sigma_min, self.sigma_max, steps).float().to(dev)
        latents = []
        for i in range(0, n, batch):
            b = min(batch, n - i)
            d = self.denoiser
            if guidance:
                d = cfg(d, guidance, {"class_labels": torch.full((b,), self.null_class, device=dev)})
            x = noise[i:i + b] * self.prior_std
            latents.append(SAMPLERS[sampler](d, x, sigmas, cond={"class_labels": labels[i:i + b]}))
        z = torch.cat(latents)
        images = torch.cat([self.decode(z[i:i + batch]) for i in range(0, n, batch)])
        return (images, z) if return_latents else images


def latent_model(name: str, net: torch.nn.Module, card: dict, root=None, device=None) -> LatentDiffusionModel:
    """The latent diffusion model around its loaded U-Net ``net`` and ``card``, with the autoencoder the card names
    (from the same zoo folder), refusing an autoencoder other than the one it was trained with."""
    latent = card.get("latent")
    if not latent:
        raise ZooError(f"{name!r} is not a latent diffusion model (its card has no 'latent' entry).")
    vae_name = latent.get("autoencoder_name", "fmnist-vae")
    expected, actual = latent.get("autoencoder_sha256"), read_registry(root).get(vae_name, {}).get("sha256")
    if expected and actual != expected:
        raise ZooError(f"{name!r} was trained with the autoencoder of SHA-256 {expected[:12]}..., but the zoo's "
                       f"{vae_name} has {str(actual)[:12]}...; retrain one of them.")
    vae, vae_card = load_autoencoder(vae_name, root)
    autoencoder = AutoencoderModel(vae_name, vae, vae_card)
    return LatentDiffusionModel(name, net.eval(), card, autoencoder).to(device or "cpu")


def load_latent_model(name: str = "fmnist-ldm", root=None, device=None) -> LatentDiffusionModel:
    """Load the latent diffusion model and its autoencoder from a zoo folder (default: the shipped one)."""
    net, card = load_network(name, root)
    return latent_model(name, net, card, root, device)
