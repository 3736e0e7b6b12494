"""What a denoiser knows: its U-Net's features as inputs to a linear classifier trained on few labels, and the
sweep behind the chapter (``python -m diffbook.eval.representations``), with the anomaly scores of
:mod:`diffbook.eval.anomaly`.

The features of an image at noise level sigma are the U-Net's activations when it denoises x = x0 + sigma n (one
noise draw, the null class so that no label goes in): the middle block and the first two blocks of the up path,
each averaged over the image (global average pooling), concatenated (128 + 128 + 64 = 320 numbers). A linear probe
(multinomial logistic regression, L-BFGS, on standardised features) is trained on 10, 100 or 1000 labelled
training images and tested on held-out test images: the protocol of "denoising diffusion autoencoders are unified
self-supervised learners" (DDAE, Xiang et al. 2023), at the size of a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..checks import check_tensor
from ..data.fashion import load_fashion_mnist
from ..nets.classifier import extract_features
from ..train.provenance import device_name, git_commit
from ..zoo.model import DiffusionModel, load
from .anomaly import OOD_SETS, auroc, denoising_error, negative_log_likelihood, ood_sets

__all__ = ["LAYERS", "denoiser_features", "balanced_pool", "few_labels", "linear_probe", "SETTINGS", "run", "main"]

LAYERS = ("mid_block", "up_blocks.0", "up_blocks.1")
SETTINGS = dict(probe_sigmas=(0.01, 0.3, 1.5), pool_per_class=100, n_test=200, labels=(10, 100, 1000),
                label_seeds=(0, 1, 2, 3, 4), l2=1e-2, anomaly_n=32, anomaly_sigmas=(0.1, 0.5),
                anomaly_seeds=(0, 1), likelihood_n=8, likelihood_steps=6)


@torch.no_grad()
def denoiser_features(model: DiffusionModel, x0: torch.Tensor, sigma: float, *, generator=None,
                      layers=LAYERS, batch: int = 100) -> torch.Tensor:
    """The U-Net's pooled activations [B, 320] at noise level ``sigma`` (see the module docstring), one noise draw
    per image from ``generator``, with the null class."""
    if not isinstance(model, DiffusionModel) or model.net is None or not hasattr(model.net, "mid_block"):
        raise TypeError("model must be a U-Net diffusion model from diffbook.load (e.g. 'fmnist-ddpm').")
    model.check_images(x0, "x0")
    if not (isinstance(sigma, (int, float)) and model.sigma_min * (1 - 1e-3) <= sigma <= model.sigma_max):
        raise ValueError(f"sigma must lie in the model's range [{model.sigma_min:.4g}, {model.sigma_max:.4g}], "
                         f"got {sigma!r}.")
    modules = dict(model.net.named_modules())
    grabbed = {}
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: grabbed.__setitem__(name, o))
             for name in layers]
    try:
        out = []
        for i in range(0, x0.shape[0], batch):
            xb = x0[i:i + batch]
            x = xb + sigma * torch.randn(xb.shape, generator=generator, dtype=xb.dtype)
            null = torch.full((xb.shape[0],), model.null_class) if model.null_class is not None else None
            model.denoiser(x, torch.full((xb.shape[0],), float(sigma)),
                           **({} if null is None else {"class_labels": null}))
            out.append(torch.cat([grabbed[name].float().mean((2, 3)) for name in layers], 1))
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(out)


def balanced_pool(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of each class (class by class)."""
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(int(labels.max()) + 1)])


