"""When does added noise repair model error? EDM's stochastic sampler (churn) against the deterministic solvers and
DDPM's ancestral sampler on the shipped ``fmnist-ddpm``, counted in broken images.

Command (a CPU does it in minutes; the chapter reads the shipped result and re-checks its first chunk live)::

    python -m diffbook.eval.churn --out diffbook/zoo/results/edm-churn.json

Every row samples the same ``n`` requests (labels i % 10, unguided, unclipped) from the same seeded noise, in chunks
of ``chunk`` images whose random numbers come from their own generator (seed + chunk index), so any chunk can be
re-sampled alone with the same result. An image is *rough* if its roughness (mean absolute difference between
neighbouring pixels) exceeds that of every one of 1,000 real test images, *blank* if fewer than 2% of its pixels
are brighter than -0.9 (the measures of the GANs chapter), and *broken* if either; the classifier ``fmnist-clf``
says whether it shows the requested class.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..data.fashion import load_fashion_mnist
from ..samplers import SAMPLERS, nfe
from ..schedules import ddpm_sigmas, karras_sigmas
from ..train.provenance import device_name, git_commit
from ..zoo.model import load
from ..zoo.registry import atomic_write_json

__all__ = ["ROWS", "roughness", "blank", "roughest_real", "sample_row", "judge", "run_churn", "main"]

#: The rows: Heun's method and EDM's stochastic sampler at equal NFE (19; with 10 steps gamma = churn / 10, capped at
#: sqrt(2) - 1, so churn 40 is the cap), DPM-Solver++(2M) with 20 steps, and DDPM's ancestral sampler with 50
#: (Karras levels between the model's sigma_min and sigma_max; ancestral on trailing DDPM timesteps). EDM's window
#: s_tmin = 0.05, s_tmax = 50 is Karras et al.'s ImageNet setting.
ROWS = [
    dict(sampler="heun", steps=10),
    dict(sampler="edm", steps=10, churn=40.0, s_tmin=0.05, s_tmax=50.0),
    dict(sampler="edm", steps=10, churn=1.0, s_tmin=0.05, s_tmax=50.0),
    dict(sampler="dpmpp_2m", steps=20),
    dict(sampler="ancestral", steps=50),
    dict(sampler="edm", steps=10, churn=2.0, s_tmin=0.05, s_tmax=50.0),
]
OPTIONS = ("churn", "s_tmin", "s_tmax", "s_noise")


def roughness(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image: high for noise, low for smooth garments."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean((1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean((1, 2, 3))
    return dx + dy


def blank(images: torch.Tensor) -> torch.Tensor:
    """True for an image with fewer than 2% of its pixels brighter than -0.9 (almost all background)."""
    return (images > -0.9).double().mean((1, 2, 3)) < 0.02


def roughest_real(n: int = 1000) -> float:
    """The largest roughness among the first ``n`` Fashion-MNIST test images (padded to 32x32)."""
    images, _ = load_fashion_mnist("test")
    return float(roughness(images[:n]).max())


def _levels(model, spec: dict) -> torch.Tensor:
    if spec["sampler"] == "ancestral":
        return ddpm_sigmas(model.denoiser.alpha_bar, spec["steps"], "trailing")
    return karras_sigmas(model.sigma_min, model.sigma_max, spec["steps"])


@torch.no_grad()
def sample_row(model, spec: dict, n: int, *, seed: int = 0, chunk: int = 8, first_chunk_only: bool = False):
    """The images of one row: ``n`` requests (labels i % 10) from seeded noise, chunk by chunk (see the module)."""
    levels = _levels(model, spec).float()
    options = {k: spec[k] for k in OPTIONS if k in spec}
    z = torch.randn(n, *model.image_shape, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % 10
    out = []
    for k, i in enumerate(range(0, n, chunk)):
        g = torch.Generator().manual_seed(seed + 1 + k)
        x = z[i:i + chunk] * (1 + float(levels[0]) ** 2) ** 0.5   # the VP prior at the first level
        out.append(SAMPLERS[spec["sampler"]](model.denoiser, x, levels, generator=g,
                                             cond={"class_labels": labels[i:i + chunk]}, **options).clamp(-1, 1))
        if first_chunk_only:
            break
    return torch.cat(out), labels[: sum(len(o) for o in out)]


def judge(images: torch.Tensor, labels: torch.Tensor, classifier, rough_limit: float) -> dict:
    """Per-image verdicts (lists): rough, blank, broken (either), and agrees (the classifier sees the requested
    class)."""
    rough, empty = roughness(images) > rough_limit, blank(images)
    return dict(rough=rough.tolist(), blank=empty.tolist(), broken=(rough | empty).tolist(),
                agrees=(classifier.predict(images) == labels).tolist())


def _dirty() -> bool:
    """True when the package differs from the recorded commit (modified or new files under diffbook/)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "diffbook"], cwd=Path(__file__).parents[2],
                             capture_output=True, text=True, timeout=10)
        return out.returncode == 0 and bool(out.stdout.strip())
    except Exception:  # noqa: BLE001 - no git: unknown, say clean
        return False


