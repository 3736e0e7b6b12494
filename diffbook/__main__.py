"""Command line: ``python -m diffbook train MODEL --config {smoke,release}``, ``python -m diffbook zoo`` and
``python -m diffbook compare`` (samplers at equal NFE, see diffbook.compare)."""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffbook", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one model (resumes from OUT/checkpoint.pt if present)")
    t.add_argument("model", help="fmnist-ddpm, fmnist-ncsn, fmnist-gan or fmnist-fast (distils fmnist-ddpm)")
    t.add_argument("--config", default="smoke", choices=["smoke", "release"])
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
    a = p.parse_args(argv)
    if a.cmd == "train":
        from .training import train

        card = train(a.model, a.config, a.out, steps=a.steps, fresh=a.fresh, measure_eager=a.measure_eager,
                     overrides=dict(_key_value(kv, "--set", json.loads) for kv in a.set))
        print(json.dumps({k: card[k] for k in ("model", "steps", "train_wall_s", "img_s", "device")}))
    elif a.cmd == "compare":
        from . import compare

        grid = tuple(a.nfe) if a.nfe else (compare.SMOKE_NFE if a.smoke else compare.NFE_GRID)
        specs = compare.grid_specs(compare.SMOKE_LINES if a.smoke else compare.DEFAULT_LINES, grid)
        n = a.n or (compare.SMOKE_N if a.smoke else 10_000)
        argv_text = " ".join(sys.argv[1:] if argv is None else argv)
        res = compare.run_comparison(a.out, n=n, nfe_grid=grid, specs=specs, deadline_s=a.deadline_s,
                                     device=a.device, command=f"python -m diffbook {argv_text}")
        print(json.dumps(res["summary"]["checks"], indent=2))
    else:
        from .release import run_zoo

        run_zoo("release" if a.release else a.config, a.out, n_eval=a.n_eval, deadline_s=a.deadline_s,
                models=tuple(a.models), budgets=dict(_key_value(kv, "--budget", float) for kv in a.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
