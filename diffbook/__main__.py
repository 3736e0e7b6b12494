"""Command line: ``python -m diffbook train MODEL --config {smoke,release}`` and ``python -m diffbook zoo``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one model (resumes from OUT/checkpoint.pt if present)")
    t.add_argument("model", help="fmnist-ddpm, fmnist-ncsn or fmnist-gan")
    t.add_argument("--config", default="smoke", choices=["smoke", "release"])
    t.add_argument("--out", default="runs", help="output folder for weights, card, log and checkpoint")
    t.add_argument("--steps", type=int, default=None, help="override the number of steps (disables the time budget)")
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--measure-eager", action="store_true", help="also time a plain eager fp32 loop (baseline)")
    z = sub.add_parser("zoo", help="train and evaluate every model in one run")
    z.add_argument("--config", default="smoke", choices=["smoke", "release"])
    z.add_argument("--release", action="store_true", help="same as --config release")
    z.add_argument("--out", default="runs/zoo")
    z.add_argument("--n-eval", type=int, default=None)
    z.add_argument("--deadline-s", type=float, default=None)
    a = p.parse_args(argv)
    if a.cmd == "train":
        from .training import train

        card = train(a.model, a.config, a.out, steps=a.steps, fresh=a.fresh, measure_eager=a.measure_eager)
        print(json.dumps({k: card[k] for k in ("model", "steps", "train_wall_s", "img_s", "device")}))
    else:
        from .release import run_zoo

        run_zoo("release" if a.release else a.config, a.out, n_eval=a.n_eval, deadline_s=a.deadline_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
