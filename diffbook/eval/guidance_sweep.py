"""The guidance sweep: classifier-free guidance weights w on ``fmnist-ddpm``, measured with several seeds.

``python -m diffbook sweep guidance``
samples N images per weight and seed, all weights from the SAME noise and labels within a seed (so differences
between weights are paired), and measures each set against N real test images (a different slice per seed):
the Frechet distance beside the real-vs-real floor, precision/recall (k = 3), density/coverage (k = 5) and the
shipped classifier's accuracy on the requested class. The JSON it writes (``diffbook/zoo/results/guidance-sweep.json``
by default) holds one row per (weight, seed), a summary (mean and seed-to-seed standard deviation per weight) and
the provenance (command, commit, device, date, wall time). It is rewritten after every row, and a second run with
the same settings skips the rows already measured, so an interrupted sweep resumes.

Besides plain CFG (:func:`diffbook.guidance.cfg`) it can measure *guidance in a limited interval* of noise levels
(Kynkaanniemi et al. 2024): CFG only while sigma_lo < sigma <= sigma_hi, the conditional model elsewhere
(:func:`interval_cfg`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.fashion import load_fashion_mnist
from ..guidance import cfg
from ..nets.classifier import extract_features, predict, predict_from_features
from ..samplers import sample_dpmpp_2m
from ..train.provenance import device_name, git_commit
from ..zoo.model import load
from ..zoo.registry import atomic_write_json
from .measure import measure, real_reference

__all__ = ["WEIGHTS", "SPEC", "INTERVAL", "interval_cfg", "sample_interval", "run_sweep", "summarise", "merge",
           "main"]

#: The guidance weights of the sweep (w = 0: the plain conditional model).
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0)
#: How every image of the sweep is sampled: DPM-Solver++(2M), 10 Karras steps (20 network evaluations when guided).
SPEC = dict(sampler="dpmpp_2m", schedule="karras", steps=10)
#: The noise-level interval of Kynkaanniemi et al. 2024 (their EDM2 setting, sigma in (0.28, 5.42]).
INTERVAL = (0.28, 5.42)
HEAD = 10  # images per row whose classes and mean pixel value the results keep for live re-checks
METRICS = ("fd", "floor", "precision", "recall", "density", "coverage", "class_accuracy", "ms_per_image")


def interval_cfg(denoiser, w: float, null_cond: dict, sigma_lo: float, sigma_hi: float):
    """Classifier-free guidance applied only at noise levels sigma_lo < sigma <= sigma_hi.

    Guidance limited to an interval of noise levels (Kynkaanniemi et al. 2024): D_w of Eq. (cfg) inside the interval, the
    conditional denoiser D(x; sigma, c) outside it, so the steps outside cost one network evaluation, not two.
    """
    if not (0 <= sigma_lo < sigma_hi):
        raise ValueError(f"the interval needs 0 <= sigma_lo < sigma_hi, got ({sigma_lo}, {sigma_hi}].")
    guided = cfg(denoiser, w, null_cond)

    def wrapped(x, sigma, **cond):
        inside = (sigma > sigma_lo) & (sigma <= sigma_hi)
        if bool(inside.all()):
            return guided(x, sigma, **cond)
        if not bool(inside.any()):
            return denoiser(x, sigma, **cond)
        return torch.where(inside.view(-1, *([1] * (x.dim() - 1))), guided(x, sigma, **cond),
                           denoiser(x, sigma, **cond))

    wrapped.w, wrapped.interval = w, (sigma_lo, sigma_hi)
    return wrapped


@torch.no_grad()
def sample_interval(model, noise: torch.Tensor, labels: torch.Tensor, w: float, interval, *,
                    batch: int = 50) -> torch.Tensor:
    """Sample like ``model.sample(noise=..., labels=..., guidance=w, **SPEC)``, with guidance only in ``interval``."""
    sigmas = model.sigmas(**SPEC).float()
    out = []
    for i in range(0, noise.shape[0], batch):
        b = min(batch, noise.shape[0] - i)
        d = interval_cfg(model.denoiser, w, {"class_labels": torch.full((b,), model.null_class)}, *interval)
        x = noise[i:i + b] * model.prior_std
        out.append(sample_dpmpp_2m(d, x, sigmas, cond={"class_labels": labels[i:i + b]}).clamp(-1, 1))
    return torch.cat(out)


def _key(row: dict) -> tuple:
    return row["w"], row["seed"], tuple(row["interval"]) if row.get("interval") else None


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and seed-to-seed standard deviation (ddof = 1) of every metric, per (w, interval); and the paired
    differences to w = 0 (same noise and labels), whose spread is what decides whether two weights differ."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["w"], tuple(r["interval"]) if r.get("interval") else None), []).append(r)
    base = {r["seed"]: r for r in groups.get((0.0, None), [])}
    out = []
    for (w, interval), rs in sorted(groups.items(), key=lambda kv: (kv[0][1] is not None, kv[0][0])):
        s = dict(w=w, interval=list(interval) if interval else None, n_seeds=len(rs), n=rs[0]["n"])
        for m in METRICS:
            v = np.array([r[m] for r in rs], dtype=float)
            s[m] = round(float(v.mean()), 4)
            s[m + "_sd"] = round(float(v.std(ddof=1)), 4) if len(v) > 1 else None
            d = np.array([r[m] - base[r["seed"]][m] for r in rs if r["seed"] in base], dtype=float)
            if len(d) and m != "floor":
                s[m + "_diff"] = round(float(d.mean()), 4)
                s[m + "_diff_sd"] = round(float(d.std(ddof=1)), 4) if len(d) > 1 else None
        out.append(s)
    return out


def run_sweep(out: str | Path, *, n: int = 200, seeds=(0, 1, 2), weights=WEIGHTS, intervals=(), batch: int = 50,
              threads: int | None = None, command: str = "python -m diffbook.eval.guidance_sweep") -> dict:
    """Measure every weight (and every ``intervals`` entry: a (w, sigma_lo, sigma_hi) triple) for every seed.

    Rows go seed by seed (all weights of seed 0 first), so a sweep cut short still has complete seeds. Returns the
    results dict, also written to ``out`` after every row.
    """
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    t_start = time.perf_counter()
    settings = dict(n=n, spec=SPEC, labels="balanced: 0, 1, ..., 9, 0, ... (n / 10 of each class)",
                    noise="torch.randn(n, 1, 32, 32) from torch.Generator().manual_seed(1000 + seed), the same for "
                          "every weight of a seed",
                    real="test images [seed * n, (seed + 1) * n); floor: FD of n random training images (seed 0 "
                         "permutation) to them")
    old = json.loads(out.read_text()) if out.exists() else {}
    rows = old.get("rows", []) if old.get("settings") == settings else []
    done = {_key(r) for r in rows}
    wall_before = old.get("wall_s", 0.0) if rows else 0.0
    res = dict(what="Classifier-free guidance sweep on fmnist-ddpm: FD, precision/recall, density/coverage and "
                    "class accuracy per guidance weight w and seed", command=command, commit=git_commit(),
               device=device_name(torch.device("cpu")), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               torch=torch.__version__, settings=settings, weights=list(weights),
               intervals=[list(i) for i in intervals], seeds=list(seeds), rows=rows)
    model, clf = load("fmnist-ddpm"), load("fmnist-clf").net
    test_x, test_y = load_fashion_mnist("test")
    train_x, _ = load_fashion_mnist("train")
    cells = [(float(w), None) for w in weights] + [(float(w), (lo, hi)) for w, lo, hi in intervals]
    for seed in seeds:
        if all((w, seed, iv) in done for w, iv in cells):
            continue
        real_x = test_x[seed * n:(seed + 1) * n]
        real, floor = real_reference(clf, real_x, train_x, n, "cpu")
        real_acc = (predict(clf, real_x) == test_y[seed * n:(seed + 1) * n]).double().mean().item()
        labels = torch.arange(n) % 10
        noise = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(1000 + seed))
        for w, iv in cells:
            if (w, seed, iv) in done:
                continue
            t0 = time.perf_counter()
            if iv is None:
                images = model.sample(noise=noise, labels=labels, guidance=w, batch=batch, progress=False, **SPEC)
            else:
                images = sample_interval(model, noise, labels, w, iv, batch=batch)
            dt = time.perf_counter() - t0
            feats = extract_features(clf, images)
            predicted = predict_from_features(clf, feats)
            acc = (predicted == labels).double().mean().item()
            row = dict(w=w, seed=seed, interval=list(iv) if iv else None, n=n, **measure(feats, real, floor),
                       class_accuracy=round(acc, 4), real_class_accuracy=round(real_acc, 4),
                       ms_per_image=round(1000 * dt / n, 1),
                       # the first HEAD images, so a chapter can re-sample them and check the row
                       head_predicted=predicted[:HEAD].tolist(), head_mean=round(images[:HEAD].mean().item(), 5))
            rows.append(row)
            res["summary"] = summarise(rows)
            res["wall_s"] = round(wall_before + time.perf_counter() - t_start, 1)
            atomic_write_json(out, res)
            print(f"seed {seed} w {w} {iv or ''}: fd {row['fd']:.3f} acc {acc:.3f} prec {row['precision']:.3f} "
                  f"rec {row['recall']:.3f} ({dt:.0f} s)", flush=True)
    res["summary"] = summarise(rows)
    res["wall_s"] = round(wall_before + time.perf_counter() - t_start, 1)
    atomic_write_json(out, res)
    return res


def merge(out: str | Path, parts) -> dict:
    """Merge sweeps run in parallel processes (e.g. different ``--weights`` into different files) into ``out``.

    Every part must have the same settings; rows measured twice keep the first. The merged file lists each part's
    command, commit, date and wall time (``parts``); its ``wall_s`` is the longest part's (they ran side by side).
    """
    runs = [json.loads(Path(p).read_text()) for p in parts]
    if any(r["settings"] != runs[0]["settings"] for r in runs):
        raise ValueError("the sweeps to merge were run with different settings (n, sampler, noise, real images).")
    rows, seen = [], set()
    for r in runs:
        for row in r["rows"]:
            if _key(row) not in seen:
                seen.add(_key(row))
                rows.append(row)
    res = {k: v for k, v in runs[0].items() if k not in ("rows", "summary")}
    res.update(command=" && ".join(r["command"] for r in runs) + " (merged with --merge)",
               parts=[{k: r.get(k) for k in ("command", "commit", "date", "wall_s", "weights", "seeds")} for r in runs],
               weights=sorted({w for r in runs for w in r["weights"]}),
               seeds=sorted({s for r in runs for s in r["seeds"]}),
               wall_s=max(r.get("wall_s", 0.0) for r in runs), rows=rows, summary=summarise(rows))
    atomic_write_json(Path(out), res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook.eval.guidance_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "zoo" / "results" /
                                        "guidance-sweep.json"))
    p.add_argument("--n", type=int, default=200, help="images per weight and seed (default 200)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    p.add_argument("--interval", type=float, nargs="+", default=[], metavar="W",
                   help=f"also measure these weights with guidance only for sigma in {INTERVAL}")
    p.add_argument("--batch", type=int, default=50, help="images per network batch (guided: twice as many)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--merge", nargs="+", default=None, metavar="FILE",
                   help="merge these results files (sweeps run in parallel) into --out, and stop")
    a = p.parse_args(argv)
    if a.merge:
        merge(a.out, a.merge)
        return 0
    if a.n < 130 or a.n % 10:
        raise SystemExit(f"--n must be a multiple of 10 and >= 130 (an FD of 128-d features needs > 129 samples), "
                         f"got {a.n}.")
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    run_sweep(a.out, n=a.n, seeds=tuple(a.seeds), weights=tuple(a.weights),
              intervals=tuple((w, *INTERVAL) for w in a.interval), batch=a.batch, threads=a.threads,
              command=f"python -m diffbook sweep guidance {argv_text}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
