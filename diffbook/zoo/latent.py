"""The latent diffusion model as an object: ``fmnist-ldm`` samples 4x8x8 latents with any sampler of
:mod:`diffbook.samplers` (classifier-free guidance as for ``fmnist-ddpm``) and decodes them with ``fmnist-vae``.

``load_latent_model(root)`` loads both (SHA-256 checked) and checks that the autoencoder is the one the diffusion
model was trained with (its card records the autoencoder's hash).
"""

from __future__ import annotations

import torch

from ..denoisers import from_eps_model
from ..guidance import cfg
from ..samplers import SAMPLERS
from ..schedules import alpha_bar_to_sigma, betas_to_alpha_bar, karras_sigmas, linear_betas, vp_prior_std
from .registry import ZooError, load_state, read_registry

__all__ = ["LatentDiffusionModel", "load_latent_model", "load_autoencoder"]


def load_autoencoder(name: str = "fmnist-vae", root=None):
    """The autoencoder (eval mode) and its card."""
    from ..nets.autoencoder import make_autoencoder

    state, card = load_state(name, root)
    vae = make_autoencoder(**card["config"])
    vae.load_state_dict(state)
    return vae.eval().requires_grad_(False), card


class LatentDiffusionModel:
    """``.denoiser`` (in latent space), ``.encode(images)``, ``.decode(latents)`` and ``.sample(n, ...)``."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict, vae, vae_card: dict):
        self.name, self.net, self.card, self.vae, self.vae_card = name, net, card, vae, vae_card
        alpha_bar = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        sig = alpha_bar_to_sigma(alpha_bar)
        self.denoiser, self.scale = from_eps_model(net, alpha_bar), float(vae_card["scale"])
        self.sigma_min, self.sigma_max = float(sig[0]), float(sig[-1])
        self.prior_std, self.null_class = vp_prior_std(self.sigma_max), int(card["null_class"])
        c = card["config"]
        self.latent_shape = (int(c["in_channels"]), int(c["sample_size"]), int(c["sample_size"]))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 1, 32, 32] in [-1, 1] -> scaled latents [B, 4, 8, 8]."""
        from ..nets.autoencoder import encode

        return encode(self.vae, images, self.scale)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, 4, 8, 8] -> images [B, 1, 32, 32] clamped to [-1, 1]."""
        from ..nets.autoencoder import decode

        return decode(self.vae, latents, self.scale).clamp(-1, 1)

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
        n = noise.shape[0]
        labels = torch.arange(n) % self.null_class if labels is None else torch.as_tensor(labels).expand(n)
        sigmas = karras_sigmas(self.sigma_min, self.sigma_max, steps).float()
        latents = []
        for i in range(0, n, batch):
            b = min(batch, n - i)
            d = self.denoiser
            if guidance:
                d = cfg(d, guidance, {"class_labels": torch.full((b,), self.null_class)})
            x = noise[i:i + b] * self.prior_std
            latents.append(SAMPLERS[sampler](d, x, sigmas, cond={"class_labels": labels[i:i + b]}))
        z = torch.cat(latents)
        images = torch.cat([self.decode(z[i:i + batch]) for i in range(0, n, batch)])
        return (images, z) if return_latents else images


def load_latent_model(name: str = "fmnist-ldm", root=None) -> LatentDiffusionModel:
    """Load the latent diffusion model and its autoencoder from a zoo folder (default: the shipped one)."""
    from ..nets.unet import make_unet

    state, card = load_state(name, root)
    latent = card.get("latent")
    if not latent:
        raise ZooError(f"{name!r} is not a latent diffusion model (its card has no 'latent' entry).")
    vae_name = latent.get("autoencoder_name", "fmnist-vae")
    vae, vae_card = load_autoencoder(vae_name, root)
    expected, actual = latent.get("autoencoder_sha256"), read_registry(root).get(vae_name, {}).get("sha256")
    if expected and actual != expected:
        raise ZooError(f"{name!r} was trained with the autoencoder of SHA-256 {expected[:12]}..., but the zoo's "
                       f"{vae_name} has {str(actual)[:12]}...; retrain one of them.")
    net = make_unet(**card["config"])
    net.load_state_dict(state)
    return LatentDiffusionModel(name, net.eval(), card, vae, vae_card)
