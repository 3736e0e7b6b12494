"""``python -m diffbook zoo``: train every model and evaluate it in one run, writing weights, cards and results.

On the GPU (``--config release``) this is the one command behind the shipped model zoo and
``diffbook/zoo/results/zoo-release.json``;
``--config smoke`` runs the same pipeline on a CPU in about a minute (tests and CI).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..data.fashion import load_fashion_mnist
from ..nets.classifier import extract_features, predict_from_features
from ..show.plots import save_image_grid
from ..train.loop import train
from ..train.provenance import device_name, git_commit
from ..zoo.model import load
from ..zoo.registry import atomic_write_json, load_network
from .measure import FLOOR_WHAT, measure, real_reference, sample_images, timed
from .specs import nfe_of

__all__ = ["EVAL_SPECS", "SMOKE_SPECS", "run_zoo"]

# What each model is measured with (release). NFE <= 50 except the 1000-step ancestral reference.
EVAL_SPECS = {
    "fmnist-ddpm": [
        dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=10),
        dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=20),
        dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=50),
        dict(sampler="dpmpp_2m", schedule="karras", steps=10),
        dict(sampler="dpmpp_2m", schedule="karras", steps=20),
        dict(sampler="dpmpp_2m", schedule="karras", steps=50),
        dict(sampler="heun", schedule="karras", steps=10),
        dict(sampler="heun", schedule="karras", steps=25),
        dict(sampler="dpmpp_2m", schedule="karras", steps=20, w=0.5),
        dict(sampler="dpmpp_2m", schedule="karras", steps=20, w=1.0),
        # x0_hat clamped to [-1, 1]: chapter 5 found unclipped deterministic samplers break some images
        dict(sampler="dpmpp_2m", schedule="karras", steps=10, clip=True),
        dict(sampler="dpmpp_2m", schedule="karras", steps=20, clip=True),
        dict(sampler="dpmpp_2m", schedule="karras", steps=20, w=1.0, clip=True),
        dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=20, clip=True),
        dict(sampler="ancestral", schedule="ddpm", spacing="trailing", steps=50),
        dict(sampler="ancestral", schedule="ddpm", spacing="leading", steps=1000),
    ],
    "fmnist-ncsn": [
        dict(sampler="dpmpp_2m", schedule="karras", steps=20),
        dict(sampler="dpmpp_2m", schedule="karras", steps=50),
        dict(sampler="heun", schedule="karras", steps=25),
        dict(sampler="pc", schedule="geometric", steps=25, n_corrector=1, snr=0.16),
        dict(sampler="annealed_langevin", schedule="geometric", steps=10, n_steps_each=5, step_lr=2e-5),
    ],
    "fmnist-gan": [dict(sampler="generator", steps=1)],
    # the distilled students sample with DDIM on the trailing grid they were distilled for, unguided (the guidance
    # of the teacher is folded into them) and unclipped; ``weights`` names the round's model
    "fmnist-fast": [dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=1),
                    dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=2, weights="fmnist-fast-2step"),
                    dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=4, weights="fmnist-fast-4step")],
}
SMOKE_SPECS = {
    "fmnist-ddpm": [dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=2),
                    dict(sampler="dpmpp_2m", schedule="karras", steps=2, w=1.0, clip=True)],
    "fmnist-ncsn": [dict(sampler="heun", schedule="karras", steps=2),
                    dict(sampler="annealed_langevin", schedule="geometric", steps=2, n_steps_each=1, step_lr=2e-5)],
    "fmnist-gan": [dict(sampler="generator", steps=1)],
    "fmnist-fast": [dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=1),
                    dict(sampler="ddim", schedule="ddpm", spacing="trailing", steps=2, weights="fmnist-fast-2step")],
}


def run_zoo(config: str = "smoke", out: str | Path = "runs/zoo", *, n_eval: int | None = None,
            deadline_s: float | None = None, models=("fmnist-ddpm", "fmnist-ncsn", "fmnist-gan"),
            on_progress=None, clf_root: str | Path | None = None, budgets: dict | None = None) -> dict:
    """Train ``models`` with ``config``, then evaluate each with its sampler specs; write ``out/results.json``.

    ``deadline_s`` (seconds from the start) skips evaluations that would start after it, so a time-limited GPU
    run still writes what it measured. ``on_progress(path)`` is called whenever a file is finished.
    Features come from the classifier ``fmnist-clf`` in ``clf_root`` (default: the shipped one). ``budgets`` maps
    a model to its training time budget in seconds (default: its config's). Evaluations
    run cheapest first (NFE <= 100 for every model, then the long references), so a deadline cuts the references.
    """
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = n_eval or (10_000 if config == "release" else 200)
    specs = EVAL_SPECS if config == "release" else SMOKE_SPECS
    results = dict(command=f"python -m diffbook zoo --config {config}", commit=git_commit(),
                   device=device_name(device), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), n_eval=n,
                   torch=torch.__version__, models={}, evaluations=[])

    def dump():
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(out / "results.json", results)
        if on_progress:
            on_progress(out / "results.json")

    for m in models:
        # a student distils the teacher trained earlier in this run if there is one, else the shipped teacher
        overrides = {"teacher_root": str(out)} if m == "fmnist-fast" and "fmnist-ddpm" in models else {}
        if m in (budgets or {}):
            overrides["time_budget_s"] = float(budgets[m])
        card = train(m, config, out, measure_eager=(config == "release" and m in ("fmnist-ddpm", "fmnist-ncsn")),
                     fresh=False, overrides=overrides)
        results["models"][m] = {k: card.get(k) for k in ("steps", "batch", "train_wall_s", "img_s",
                                                          "eager_baseline_img_s", "speedup_vs_eager", "device",
                                                          "n_params")}
        dump()
        if on_progress:
            on_progress(out / f"{m}.safetensors")

    clf, _ = load_network("fmnist-clf", clf_root, device=device)
    test_x, _ = load_fashion_mnist("test", pad_to=32)
    train_x, _ = load_fashion_mnist("train", pad_to=32)
    real, floor = real_reference(clf, test_x, train_x, n, device)
    results["floor"] = dict(fd=round(floor, 4), what=FLOOR_WHAT.format(n=n))
    dump()

    loaded = {m: load(m, root=out, device=device) for m in models}
    queue = [(m, spec) for m in models for spec in specs[m]]
    queue.sort(key=lambda ms: nfe_of(ms[1]) > 100)  # stable: the long references go last
    for m, spec in queue:
        model = loaded[m] if "weights" not in spec else load(spec["weights"], root=out, device=device)
        card = model.card
        if deadline_s and time.perf_counter() - t_start > deadline_s:
            results["evaluations"].append(dict(model=m, **spec, skipped="deadline"))
            continue
        # warm-up (kernel selection, caches), so the timing below is of sampling alone
        sample_images(model, spec, min(n, 64), seed=1)
        imgs, sec = timed(lambda: sample_images(model, spec, n), device)
        feats = extract_features(clf, imgs)
        row = dict(model=m, **spec, nfe=nfe_of(spec), n=n, sample_s=round(sec, 2),
                   ms_per_image=round(1000 * sec / n, 4), **measure(feats, real, floor))
        if card.get("null_class") is not None:  # class-conditional: does the classifier see the requested class?
            requested = torch.arange(n) % 10  # sample_images asks for classes 0..9 in turn
            row["class_agreement"] = round((predict_from_features(clf, feats) == requested).double().mean().item(), 4)
        results["evaluations"].append(row)
        tag = "-".join(str(spec.get(k)) for k in ("sampler", "steps", "w") if spec.get(k) is not None)
        tag += "-clip" if spec.get("clip") else ""
        save_image_grid(imgs[:100], out / f"grid-{m}-{tag}.png")
        print(json.dumps(row), flush=True)
        dump()
    return results
