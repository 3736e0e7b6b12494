"""Run the sampler comparison (diffbook.eval.compare) on a lent GPU machine, writing into $OUT as it goes.

Usage, from the repository root on the device machine (.git does not travel, so name the commit; if Fashion-MNIST
is not installed there, copy its four .gz files into .data/fashion-mnist here and carry ".data")::

    DIFFBOOK_COMMIT=<git rev-parse HEAD> python3 scripts/device_compare.py --deadline-s 420 [--data .data/fashion-mnist]

$OUT receives ``compare.json`` (rewritten atomically after every row, so a run cut short still leaves a valid
table with its skipped rows) and, at the end, ``fd_vs_nfe.png``.

Budget. The whole call must stay under 9 minutes on one H100. The shipped UNet (3.7M parameters) sampled at
0.035 ms per image-NFE in bf16 in the release run (0.35 ms/image at 10 NFE, batch 2,500). The grid below is
4,598 NFE per image summed over its 117 rows; at N = 2,000 images per row that is 9.2M image-NFE, about 320 s
of sampling, plus an estimated ~0.3 s per row for features and metrics (~35 s) and ~30 s of start-up (imports,
data, floor): about 6.5 minutes. The 1000-step ancestral reference (2.0M image-NFE, ~70 s) is in the first
group of rows (everything at NFE <= 20 and the reference: 3.3M image-NFE, ~2.5 minutes), so at that throughput
the deadline can only cut rows at NFE 50 to 250. ``--deadline-s`` (from the start of the comparison) skips any
row predicted to end after it, from the throughput measured so far; 420 s leaves a minute and a half of margin
to the 600-s command limit.

The grid (one N for every row, so every FD is comparable and shares one floor):

* diffbook: DDPM ancestral on trailing DDPM timesteps at NFE 1..250 and 1000 (the reference), and with x0_hat
  clipped at 10..100; DDIM (= Euler) on trailing and on leading timesteps, and clipped on trailing; Euler, Heun and
  DPM-Solver++(2M) on Karras sigmas; DPM-Solver++(2M) on trailing timesteps; Euler-Maruyama on trailing timesteps.
* diffusers: DDPMScheduler with its default leading spacing, unclipped and with its default clip_sample=True;
  DDIMScheduler trailing; EulerDiscreteScheduler (default linspace, and Karras sigmas); HeunDiscreteScheduler with
  Karras sigmas; DPMSolverMultistepScheduler (default linspace, and Karras sigmas).

Unless stated, a line runs at NFE 1, 2, 5, 10, 20, 50, 100 (Heun: 1, 5, 9, 19, 49, 99; NFE 2 would repeat NFE 1).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

UP_TO_100 = (1, 2, 5, 10, 20, 50, 100)
CLIPPED = (10, 20, 50, 100)
GRID = [
    (dict(sampler="ancestral", schedule="ddpm", spacing="trailing"), UP_TO_100 + (250, 1000)),
    (dict(sampler="ancestral", schedule="ddpm", spacing="trailing", clip=True), CLIPPED),
    (dict(sampler="ddim", schedule="ddpm", spacing="trailing"), UP_TO_100),
    (dict(sampler="ddim", schedule="ddpm", spacing="trailing", clip=True), CLIPPED),
    (dict(sampler="ddim", schedule="ddpm", spacing="leading"), UP_TO_100),
    (dict(sampler="euler", schedule="karras"), UP_TO_100),
    (dict(sampler="heun", schedule="karras"), UP_TO_100),
    (dict(sampler="dpmpp_2m", schedule="karras"), UP_TO_100),
    (dict(sampler="dpmpp_2m", schedule="ddpm", spacing="trailing"), UP_TO_100),
    (dict(sampler="euler_maruyama", schedule="ddpm", spacing="trailing"), UP_TO_100),
    (dict(library="diffusers", sampler="DDPMScheduler", schedule="ddpm", spacing="leading"), UP_TO_100),
    (dict(library="diffusers", sampler="DDPMScheduler", schedule="ddpm", spacing="leading", clip=True), CLIPPED),
    (dict(library="diffusers", sampler="DDIMScheduler", schedule="ddpm", spacing="trailing"), UP_TO_100),
    (dict(library="diffusers", sampler="EulerDiscreteScheduler", schedule="ddpm", spacing="linspace"), UP_TO_100),
    (dict(library="diffusers", sampler="EulerDiscreteScheduler", schedule="karras", spacing="linspace"), UP_TO_100),
    (dict(library="diffusers", sampler="HeunDiscreteScheduler", schedule="karras", spacing="linspace"), UP_TO_100),
    (dict(library="diffusers", sampler="DPMSolverMultistepScheduler", schedule="ddpm", spacing="linspace"),
     UP_TO_100),
    (dict(library="diffusers", sampler="DPMSolverMultistepScheduler", schedule="karras", spacing="linspace"),
     UP_TO_100),
]


def device_specs() -> list[dict]:
    """The specs of the GPU run: every line of GRID at its own NFE values."""
    from diffbook.eval.specs import grid_specs

    return [spec for line, nfes in GRID for spec in grid_specs([line], nfes)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="images per row (one N for all rows)")
    p.add_argument("--deadline-s", type=float, default=420)
    p.add_argument("--ms-per-image-nfe", type=float, default=0.035, help="throughput assumed for the estimate")
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST .gz files (sets $DIFFBOOK_DATA)")
    a = p.parse_args(argv)
    if a.data:
        os.environ["DIFFBOOK_DATA"] = str(Path(a.data).resolve())
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)

    from diffbook.eval.compare import run_comparison
    from diffbook.eval.specs import image_nfes
    from diffbook.eval.summary import plot_fd_vs_nfe

    specs = device_specs()
    total = image_nfes(specs, a.n)
    print(json.dumps(dict(rows=len(specs), n=a.n, image_nfes=total,
                          estimated_sampling_s=round(total * a.ms_per_image_nfe / 1000, 1))), flush=True)
    t0 = time.perf_counter()
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    results = run_comparison(out / "compare.json", n=a.n, specs=specs, deadline_s=a.deadline_s,
                             command=f"python3 scripts/device_compare.py {argv_text}".strip())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    plot_fd_vs_nfe(results, ax)
    ax.set_title(f"fmnist-ddpm, N = {a.n} per point, {results['device']}")
    fig.tight_layout()
    fig.savefig(out / "fd_vs_nfe.png", dpi=120)
    print(json.dumps(results["summary"]["checks"], indent=2))
    print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