def few_labels(pool_labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Positions (into the pool) of ``n`` labelled images, n / 10 per class, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    classes = int(pool_labels.max()) + 1
    if n % classes:
        raise ValueError(f"n must be a multiple of the {classes} classes, got {n}.")
    picks = []
    for c in range(classes):
        idx = torch.nonzero(pool_labels == c).flatten()
        picks.append(idx[torch.randperm(idx.numel(), generator=g)[: n // classes]])
    return torch.cat(picks)


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, l2: float = 1e-2, iters: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression on standardised features (mean and scale of the training
    features), with an L2 penalty ``l2`` on the weights, fitted by L-BFGS. Deterministic."""
    for name, f in (("train_feats", train_feats), ("test_feats", test_feats)):
        check_tensor(name, f)
        if f.dim() != 2:
            raise ValueError(f"{name} must be [N, d], got {tuple(f.shape)}.")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError("train and test features must have the same dimension.")
    mu, sd = train_feats.mean(0), train_feats.std(0, unbiased=False).clamp_min(1e-6)
    a, b = ((f.double() - mu.double()) / sd.double() for f in (train_feats, test_feats))
    k = int(max(train_labels.max(), test_labels.max())) + 1
    w = torch.zeros(a.shape[1], k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w + bias, train_labels) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + bias).argmax(1) == test_labels).double().mean())


def _probe(model, s) -> dict:
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    pool = balanced_pool(train_y, s["pool_per_class"])
    px, py, tx, ty = train_x[pool], train_y[pool], test_x[: s["n_test"]], test_y[: s["n_test"]]
    clf = load("fmnist-clf").net
    feats = {"pixels": (px.flatten(1), tx.flatten(1)),
             "classifier (all 60,000 labels)": (extract_features(clf, px), extract_features(clf, tx))}
    for sigma in s["probe_sigmas"]:
        g = torch.Generator().manual_seed(7)
        feats[f"denoiser, sigma {sigma:g}"] = (denoiser_features(model, px, sigma, generator=g),
                                                denoiser_features(model, tx, sigma, generator=g))
        print(f"features at sigma {sigma} done", flush=True)
    rows = []
    for name, (f_train, f_test) in feats.items():
        for n in s["labels"]:
            seeds = s["label_seeds"] if n < py.numel() else (0,)
            accs = [linear_probe(f_train[sel], py[sel], f_test, ty, l2=s["l2"])
                    for sel in (few_labels(py, n, seed) for seed in seeds)]
            sigma = float(name.split()[-1]) if name.startswith("denoiser") else None
            rows.append(dict(features=name, sigma=sigma, labels=n, accuracy=[round(a, 4) for a in accs],
                             mean=round(sum(accs) / len(accs), 4), dim=f_train.shape[1]))
            print(json.dumps(rows[-1]), flush=True)
    return dict(rows=rows, n_test=s["n_test"], pool=int(pool.numel()))


def _anomaly(model, s) -> dict:
    sets = ood_sets(s["anomaly_n"], seed=0)
    null = model.null_class
    rows, scores = [], {}
    for sigma in s["anomaly_sigmas"]:
        for seed in s["anomaly_seeds"]:
            sc = {}
            for name, x in sets.items():
                g = torch.Generator().manual_seed(100 + seed)
                sc[name] = denoising_error(model.denoiser, x, sigma, generator=g,
                                           cond={"class_labels": torch.full((x.shape[0],), null)})
            for name in OOD_SETS[1:]:
                rows.append(dict(score=f"denoising error, sigma {sigma:g}", sigma=sigma, seed=seed, ood=name,
                                 auroc=round(auroc(sc["Fashion-MNIST"], sc[name]), 4)))
            scores[f"denoising error, sigma {sigma:g}, seed {seed}"] = {k: [round(float(v), 5) for v in t]
                                                                       for k, t in sc.items()}
            print(json.dumps(rows[-1]), flush=True)
    k, steps = s["likelihood_n"], s["likelihood_steps"]
    nll = {}
    for name, x in sets.items():
        g = torch.Generator().manual_seed(5)
        nll[name] = negative_log_likelihood(model, x[:k], n_steps=steps, generator=g,
                                            cond={"class_labels": torch.full((k,), null)})
        print(name, float(nll[name].mean()), flush=True)
    for name in OOD_SETS[1:]:
        rows.append(dict(score="PF-ODE negative log-likelihood", sigma=None, seed=5, ood=name,
                         auroc=round(auroc(nll["Fashion-MNIST"], nll[name]), 4)))
    scores["PF-ODE bits per dimension"] = {kk: [round(float(v), 4) for v in t] for kk, t in nll.items()}
    return dict(rows=rows, scores=scores, n=s["anomaly_n"], likelihood_n=k, likelihood_steps=steps)


def run(parts=("probe", "anomaly"), **overrides) -> dict:
    """Run the probe and/or the anomaly part; returns the results dict."""
    s = dict(SETTINGS, **overrides)
    torch.manual_seed(0)
    model = load("fmnist-ddpm")
    out = dict(settings={k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}, model="fmnist-ddpm",
               layers=list(LAYERS), parts={})
    for part in parts:
        t0 = time.perf_counter()
        out["parts"][part] = (_probe if part == "probe" else _anomaly)(model, s)
        out["parts"][part]["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--parts", nargs="*", default=["probe", "anomaly"], choices=["probe", "anomaly"])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    res = run(a.parts)
    res["provenance"] = dict(command="python -m diffbook.eval.representations " + " ".join(argv), commit=git_commit(),
                             device=device_name(torch.device("cpu")), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                             wall_s=round(time.perf_counter() - t0, 1), torch=torch.__version__)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