def run_churn(out, n: int = 40, seed: int = 0, chunk: int = 8, rows=None, command: str | None = None) -> dict:
    """Sample every row of :data:`ROWS` (or ``rows``) on fmnist-ddpm (CPU), judge the images, write ``out`` (JSON).

    The file is rewritten after every row; rows already in ``out`` from a run with the same ``n``, ``seed`` and
    ``chunk`` are kept, not sampled again (a stopped run resumes)."""
    torch.manual_seed(0)
    t_start = time.perf_counter()
    model, classifier = load("fmnist-ddpm"), load("fmnist-clf")
    limit = roughest_real()
    result = dict(command=command or f"python -m diffbook.eval.churn --out {out} --n {n}", commit=git_commit(),
                  uncommitted_changes=_dirty(), device=device_name(torch.device("cpu")), date=time.strftime("%Y-%m-%d"),
                  torch=torch.__version__, model="fmnist-ddpm", n=n, seed=seed, chunk=chunk, roughest_real=limit,
                  what="broken = rougher than all of 1,000 real test images, or blank (< 2% of pixels above -0.9); "
                       "agree = the share of images in which the classifier fmnist-clf sees the requested class",
                  rows=[])
    done = []
    if Path(out).is_file():
        old = json.loads(Path(out).read_text())
        if (old.get("n"), old.get("seed"), old.get("chunk")) == (n, seed, chunk):
            done, t_start = old["rows"], t_start - old.get("wall_s", 0.0)
    for spec in rows or ROWS:
        t0 = time.perf_counter()
        kept = [r for r in done if {k: r.get(k) for k in spec} == spec and set(r) - set(spec) >= {"n_broken"}
                and all(k in spec for k in OPTIONS if k in r)]
        if kept:
            result["rows"].append(kept[0])
            continue
        images, labels = sample_row(model, spec, n, seed=seed, chunk=chunk)
        verdict = judge(images, labels, classifier, limit)
        result["rows"].append(dict(spec, nfe=nfe(spec["sampler"], spec["steps"]), seconds=round(time.perf_counter() - t0, 1),
                                   n_broken=sum(verdict["broken"]), n_rough=sum(verdict["rough"]),
                                   n_blank=sum(verdict["blank"]), agree=sum(verdict["agrees"]) / n, **verdict))
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(Path(out), result)
        print(f"{spec}: {sum(verdict['broken'])} of {n} broken ({time.perf_counter() - t0:.0f} s)", flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook.eval.churn", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/edm-churn.json", help="the results JSON (rewritten after every row)")
    p.add_argument("--n", type=int, default=40, help="images per row (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    run_churn(a.out, n=a.n, seed=a.seed, command=f"python -m diffbook.eval.churn {argv_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
