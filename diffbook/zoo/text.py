"""The models of the spelling experiment as objects: a text-to-image model (``text-token``, ``text-char``) with
``.sample(prompts)``, and the OCR model ``text-ocr`` with ``.read(images)``.

``load_text_model(name, root)`` loads either (SHA-256 checked, like every model of the zoo); ``diffbook.load``
returns the same objects for cards with ``arch`` "text-unet" or "ocr".
"""

from __future__ import annotations

import torch

from ..denoisers import from_eps_model
from ..guidance import cfg
from ..samplers import SAMPLERS
from ..schedules import alpha_bar_to_sigma, betas_to_alpha_bar, karras_sigmas, linear_betas, vp_prior_std
from .registry import ZooError, build, load_state

__all__ = ["TextToImageModel", "OCRModel", "load_text_model", "build_text_network"]


def build_text_network(card: dict) -> torch.nn.Module:
    """The untrained network of a text model's card (``arch`` "text-unet" or "ocr")."""
    if card.get("arch") not in ("text-unet", "ocr"):
        raise ZooError(f"{card.get('name')!r} is not a model of the spelling experiment (arch {card.get('arch')!r}).")
    return build(card)


class TextToImageModel:
    """A text-conditioned DDPM of 16x48 word images: ``.denoiser(x, sigma, tokens=...)``, ``.tokenize(prompts)``
    and ``.sample(prompts, ...)``. The null condition of guidance is the empty prompt."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        self.name, self.net, self.card = name, net, card
        alpha_bar = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        sig = alpha_bar_to_sigma(alpha_bar)
        self.denoiser = from_eps_model(net, alpha_bar)
        self.sigma_min, self.sigma_max = float(sig[0]), float(sig[-1])
        self.prior_std = vp_prior_std(self.sigma_max)
        self.encoder = net.encoder
        self.image_shape = (1, *net.config["sample_size"])

    def tokenize(self, prompts) -> torch.Tensor:
        """Prompts -> the id batch [B, max_len] the denoiser takes as ``tokens``."""
        return self.net.tokenize(list(prompts))

    @torch.no_grad()
    def sample(self, prompts, *, guidance: float = 0.0, steps: int = 10, sampler: str = "dpmpp_2m",
               seed: int = 0, noise: torch.Tensor | None = None, batch: int = 100) -> torch.Tensor:
        """One image per prompt [B, 1, 16, 48] in [-1, 1]: ``sampler`` (default DPM-Solver++(2M)) on ``steps``
        Karras levels, classifier-free guidance of weight ``guidance`` against the empty prompt, noise from
        ``seed`` (or given)."""
        prompts = list(prompts)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
        if noise is None:
            noise = torch.randn(len(prompts), *self.image_shape, generator=torch.Generator().manual_seed(seed))
        if noise.shape[0] != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but noise for {noise.shape[0]} images.")
        tokens = self.tokenize(prompts)  # checks every prompt first
        sigmas = karras_sigmas(self.sigma_min, self.sigma_max, steps).float()
        out = []
        for i in range(0, len(prompts), batch):
            tok = tokens[i:i + batch]
            d = self.denoiser
            if guidance:
                d = cfg(d, guidance, {"tokens": self.tokenize([""] * tok.shape[0])})
            x = noise[i:i + batch] * self.prior_std
            out.append(SAMPLERS[sampler](d, x, sigmas, cond={"tokens": tok}).clamp(-1, 1))
        return torch.cat(out)


class OCRModel:
    """The OCR judge: ``.read(images) -> list of words`` and ``.slots(images) -> [N, 4]`` class indices."""

    def __init__(self, name: str, net: torch.nn.Module, card: dict):
        self.name, self.net, self.card = name, net, card

    def read(self, images: torch.Tensor) -> list[str]:
        from ..nets.ocr import read

        return read(self.net, images)

    def slots(self, images: torch.Tensor) -> torch.Tensor:
        from ..nets.ocr import read_slots

        return read_slots(self.net, images)


def load_text_model(name: str, root=None, device=None):
    """Load ``text-token``, ``text-char`` or ``text-ocr`` from a zoo folder (default: the shipped one)."""
    state, card = load_state(name, root)
    net = build_text_network(card)
    net.load_state_dict(state)
    net = net.to(device or "cpu").eval()
    return (OCRModel if card["arch"] == "ocr" else TextToImageModel)(name, net, card)
