"""Pixels or latents: the latent diffusion model ``fmnist-ldm`` beside pixel-space models, measured the same way.

``python -m diffbook sweep latent --twin runs/pixel-twin``
writes ``diffbook/zoo/results/latent.json`` with

* **quality**, per seed, with the guidance sweep's protocol (:mod:`diffbook.eval.guidance_sweep`: N images with
  balanced labels, noise from seed 1000 + seed, DPM-Solver++(2M) on 10 Karras levels, CFG weight w = 2, measured
  against test images [seed * N, (seed + 1) * N) in the shipped classifier's features): FD beside the real-vs-real
  floor, precision/recall, density/coverage, the classifier's accuracy on the requested class and the sampling
  time per image, for ``fmnist-ldm``, the shipped pixel model ``fmnist-ddpm`` and, with ``--twin``, the pixel twin
  (the latent model's U-Net trained on pixels on the CPU for as long as the autoencoder and the latent model
  together: ``python -m diffbook train fmnist-ddpm --config pixel-twin``);
* **the autoencoder's floor**: the same N training images that the floor uses, passed through ``fmnist-vae``, and
  their FD to the same test images (no latent model can do better than its decoder), with the reconstruction
  error per pixel;
* **costs**: parameters; training images per second of each network on this machine (forward, loss, backward and
  AdamW step at batch 32; the latent model's step includes encoding the batch with the frozen encoder); and each
  model's training record from its card (steps, batch, wall time, device).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.fashion import load_fashion_mnist
from ..losses import ddpm_eps_loss
from ..nets.classifier import extract_features, predict_from_features
from ..nets.unet import n_params
from ..schedules import betas_to_alpha_bar, linear_betas
from ..train.provenance import device_name, git_commit
from ..zoo.model import load
from ..zoo.registry import atomic_write_json
from .guidance_sweep import SPEC
from .measure import measure, real_reference

__all__ = ["W", "train_images_per_second", "training_record", "run_study", "main"]

#: The guidance weight of every sample of the study (the guidance sweep's lowest FD on fmnist-ddpm).
W = 2.0
RESULTS = Path(__file__).resolve().parents[1] / "zoo" / "results" / "latent.json"


def train_images_per_second(net: torch.nn.Module, make_batch, *, batch: int = 32, warmup: int = 1,
                            repeats: int = 3) -> float:
    """Images per second of one training step of an eps-prediction DDPM (Eq. (ddpm-simple-loss)): ``make_batch(b)``
    gives the x0 the network denoises (pixels, or latents encoded inside it, so encoding counts), then forward,
    loss, backward and an AdamW step. The median of ``repeats`` timed steps after ``warmup`` untimed ones."""
    net = net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    alpha_bar = betas_to_alpha_bar(linear_betas(1000)).float()
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        x0 = make_batch(batch)
        y = torch.randint(0, 10, (batch,), generator=g)
        loss = ddpm_eps_loss(net, x0, alpha_bar, generator=g, class_labels=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    net.eval()
    return batch / statistics.median(times)


def training_record(card: dict) -> dict:
    """What a model card says about how the model was trained."""
    keys = ("steps", "batch", "train_wall_s", "img_s", "device", "date", "command", "n_params")
    rec = {k: card.get(k) for k in keys}
    if rec["steps"] and rec["batch"]:
        rec["images_seen"] = int(rec["steps"]) * int(rec["batch"])
    return rec


@torch.no_grad()
def _sample(model, noise, labels, batch):
    if hasattr(model, "vae"):  # a LatentDiffusionModel
        return model.sample(noise=noise, labels=labels, guidance=W, batch=batch, sampler=SPEC["sampler"],
                            steps=SPEC["steps"])
    return model.sample(noise=noise, labels=labels, guidance=W, batch=batch, progress=False, **SPEC)


def run_study(out, *, n: int = 200, seeds=(0, 1, 2), twin_root=None, root=None, batch: int = 50,
              threads: int | None = None, command: str = "python -m diffbook.eval.latent_study") -> dict:
    """Measure every model for every seed, the autoencoder's floor and the costs; write and return the results.

    ``root``: the zoo folder of fmnist-vae and fmnist-ldm (default: the shipped zoo; fmnist-ddpm and the
    classifier always come from the shipped zoo); ``twin_root``: the pixel twin's zoo folder (None: no twin)."""
    if threads:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    models = {"fmnist-ldm": load("fmnist-ldm", root), "fmnist-ddpm": load("fmnist-ddpm")}
    if twin_root is not None:
        models["pixel twin"] = load("fmnist-ddpm", twin_root)
    vae = load("fmnist-vae", root)
    clf = load("fmnist-clf").net
    test_x, _ = load_fashion_mnist("test")
    train_x, _ = load_fashion_mnist("train")
    res = dict(what="A latent diffusion model (fmnist-vae + fmnist-ldm) beside pixel-space DDPMs: sample quality, "
                    "the autoencoder's floor, and costs", command=command, commit=git_commit(),
               device=device_name(torch.device("cpu")), threads=torch.get_num_threads(),
               date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), torch=torch.__version__,
               settings=dict(n=n, seeds=list(seeds), w=W, spec=SPEC,
                             noise="torch.randn(n, *shape) from torch.Generator().manual_seed(1000 + seed); shape "
                                   "(1, 32, 32) for pixel models, (4, 8, 8) for the latent model",
                             real="test images [seed * n, (seed + 1) * n)",
                             autoencoder="the floor's n training images (permutation seed 0) through fmnist-vae"),
               rows=[])
    # the floor's training images (as diffbook.eval.measure.real_reference picks them)
    floor_idx = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    rec = vae.reconstruct(train_x[floor_idx])
    rec_feats = extract_features(clf, rec)
    rec_mse = F.mse_loss(rec, train_x[floor_idx]).item()
    for seed in seeds:
        real_x = test_x[seed * n:(seed + 1) * n]
        real, floor = real_reference(clf, real_x, train_x, n, "cpu")
        res["rows"].append(dict(model="fmnist-vae (reconstructions)", seed=seed, n=n, **measure(rec_feats, real, floor),
                                mse=round(rec_mse, 5)))
        labels = torch.arange(n) % 10
        for name, model in models.items():
            shape = model.latent_shape if name == "fmnist-ldm" else (1, 32, 32)
            noise = torch.randn(n, *shape, generator=torch.Generator().manual_seed(1000 + seed))
            t0 = time.perf_counter()
            images = _sample(model, noise, labels, batch)
            dt = time.perf_counter() - t0
            feats = extract_features(clf, images)
            acc = (predict_from_features(clf, feats) == labels).double().mean().item()
            row = dict(model=name, seed=seed, n=n, **measure(feats, real, floor), class_accuracy=round(acc, 4),
                       ms_per_image=round(1000 * dt / n, 1), head_mean=round(images[:10].mean().item(), 5))
            res["rows"].append(row)
            print(f"seed {seed} {name}: fd {row['fd']:.3f} (floor {floor:.3f}) acc {acc:.3f} "
                  f"{row['ms_per_image']:.0f} ms/img", flush=True)
            atomic_write_json(Path(out), res)

    ldm = models["fmnist-ldm"]
    costs = {"fmnist-vae": dict(params=n_params(vae.net), record=training_record(vae.card))}
    encode = (lambda b: vae.encode(train_x[torch.randint(0, train_x.shape[0], (b,))]))
    pixels = (lambda b: train_x[torch.randint(0, train_x.shape[0], (b,))])
    costs["fmnist-ldm"] = dict(params=n_params(ldm.net), record=training_record(ldm.card),
                               train_img_s=round(train_images_per_second(ldm.net, encode), 1),
                               train_img_s_unet_only=round(train_images_per_second(
                                   ldm.net, lambda b: torch.randn(b, *ldm.latent_shape)), 1))
    for name in [m for m in models if m != "fmnist-ldm"]:
        costs[name] = dict(params=n_params(models[name].net), record=training_record(models[name].card),
                           train_img_s=round(train_images_per_second(models[name].net, pixels), 1))
    res["costs"] = costs
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(Path(out), res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook sweep latent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--n", type=int, default=200, help="images per model and seed (default 200)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--twin", default=None, metavar="ROOT",
                   help="zoo folder of the pixel twin (python -m diffbook train fmnist-ddpm --config pixel-twin "
                        "--out ROOT)")
    p.add_argument("--root", default=None, help="zoo folder of fmnist-vae and fmnist-ldm (default: the shipped zoo)")
    p.add_argument("--batch", type=int, default=50, help="images per network batch (guided: twice as many)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.n < 130 or a.n % 10:
        raise SystemExit(f"--n must be a multiple of 10 and >= 130 (an FD of 128-d features needs > 129 samples), "
                         f"got {a.n}.")
    if a.twin is not None and not (Path(a.twin) / "registry.json").exists():
        raise SystemExit(f"--twin {a.twin}: no zoo folder there (no registry.json); train the twin first with "
                         f"`python -m diffbook train fmnist-ddpm --config pixel-twin --out {a.twin}`.")
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    run_study(a.out, n=a.n, seeds=tuple(a.seeds), twin_root=a.twin, root=a.root, batch=a.batch, threads=a.threads,
              command=f"python -m diffbook sweep latent {argv_text}".strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
