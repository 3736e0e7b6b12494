"""``python -m diffbook zoo``: train every model and evaluate it in one run, writing weights, cards and results.

On the GPU (``--config release``) this is the one command behind the shipped model zoo and diffbook/results/zoo-release.json;
``--config smoke`` runs the same pipeline on a CPU in about a minute (tests and CI).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import torch

from . import zoo
from .classifier import extract_features, load_classifier, predict_from_features
from .evaluate import FLOOR_WHAT, measure, nfe_of, real_reference, sample_images, timed
from .fashion import load_fashion_mnist
from .training import _device_name, train

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


def _git_commit() -> str:
    """The commit the run's code came from ($DIFFBOOK_COMMIT where the tree travels without .git)."""
    if os.environ.get("DIFFBOOK_COMMIT"):
        return os.environ["DIFFBOOK_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def save_grid(images: torch.Tensor, path: Path, nrow: int = 10) -> None:
    """Save up to 100 images [N,1,32,32] in [-1,1] as one PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = images[: nrow * nrow].detach().float().cpu().squeeze(1)
    rows = (imgs.shape[0] + nrow - 1) // nrow
    grid = torch.ones(rows * 33 + 1, nrow * 33 + 1)
    for k, im in enumerate(imgs):
        r, c = divmod(k, nrow)
        grid[1 + r * 33: 1 + r * 33 + 32, 1 + c * 33: 1 + c * 33 + 32] = (im + 1) / 2
    plt.imsave(path, grid.numpy(), cmap="gray", vmin=0, vmax=1)


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
    results = dict(command=f"python -m diffbook zoo --config {config}", commit=_git_commit(),
                   device=_device_name(device), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), n_eval=n,
                   torch=torch.__version__, models={}, evaluations=[])

    def dump():
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        zoo.atomic_write_json(out / "results.json", results)
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

    clf = load_classifier(clf_root, device=device)
    test_x, _ = load_fashion_mnist("test", pad_to=32)
    train_x, _ = load_fashion_mnist("train", pad_to=32)
    real, floor = real_reference(clf, test_x, train_x, n, device)
    results["floor"] = dict(fd=round(floor, 4), what=FLOOR_WHAT.format(n=n))
    dump()

    nets = {m: zoo.load(m, root=out, device=device) for m in models}
    queue = [(m, spec) for m in models for spec in specs[m]]
    queue.sort(key=lambda ms: nfe_of(ms[1]) > 100)  # stable: the long references go last
    for m, spec in queue:
        net, card = nets[m] if "weights" not in spec else zoo.load(spec["weights"], root=out, device=device)
        if deadline_s and time.perf_counter() - t_start > deadline_s:
            results["evaluations"].append(dict(model=m, **spec, skipped="deadline"))
            continue
        if spec["sampler"] == "generator":
            def draw(k, seed=0):
                gen = torch.Generator(device=device).manual_seed(seed)
                with torch.no_grad():
                    return torch.cat([net.sample(min(2500, k - i), generator=gen)
                                      for i in range(0, k, 2500)]).clamp(-1, 1)
        else:
            den, lo, hi, prior = zoo.as_denoiser(net, card)

            def draw(k, seed=0):
                return sample_images(den, card, spec, k, sigma_min=lo, sigma_max=hi, prior_std=prior,
                                     device=device, seed=seed)
        draw(min(n, 64), seed=1)  # warm-up (kernel selection, caches), so the timing below is of sampling alone
        imgs, sec = timed(lambda: draw(n), device)
        feats = extract_features(clf, imgs)
        row = dict(model=m, **spec, nfe=nfe_of(spec), n=n, sample_s=round(sec, 2),
                   ms_per_image=round(1000 * sec / n, 4), **measure(feats, real, floor))
        if card.get("null_class") is not None:  # class-conditional: does the classifier see the requested class?
            requested = torch.arange(n) % 10  # sample_images asks for classes 0..9 in turn
            row["class_agreement"] = round((predict_from_features(clf, feats) == requested).double().mean().item(), 4)
        results["evaluations"].append(row)
        tag = "-".join(str(spec.get(k)) for k in ("sampler", "steps", "w") if spec.get(k) is not None)
        tag += "-clip" if spec.get("clip") else ""
        save_grid(imgs, out / f"grid-{m}-{tag}.png")
        print(json.dumps(row), flush=True)
        dump()
    return results
