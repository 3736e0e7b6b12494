"""Measure generative models: sample N images, embed them with the shipped classifier, and report the Frechet
distance beside the real-vs-real floor at the same N, plus precision/recall, density/coverage and wall time.

Used by ``python -m diffbook zoo`` (GPU, N=10,000) and by the chapters (CPU, small N) to re-check the shipped results (:mod:`diffbook.results`).
"""

from __future__ import annotations

import time

import torch

from . import samplers as S
from .denoisers import clip_denoiser
from .guidance import cfg
from .metrics import density_coverage, frechet_distance, precision_recall
from .schedules import betas_to_alpha_bar, ddpm_sigmas, karras_sigmas, linear_betas, vp_prior_std

SAMPLERS = {
    "ancestral": S.sample_ddpm_ancestral,
    "ddim": S.sample_ddim,
    "euler": S.sample_euler,
    "heun": S.sample_heun,
    "dpmpp_2m": S.sample_dpmpp_2m,
    "euler_maruyama": S.sample_euler_maruyama,
    "pc": S.sample_pc,
    "annealed_langevin": S.sample_annealed_langevin,
}


def nfe_of(spec: dict) -> int:
    """Network evaluations per sample of a sampler spec (Heun: 2 per step but 1 on the last; PC: predictor +
    corrector; annealed Langevin: steps per level times levels, plus the final denoising step)."""
    n, kind = spec["steps"], spec["sampler"]
    if kind == "heun":
        return 2 * n - 1
    if kind == "pc":
        return n * (1 + spec.get("n_corrector", 1))
    if kind == "annealed_langevin":
        return n * spec.get("n_steps_each", 5) + 1
    return n


def sigmas_for(spec: dict, card: dict, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The noise levels of a sampler spec: ``schedule`` "karras" (rho=7) or "ddpm" (a DDPM's own timesteps with
    diffusers' ``spacing``), or "geometric" (NCSN's ladder, for annealed Langevin)."""
    from .schedules import append_zero, ve_geometric_sigmas

    sched = spec.get("schedule", "karras")
    if sched == "karras":
        return karras_sigmas(sigma_min, sigma_max, spec["steps"])
    if sched == "ddpm":
        ab = betas_to_alpha_bar(linear_betas(card["T"], card["beta_start"], card["beta_end"]))
        return ddpm_sigmas(ab, spec["steps"], spec.get("spacing", "trailing"))
    if sched == "geometric":
        return append_zero(ve_geometric_sigmas(sigma_min, sigma_max, spec["steps"]))
    raise ValueError(f"unknown schedule {sched!r}; use 'karras', 'ddpm' or 'geometric'.")


@torch.no_grad()
def sample_images(denoiser, card, spec: dict, n: int, *, sigma_min, sigma_max, prior_std, device, batch=2500,
                  seed=0, autocast=True) -> torch.Tensor:
    """Draw n images with a sampler spec; class-conditional models get balanced labels 0..9 (and CFG weight
    ``spec["w"]`` against the null class when given); ``prior_std`` is the std of x_T at ``sigma_max``, and a
    schedule that starts lower starts from its own first level's prior; ``spec["clip"]`` clamps x0_hat to [-1, 1]
    (:func:`diffbook.denoisers.clip_denoiser`). Returns images in [-1, 1] on ``device``."""
    sigmas = sigmas_for(spec, card, sigma_min, sigma_max).to(device, torch.float32)
    if float(sigmas[0]) < sigma_max * (1 - 1e-6):  # e.g. "leading" DDPM timesteps: x_T starts at sigmas[0]
        prior_std = vp_prior_std(float(sigmas[0])) if card.get("parameterisation") == "eps" else float(sigmas[0])
    fn = SAMPLERS[spec["sampler"]]
    kwargs = {k: spec[k] for k in ("eta", "snr", "n_corrector", "n_steps_each", "step_lr") if k in spec}
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        x = torch.randn(b, 1, 32, 32, generator=g, device=device) * prior_std
        d, cond = denoiser, {}
        if card.get("null_class") is not None:
            cond = {"class_labels": torch.arange(i, i + b, device=device) % 10}
            if spec.get("w"):
                d = cfg(d, spec["w"], {"class_labels": torch.full((b,), card["null_class"], device=device)})
        if spec.get("clip"):
            d = clip_denoiser(d)  # after guidance: the guided estimate is the one that must stay in range
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast and device.type == "cuda"):
            out.append(fn(d, x, sigmas, generator=g, cond=cond, **kwargs).clamp(-1, 1))
    return torch.cat(out)


FLOOR_WHAT = "FD between {n} random training images and the first {n} test images, in the shipped classifier's features"


def real_reference(clf, test_x: torch.Tensor, train_x: torch.Tensor, n: int, device) -> tuple[torch.Tensor, float]:
    """The real side of every FD at sample size n: features of the first n test images, and the real-vs-real floor,
    their FD to n random training images (seed 0). Returns ``(real_feats, floor)``; see :data:`FLOOR_WHAT`."""
    from .classifier import extract_features

    real = extract_features(clf, test_x[:n].to(device))
    g = torch.Generator().manual_seed(0)
    other = extract_features(clf, train_x[torch.randperm(train_x.shape[0], generator=g)[:n]].to(device))
    return real, frechet_distance(other, real)


def measure(fake_feats: torch.Tensor, real_feats: torch.Tensor, floor: float) -> dict:
    """FD (with the floor and their ratio), precision/recall (k=3) and density/coverage (k=5) of features."""
    fd = frechet_distance(fake_feats, real_feats)
    return dict(fd=round(fd, 4), floor=round(floor, 4), fd_over_floor=round(fd / floor, 2),
                **{k: round(v, 4) for k, v in precision_recall(real_feats, fake_feats, k=3).items()},
                **{k: round(v, 4) for k, v in density_coverage(real_feats, fake_feats, k=5).items()})


def timed(fn, device):
    """Run fn() and return (result, seconds), synchronising the device around it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    res = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return res, time.perf_counter() - t0
