"""Which training recipe? A study at CPU scale, before a GPU run is spent on one (``python -m diffbook sweep recipe``).

The release run of ``fmnist-ddpm`` took 1,056 optimiser steps at batch 1,024 and an EMA of 0.9995, and its samples
are far from the data. Each *arm* here trains the same small class-conditional U-Net on Fashion-MNIST at 16 x 16
pixels (2 x 2 block averages of the 32 x 32 images) from the same initial weights, on the same number of images,
and changes one thing at a time: the batch size (more optimiser steps for the same images), the learning rate, the
EMA length for the step count, the parameterisation (noise prediction, v-prediction, EDM's preconditioning, all
through :func:`diffbook.preconditioning.precondition`) and the noise schedule. Each arm is scored the way the zoo
is scored, in the feature space of the shipped classifier ``fmnist-clf`` (the 16 x 16 images are enlarged back to
32 x 32 by repeating pixels, and the real reference is made the same way): the Frechet distance over its floor,
precision, recall and how often the classifier sees the requested class, for two samplers.

The arms train in one process, one after the other, with one thread each; the results file records the command,
commit, device and date. The scale is reduced on purpose (a GPU trains the real model): what carries over is the
*ranking* of the recipes, not their numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..preconditioning import PARAMETERISATIONS, precondition, preconditioned_loss
from ..samplers import SAMPLERS as SAMPLER_FUNCTIONS
from ..schedules import (alpha_bar_to_sigma, betas_to_alpha_bar, cosine_alpha_bar, ddpm_sigmas, karras_sigmas,
                         linear_betas)
from ..data.fashion import load_fashion_mnist
from ..nets.classifier import predict_from_features
from ..nets.unet import make_unet
from ..train.fit import fit
from ..train.provenance import device_name, git_commit
from . import metrics

__all__ = ["ARMS", "SMALL_UNET", "train_arm", "score_arm", "run_study", "merge", "main"]

#: The small U-Net every arm trains (16 x 16 inputs, 10 classes, no attention).
SMALL_UNET = dict(sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                  num_class_embeds=10)
#: The network's time input is TIME_SCALE * c_noise = TIME_SCALE * ln(sigma) / 4, a range like DDPM's 0..1000.
TIME_SCALE = 250.0
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0

#: The arms: batch, learning rate, EMA decay ("auto": a half-life of a tenth of the steps; with ema_warmup the
#: release loop's min(decay, (1 + i) / (10 + i)) at step i), parameterisation,
#: noise levels in training ("linear"/"cosine": DDPM's T = 1000 table, t uniform; "lognormal": EDM's
#: ln sigma ~ N(-1.2, 1.2^2)). "release" is the shipped model's recipe, scaled to the study's images.
ARMS: dict[str, dict] = {
    "release": dict(batch=1024, lr=5e-4, ema=0.9995, ema_warmup=True, param="eps", levels="linear"),
    "batch 128": dict(batch=128, lr=5e-4, ema=0.9995, ema_warmup=True, param="eps", levels="linear"),
    "batch 128, EMA for the steps": dict(batch=128, lr=5e-4, ema="auto", param="eps", levels="linear"),
    "batch 128, EMA, lr 2e-3": dict(batch=128, lr=2e-3, ema="auto", param="eps", levels="linear"),
    "v-prediction": dict(batch=128, lr=2e-3, ema="auto", param="v", levels="linear"),
    "EDM": dict(batch=128, lr=2e-3, ema="auto", param="edm", levels="lognormal"),
    "cosine schedule": dict(batch=128, lr=2e-3, ema="auto", param="eps", levels="cosine"),
}
#: The samplers every arm is scored with (Karras levels from the model's sigma_max; ancestral on DDPM levels).
SAMPLERS = {"dpmpp_2m, 20 steps": ("dpmpp_2m", 20), "ancestral, 50 steps": ("ancestral", 50)}


def downsample(x: torch.Tensor) -> torch.Tensor:
    """32 x 32 images -> 16 x 16 (2 x 2 block averages)."""
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """16 x 16 images -> 32 x 32 (each pixel repeated 2 x 2), the size the classifier takes."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _alpha_bar(levels: str) -> torch.Tensor:
    if levels == "cosine":
        return cosine_alpha_bar(1000)
    return betas_to_alpha_bar(linear_betas(1000))


