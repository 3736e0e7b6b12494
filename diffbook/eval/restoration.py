"""Measuring restorations: PSNR and SSIM, the simple baselines, and one function that runs any method of
:mod:`diffbook.inverse` with a shipped model on a batch of measurements, seeded per chunk of images so that any
prefix of a sweep can be re-run alone and gives the same images.

Used by the sweep ``python -m diffbook.eval.applications`` and by the chapter on applications to re-check it.
"""

from __future__ import annotations

import base64

import torch
import torch.nn.functional as F

from ..checks import check_tensor
from ..denoisers import clip_denoiser
from ..inverse import (Identity, Inpaint, Operator, pigdm_denoiser, projection_denoiser,
                       sample_replacement, tikhonov)
from ..samplers import sample_ddpm_ancestral
from ..zoo.model import DiffusionModel

__all__ = ["encode_images", "decode_images", "psnr", "ssim", "bicubic", "mean_fill", "METHODS", "BASELINES", "restore", "nfe_of", "CHUNK",
           "chunk_generator"]

CHUNK = 4  # images per seeded chunk: image k of a sweep gets the noise of chunk k // CHUNK, whatever the batch


def encode_images(x: torch.Tensor) -> str:
    """Images [N, 1, H, W] in [-1, 1] as base64 text of their 8-bit grey levels (for the results files)."""
    q = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return f"{tuple(q.shape)}:" + base64.b64encode(q.numpy().tobytes()).decode("ascii")


def decode_images(text: str) -> torch.Tensor:
    """The images of :func:`encode_images`, [N, 1, H, W] in [-1, 1] (to within 1/255)."""
    shape, data = text.split(":", 1)
    shape = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    q = torch.frombuffer(bytearray(base64.b64decode(data)), dtype=torch.uint8).reshape(shape)
    return q.float() / 127.5 - 1


def _pair(x, ref):
    check_tensor("x", x)
    check_tensor("ref", ref)
    if x.shape != ref.shape or x.dim() != 4:
        raise ValueError(f"x and ref must be batches of images of one shape [B, C, H, W], got {tuple(x.shape)} "
                         f"and {tuple(ref.shape)}.")
    return x.double(), ref.double()


def psnr(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 2.0):
    """Peak signal-to-noise ratio per image [B] in dB: 10 log10(range^2 / MSE), over the pixels where ``mask`` is
    True (all by default). Images in [-1, 1] have range 2."""
    x, ref = _pair(x, ref)
    err = (x - ref) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.to(err.dtype).expand_as(err)
        mse = (err * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0, window: int = 7, std: float = 1.5):
    """Structural similarity per image [B] (Wang, Bovik, Sheikh and Simoncelli 2004): local means, variances and
    covariance under a Gaussian window (``window`` pixels, ``std``), constants K1 = 0.01, K2 = 0.03, averaged over
    the valid positions. 1 for identical images."""
    x, ref = _pair(x, ref)
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-r**2 / (2 * std**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None].repeat(x.shape[1], 1, 1, 1)

    def blur(v):
        return F.conv2d(v, w, groups=x.shape[1])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(ref)
    vx, vy, cxy = blur(x * x) - mx**2, blur(ref * ref) - my**2, blur(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def bicubic(y: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling by ``factor`` (the super-resolution baseline), clamped to [-1, 1]."""
    return F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def mean_fill(y: torch.Tensor, op: Inpaint, fill: torch.Tensor) -> torch.Tensor:
    """The inpainting baseline: observed pixels kept, missing ones set to ``fill`` (e.g. the training images' mean)."""
    m = op.mask.to(y.dtype)
    return m * y + (1 - m) * fill.to(y.dtype)


def _tikhonov_baseline(op, y, **kw):
    return tikhonov(op, y, kw.get("lam", 0.05)).clamp(-1, 1)


#: Methods that need no model: name -> function(op, y, **options).
BASELINES = {
    "bicubic": lambda op, y, **kw: bicubic(y, op.factor),
    "mean fill": lambda op, y, **kw: mean_fill(y, op, kw["fill"]),
    "Tikhonov": _tikhonov_baseline,
}
#: The posterior-sampling methods that :func:`restore` runs with a diffusion model.
METHODS = ("replacement", "RePaint", "projection", "PiGDM", "Tweedie", "posterior from y")


def chunk_generator(seed: int, chunk: int) -> torch.Generator:
    """The generator of chunk ``chunk`` of a sweep with seed ``seed`` (every chunk has its own stream)."""
    return torch.Generator().manual_seed(1_000_003 * int(seed) + int(chunk))


def _levels(model: DiffusionModel, steps: int, below: float | None = None) -> torch.Tensor:
    """DDPM's own timesteps ("trailing" spacing), or those below a level (then at least 2 of them)."""
    sig = model.sigmas("ancestral", steps, schedule="ddpm", spacing="trailing").float()
    if below is None:
        return sig
    kept = sig[sig < below]
    return torch.cat([torch.tensor([below], dtype=sig.dtype), kept])


def _run_chunk(model, op, y, method, g, *, steps, clip, resample, noise_std, label):
    n = y.shape[0]
    d = clip_denoiser(model.denoiser) if clip else model.denoiser
    cond = {"class_labels": torch.full((n,), model.null_class if label is None else label, dtype=torch.long)}
    if method == "Tweedie":  # one call: the posterior mean of a noisy image is D(y; sigma_y)
        with torch.no_grad():
            return d(y, torch.full((n,), noise_std), **cond)
    if method == "posterior from y":  # y = x0 + sigma_y n is already a noisy image at level sigma_y
        return sample_ddpm_ancestral(d, y, _levels(model, steps, below=noise_std), generator=g, cond=cond)
    sigmas = _levels(model, steps)
    x = torch.randn(n, *model.image_shape, generator=g) * model.prior_std
    if method in ("replacement", "RePaint"):
        return sample_replacement(d, x, sigmas, op, y, resample=resample if method == "RePaint" else 1,
                                  generator=g, cond=cond)
    if method == "projection":
        return sample_ddpm_ancestral(projection_denoiser(d, op, y), x, sigmas, generator=g, cond=cond)
    if method == "PiGDM":
        return sample_ddpm_ancestral(pigdm_denoiser(d, op, y, noise_std=noise_std), x, sigmas, generator=g,
                                     cond=cond)
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)} or a baseline "
                     f"({', '.join(BASELINES)}).")


