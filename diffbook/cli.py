"""The command line, ``python -m diffbook COMMAND``:

- ``sample MODEL``: draw images from a shipped model into a PNG grid (or .npy / .pt tensors);
- ``train MODEL --config {smoke,release}``: train one model (resumes from OUT/checkpoint.pt);
- ``zoo``: train and evaluate every model in one run (the release);
- ``compare``: every sampler, diffbook's and diffusers', at equal NFE on fmnist-ddpm;
- ``sweep NAME``: a precomputed sweep that a chapter plots (applications, representations, edm-churn, recipe).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys


def _key_value(text: str, option: str, parse) -> tuple:
    """``KEY=VALUE`` -> (KEY, parse(VALUE)); one clear error naming the option otherwise."""
    key, sep, value = text.partition("=")
    try:
        if not (key and sep):
            raise ValueError
        return key, parse(value)
    except ValueError:
        raise SystemExit(f"{option} takes KEY=VALUE pairs (e.g. {option} time_budget_s=400); could not read {text!r}.")


def _sample(a) -> int:
    """``python -m diffbook sample``: load, sample, write; a wrong argument exits with its one-line message."""
    import math
    from pathlib import Path

    import torch

    from .zoo import load

    out = Path(a.out)
    if out.suffix not in (".png", ".npy", ".pt"):
        raise SystemExit(f"--out must end in .png (a grid), .npy or .pt, got {a.out!r}.")
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load(a.model, root=a.root, device=device)
        if not hasattr(model, "sample"):
            raise ValueError(f"{a.model} is not a generative model (it is the feature classifier); choose a model "
                             "that samples, e.g. fmnist-ddpm.")
        options = dict(sampler=a.sampler, steps=a.steps, schedule=a.schedule, spacing=a.spacing, guidance=a.guidance,
                       clip=a.clip)
        options = {k: v for k, v in options.items() if v is not None}
        if a.label is not None:
            options["labels"] = a.label
        images = model.sample(a.n, seed=a.seed, progress=True, **options)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"diffbook sample: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        from .show.plots import save_image_grid

        save_image_grid(images, out, nrow=a.nrow or math.ceil(math.sqrt(a.n)))
    elif out.suffix == ".npy":
        import numpy as np

        np.save(out, images.cpu().numpy())
    else:
        torch.save(images.cpu(), out)
    print(f"wrote {images.shape[0]} images {tuple(images.shape[1:])} from {a.model} to {out}")
    return 0


#: The sweeps the chapters plot: name -> (module with main(argv), what it measures).
SWEEPS = {
    "applications": ("diffbook.eval.applications", "the Applications chapter's inverse problems and edits"),
    "representations": ("diffbook.eval.representations", "features, anomaly scores and signals of 'What a denoiser "
                                                          "knows'"),
    "edm-churn": ("diffbook.eval.churn", "EDM's stochastic sampler against Heun and DPM-Solver++ on fmnist-ddpm"),
    "recipe": ("diffbook.eval.recipe_study", "training recipes compared at CPU scale (batch, lr, EMA, parameterisation, "
                                            "schedule)"),
    "guidance": ("diffbook.eval.guidance_sweep", "classifier-free guidance weights on fmnist-ddpm, several seeds"),
    "latent": ("diffbook.eval.latent_study", "the latent diffusion model beside pixel models: quality, the "
                                             "autoencoder's floor, training and sampling costs"),
    "spelling": ("diffbook.eval.spelling", "the token- and character-level text-to-image models read by the OCR "
                                           "model, on seen and held-out words"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="draw images from a shipped model (PNG grid, .npy or .pt)",
                       description="Draw images from a model of the zoo. Without --sampler the model samples the way "
                                   "its card records as its best.")
    s.add_argument("model", help="fmnist-ddpm, fmnist-ncsn or fmnist-gan (or a model in --root)")
    s.add_argument("--n", type=int, default=16, help="number of images (default 16)")
    s.add_argument("--sampler", default=None, help="ancestral, ddim, euler, heun, dpmpp_2m, euler_maruyama, pc or "
                                                   "annealed_langevin (default: the card's best)")
    s.add_argument("--steps", type=int, default=None, help="sampler steps (default: the card's best)")
    s.add_argument("--schedule", default=None, help="karras, ddpm, geometric or student")
    s.add_argument("--spacing", default=None, help="timestep spacing of the ddpm schedule: leading, trailing, linspace")
    s.add_argument("--label", type=int, default=None, help="class of every image (default: 0, 1, ..., 9 in turn)")
    s.add_argument("--guidance", type=float, default=None, help="classifier-free guidance weight w (0: none)")
    s.add_argument("--clip", action="store_true", default=None, help="clamp x0_hat to [-1, 1] at every step")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    s.add_argument("--root", default=None, help="a zoo folder (default: the shipped models)")
    s.add_argument("--nrow", type=int, default=None, help="images per row of the PNG grid (default: about sqrt(n))")
    s.add_argument("--out", required=True, help="output file: .png (a grid), .npy or .pt (the images in [-1, 1])")
    t = sub.add_parser("train", help="train one model (resumes from OUT/checkpoint.pt if present)")
    t.add_argument("model", help="fmnist-ddpm, fmnist-ncsn, fmnist-gan, fmnist-fast (distils fmnist-ddpm), fmnist-flow "
                   "(a rectified flow), or the spelling experiment's text-token, text-char, text-ocr")
    t.add_argument("--config", default="smoke",
                   help="smoke (CPU, seconds), release (GPU) or another config the model lists (text-token: cpu)")
    t.add_argument("--out", default="runs", help="output folder for weights, card, log and checkpoint")
    t.add_argument("--steps", type=int, default=None, help="override the number of steps (disables the time budget)")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--measure-eager", action="store_true", help="also time a plain eager fp32 loop (baseline)")
    t.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config entries, e.g. --set time_budget_s=400 compile=false (values as JSON)")
    z = sub.add_parser("zoo", help="train and evaluate every model in one run")
    z.add_argument("--config", default="smoke", choices=["smoke", "release"])
    z.add_argument("--release", action="store_true", help="same as --config release")
    z.add_argument("--out", default="runs/zoo")
    z.add_argument("--n-eval", type=int, default=None)
    z.add_argument("--deadline-s", type=float, default=None)
    z.add_argument("--models", nargs="+", default=["fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"],
                   help="models to train and evaluate, in order (add fmnist-fast to distil fmnist-ddpm)")
    z.add_argument("--budget", nargs="+", default=[], metavar="MODEL=SECONDS",
                   help="training time budget per model, e.g. --budget fmnist-ddpm=400")
    c = sub.add_parser("compare", help="compare samplers (diffbook and diffusers) at equal NFE on fmnist-ddpm")
    c.add_argument("--out", default="runs/compare.json", help="results JSON, rewritten after every row")
    c.add_argument("--n", type=int, default=None, help="images per row (default 10,000; 130 with --smoke)")
    c.add_argument("--nfe", type=int, nargs="+", default=None, help="NFE grid (default 1 2 5 10 20 50 100 250 1000)")
    c.add_argument("--deadline-s", type=float, default=None, help="skip rows that would end after this many seconds")
    c.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    c.add_argument("--smoke", action="store_true", help="CPU check: one line per sampler, NFE 1 and 2, N = 130")
    w = sub.add_parser("sweep", help="run one of the precomputed sweeps the chapters plot (results JSON with provenance)",
                       description="Run a sweep of a chapter: " + "; ".join(f"{k}: {v[1]}" for k, v in SWEEPS.items())
                                   + ". Arguments after the name go to the sweep (see `sweep NAME --help`).")
    w.add_argument("name", choices=sorted(SWEEPS))
    w.add_argument("args", nargs=argparse.REMAINDER, help="the sweep's own arguments, e.g. --out FILE")
    a = p.parse_args(argv)
    if a.cmd == "sweep":
        return importlib.import_module(SWEEPS[a.name][0]).main(a.args)
    if a.cmd == "sample":
        return _sample(a)
    if a.cmd == "train":
        from .train.loop import train

        card = train(a.model, a.config, a.out, steps=a.steps, fresh=a.fresh, measure_eager=a.measure_eager,
                     overrides=dict(_key_value(kv, "--set", json.loads) for kv in a.set))
        print(json.dumps({k: card[k] for k in ("model", "steps", "train_wall_s", "img_s", "device")}))
    elif a.cmd == "compare":
        from .eval import specs as sp
        from .eval.compare import run_comparison

        grid = tuple(a.nfe) if a.nfe else (sp.SMOKE_NFE if a.smoke else sp.NFE_GRID)
        specs = sp.grid_specs(sp.SMOKE_LINES if a.smoke else sp.DEFAULT_LINES, grid)
        n = a.n or (sp.SMOKE_N if a.smoke else 10_000)
        argv_text = " ".join(sys.argv[1:] if argv is None else argv)
        res = run_comparison(a.out, n=n, nfe_grid=grid, specs=specs, deadline_s=a.deadline_s, device=a.device,
                             command=f"python -m diffbook {argv_text}")
        print(json.dumps(res["summary"]["checks"], indent=2))
    else:
        from .eval.release import run_zoo

        run_zoo("release" if a.release else a.config, a.out, n_eval=a.n_eval, deadline_s=a.deadline_s,
                models=tuple(a.models), budgets=dict(_key_value(kv, "--budget", float) for kv in a.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