def _train_sigmas(levels: str, n: int, g: torch.Generator) -> torch.Tensor:
    """Noise levels for one training batch."""
    if levels == "lognormal":
        return (torch.randn(n, generator=g, dtype=torch.float64) * 1.2 - 1.2).exp().clamp(SIGMA_MIN, SIGMA_MAX).float()
    table = alpha_bar_to_sigma(_alpha_bar(levels))
    return table[torch.randint(0, len(table), (n,), generator=g)].float()


def _network(unet):
    """net(x_in, c_noise, class_labels) for :func:`diffbook.preconditioning.precondition`."""

    def net(x_in, c_noise, class_labels=None):
        return unet(x_in, (TIME_SCALE * c_noise).float(), class_labels=class_labels).sample

    net.unet = unet
    return net


def ema_decay_for(arm: dict, steps: int) -> float:
    """The arm's EMA decay; "auto" gives a half-life of a tenth of the steps: 0.5 ** (1 / (steps / 10))."""
    return 0.5 ** (10 / steps) if arm["ema"] == "auto" else float(arm["ema"])


def train_arm(arm: dict, images: torch.Tensor, labels: torch.Tensor, n_images: int, seed: int = 0):
    """Train one arm on ``n_images`` images (drawn with replacement); return (denoiser, log dict)."""
    steps = max(1, n_images // arm["batch"])
    scalings = PARAMETERISATIONS[arm["param"]]
    torch.manual_seed(seed)
    unet = make_unet(**SMALL_UNET)

    def sample_data(batch, g):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        return images[idx], labels[idx]

    def loss_fn(model, data, g):
        x0, y = data
        sigma = _train_sigmas(arm["levels"], len(x0), g)
        return preconditioned_loss(_network(model), scalings, x0, sigma, g, class_labels=y)

    start = time.perf_counter()
    ema, losses = fit(unet, loss_fn, sample_data, steps=steps, batch=arm["batch"], lr=arm["lr"], seed=seed,
                      ema_decay=ema_decay_for(arm, steps), warmup=max(1, steps // 20),
                      ema_warmup=arm.get("ema_warmup", False))
    wall = time.perf_counter() - start
    tail = losses[-max(1, len(losses) // 10):]
    log = dict(steps=steps, images=steps * arm["batch"], ema_decay=ema_decay_for(arm, steps), train_s=round(wall, 1),
               final_loss=sum(tail) / len(tail))
    return precondition(_network(ema), scalings), log


def _sample(denoiser, arm: dict, sampler: str, steps: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    if sampler == "ancestral":
        sigmas = ddpm_sigmas(_alpha_bar("cosine" if arm["levels"] == "cosine" else "linear"), steps,
                                       "trailing").float()
    else:
        sigmas = karras_sigmas(SIGMA_MIN, SIGMA_MAX, steps).float()
    x = torch.randn(n, 1, 16, 16, generator=g) * math.sqrt(1 + sigmas[0].item() ** 2)
    with torch.no_grad():
        out = SAMPLER_FUNCTIONS[sampler](denoiser, x, sigmas, generator=g, cond={"class_labels": labels})
    return out.clamp(-1, 1), labels


def score_arm(denoiser, arm: dict, clf, real_feats: torch.Tensor, floor: float, n: int, seed: int = 0) -> dict:
    """FD / floor, precision, recall and class agreement of the arm's samples, per sampler of :data:`SAMPLERS`."""
    scores = {}
    for name, (sampler, steps) in SAMPLERS.items():
        images, labels = _sample(denoiser, arm, sampler, steps, n, seed)
        feats = clf.features(upsample(images))
        agree = (predict_from_features(clf.net, feats) == labels).float().mean().item()
        fd = metrics.frechet_distance(real_feats, feats)
        pr = metrics.precision_recall(real_feats, feats)
        scores[name] = dict(fd=fd, fd_over_floor=fd / floor, precision=pr["precision"], recall=pr["recall"],
                            class_agreement=agree)
    return scores


def run_study(out: Path, arms: dict = ARMS, n_images: int = 150_000, n_eval: int = 1000, seed: int = 0,
              command: str = "") -> dict:
    """Train and score every arm; write ``out`` (JSON) after each arm, so a killed run keeps what it finished."""
    from ..zoo import load

    clf = load("fmnist-clf")
    train_x, train_y = load_fashion_mnist("train")
    test_x, _ = load_fashion_mnist("test")
    images = downsample(train_x)
    g = torch.Generator().manual_seed(seed)
    real = upsample(downsample(test_x[torch.randperm(len(test_x), generator=g)[:n_eval]]))
    other = upsample(downsample(train_x[torch.randperm(len(train_x), generator=g)[:n_eval]]))
    real_feats, other_feats = clf.features(real), clf.features(other)
    floor = metrics.frechet_distance(real_feats, other_feats)
    result = dict(command=command, commit=git_commit(), device=device_name("cpu"),
                  date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), torch=torch.__version__,
                  settings=dict(n_images=n_images, n_eval=n_eval, seed=seed, unet=SMALL_UNET, time_scale=TIME_SCALE,
                                samplers={k: list(v) for k, v in SAMPLERS.items()}, image_size=16),
                  floor=floor, arms=[])
    start = time.perf_counter()
    for name, arm in arms.items():
        denoiser, log = train_arm(arm, images, train_y, n_images, seed)
        scores = score_arm(denoiser, arm, clf, real_feats, floor, n_eval, seed)
        result["arms"].append(dict(name=name, **arm, **log, scores=scores))
        result["wall_s"] = round(time.perf_counter() - start, 1)
        tmp = Path(out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
        os.replace(tmp, out)                                    # atomic: never a half-written file
        best = min(scores.values(), key=lambda s: s["fd"])
        print(f"{name}: {log['steps']} steps, {log['train_s']:.0f} s, FD/floor {best['fd_over_floor']:.1f}, "
              f"agree {best['class_agreement']:.0%}", flush=True)
    return result


def merge(files: list[Path], out: Path) -> dict:
    """Join the results of runs that trained disjoint arms with the same settings (e.g. one per CPU core)."""
    parts = [json.loads(Path(f).read_text(encoding="utf-8")) for f in files]
    first = parts[0]
    for other in parts[1:]:
        if other["settings"] != first["settings"] or other["floor"] != first["floor"]:
            raise ValueError(f"{files[0]} and another file were run with different settings; only runs of the same "
                             "settings (and so the same real reference and floor) can be merged.")
    arms = [arm for part in parts for arm in part["arms"]]
    names = [arm["name"] for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"an arm appears in more than one file: {names}; merge runs of disjoint arms.")
    order = {name: i for i, name in enumerate(ARMS)}
    merged = dict(first, command=[part["command"] for part in parts], arms=sorted(arms, key=lambda r: order[r["name"]]),
                  wall_s=max(part["wall_s"] for part in parts), runs=[str(f) for f in files])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1), encoding="utf-8")
    os.replace(tmp, out)
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook sweep recipe", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="diffbook/zoo/results/recipe-study.json", help="results JSON")
    p.add_argument("--images", type=int, default=150_000, help="training images per arm (equal for every arm)")
    p.add_argument("--n-eval", type=int, default=1000, help="samples per arm and sampler for the scores")
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="which arms (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="instead of running: join result files of runs with disjoint arms (same settings) into --out")
    a = p.parse_args(argv)
    if a.merge:
        merge([Path(f) for f in a.merge], Path(a.out))
        return 0
    unknown = [x for x in a.arms if x not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    torch.set_num_threads(a.threads)
    command = "python -m diffbook sweep recipe " + shlex.join(sys.argv[1:] if argv is None else argv)
    run_study(Path(a.out), {k: ARMS[k] for k in a.arms}, a.images, a.n_eval, command=command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