def restore(model: DiffusionModel, op: Operator, y: torch.Tensor, method: str, *, steps: int = 20, seed: int = 0,
            clip: bool = True, resample: int = 2, noise_std: float = 0.0, label: int | None = None,
            first_chunk: int = 0, **baseline_options) -> torch.Tensor:
    """Restore images from measurements ``y`` (a batch) with ``method``, in [-1, 1].

    Methods: "replacement" (Eq. (inv-replacement); ILVR for block averaging), "RePaint" (the same with
    ``resample`` passes per step on ``steps // resample`` steps, so both make about ``steps`` network calls),
    "projection" (Eq. (inv-projection)), "PiGDM" (Eq. (inv-pigdm)), and for denoising "Tweedie" (one call,
    D(y; noise_std)) and "posterior from y" (ancestral sampling started at sigma = noise_std from y itself); or a
    baseline of :data:`BASELINES`. Sampling uses DDPM's own timesteps ("trailing"), x0_hat clamped to [-1, 1]
    when ``clip``, the null class unless ``label`` is given; images are processed in chunks of :data:`CHUNK`, chunk
    k (counted from ``first_chunk``) with :func:`chunk_generator` (seed, k).
    """
    if method in BASELINES:
        return BASELINES[method](op, y, **baseline_options)
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a diffusion model from diffbook.load, got {type(model).__name__}.")
    if method in ("Tweedie", "posterior from y") and (not isinstance(op, Identity) or noise_std <= 0):
        raise ValueError(f"{method!r} is for denoising: the identity operator with noise_std > 0.")
    if method == "RePaint":
        steps = max(1, steps // resample)
    out = []
    for k, i in enumerate(range(0, y.shape[0], CHUNK)):
        g = chunk_generator(seed, first_chunk + k)
        out.append(_run_chunk(model, op, y[i:i + CHUNK], method, g, steps=steps, clip=clip, resample=resample,
                              noise_std=noise_std, label=label))
    return torch.cat(out).clamp(-1, 1)


def nfe_of(method: str, steps: int, resample: int = 2) -> int:
    """Network calls per image of a method (PiGDM adds a backward pass through the network to each call)."""
    if method in BASELINES:
        return 0
    if method == "Tweedie":
        return 1
    if method == "RePaint":
        n = max(1, steps // resample)
        return (n - 1) * resample + 1
    return steps

