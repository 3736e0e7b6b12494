"""Compare samplers at equal cost: sample quality of ``fmnist-ddpm`` against the number of network evaluations (NFE).

One concept: every sampler that applies to a DDPM, from diffbook and from diffusers, gets the same model, the same
seeded noise and the same NFE budget, and each row of the table reports the Frechet distance (FD) beside the
real-vs-real floor at the same N, precision/recall, how often the shipped classifier recognises the requested
class, and the sampling time. Command: ``python -m diffbook compare --out results.json`` (``--smoke`` on a CPU);
on the lent GPU machine ``scripts/device_compare.py``.

A row is a *spec* (:mod:`diffbook.eval.specs`).

What the rows are. DDPM ancestral sampling (``ancestral``; diffusers ``DDPMScheduler``) walks the reverse Markov
chain; Euler-Maruyama (``euler_maruyama``) discretises the reverse SDE; the rest integrate the probability-flow ODE
(PF-ODE): ``euler`` (first order; DDIM with eta = 0 is the same update, so ``ddim`` on a schedule *is* Euler on that
schedule, and the grid runs DDIM on DDPM timesteps and Euler on Karras sigmas), ``heun`` (second order) and
``dpmpp_2m`` (DPM-Solver++(2M), a second-order multistep exponential integrator). :func:`describe` names each row.

Choices, stated once:

* NFE grid :data:`diffbook.eval.specs.NFE_GRID`; how a grid value becomes steps: :func:`diffbook.eval.specs.grid_specs`.
* Noise: every row starts from the same seeded draws (common random numbers), x_T = z * the first noise level's
  prior std (diffbook: sqrt(1 + sigma_0^2), which is exactly diffusers' VP x_T = z; diffusers' Euler/Heun use
  z * init_noise_sigma). So identical configurations give identical images in both libraries (tested), and
  differences between rows are differences between samplers, not between draws.
* Labels i % 10 (balanced), batches of ``batch``, bf16 autocast on CUDA only, images clamped to [-1, 1].
* Timing: :func:`diffbook.eval.measure.timed` around the sampling alone, after one warm-up batch (1 step, the row's
  batch shape) per library, sampler and batch shape, so lazy CUDA initialisation is not timed.
* Where the libraries differ. Identical configurations give the same images to ~1e-5 (tested): DDIM, DDPM
  ancestral (also with ``clip``) and DPM-Solver++(2M) on DDPM timesteps, and CFG. diffusers' Euler and Heun
  start from z * sigma_max rather than z * sqrt(1 + sigma_max^2) (2e-5 relative; ~4e-3 in the images after 5
  steps); with Karras sigmas they map sigma to t by log-sigma interpolation and DPMSolverMultistepScheduler rounds
  t to integers, so the network sees slightly different t; their "linspace" spacing puts a 1-step run at t = 0
  (a degenerate one-step sampler). DDIMScheduler's ``clip_sample`` clamps x0_hat but keeps the unclipped eps
  (``use_clipped_model_output=False``, its default), where diffbook's clamped denoiser implies a clipped eps.
  The diffusers rows are measured as diffusers' pipelines run them.
* Order: the rows the issue's goals read (NFE <= 20, and the 1000-step ancestral reference) first, then the rest;
  each group cheapest first (images x NFE). ``deadline_s`` skips a row that would not finish in time (predicted from
  the throughput measured so far) and records it as skipped, so a time-limited run cuts the expensive extras.
"""

from __future__ import annotations

import json
import numbers
import time
from pathlib import Path

import torch

from ..data.fashion import load_fashion_mnist
from ..nets.classifier import extract_features, predict_from_features
from ..train.provenance import device_name, git_commit
from ..zoo.model import DiffusionModel
from ..zoo.registry import atomic_write_json, load_network, read_registry
from .measure import FLOOR_WHAT, measure, real_reference, sample_images, timed
from .specs import DEFAULT_LINES, NFE_GRID, check_spec, describe, grid_specs, is_reference, nfe_of
from .summary import summarize

__all__ = ["make_scheduler", "sample", "run_comparison"]


def make_scheduler(spec: dict, card: dict):
    """The diffusers scheduler of a diffusers spec, on the model's training schedule
    (:func:`diffbook.zoo.export.ddpm_scheduler_for`), ``clip_sample=False`` unless the spec says ``clip``."""
    import diffusers

    from ..zoo.export import ddpm_scheduler_for

    s = check_spec(spec, card["T"])
    if s["library"] != "diffusers":
        raise ValueError(f"spec {spec} is a diffbook spec; make_scheduler needs library='diffusers'.")
    opts = dict(timestep_spacing=s["spacing"])
    name = s["sampler"]
    if name == "DDPMScheduler":
        opts.update(variance_type="fixed_small", clip_sample=bool(s.get("clip")))
    elif name == "DDIMScheduler":
        opts.update(clip_sample=bool(s.get("clip")), set_alpha_to_one=True, steps_offset=0)
    else:
        opts.update(use_karras_sigmas=s["schedule"] == "karras")
        if name == "DPMSolverMultistepScheduler":
            opts.update(algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
    return getattr(diffusers, name).from_config(ddpm_scheduler_for(card).config, **opts)


def _sample_diffbook(spec, net, card, n, *, device, seed, batch):
    """diffbook's sampler through :func:`diffbook.eval.measure.sample_images` (:meth:`DiffusionModel.sample`), which
    starts x_T at the schedule's first level, guides, and clamps the (guided) x0_hat when ``clip`` is set, as
    diffusers' ``clip_sample`` does."""
    return sample_images(DiffusionModel(card.get("name", "model"), net, card), spec, n, batch=batch, seed=seed)


@torch.no_grad()
def _sample_diffusers(spec, net, card, n, *, device, seed, batch):
    """diffusers' pipeline loop (as :class:`diffbook.zoo.export.ClassConditionalDDPMPipeline`) over batches."""
    g = torch.Generator(device=device).manual_seed(seed)
    null, w = card.get("null_class"), float(spec.get("w") or 0.0)
    # only DDPMScheduler draws noise in step(); giving the generator to the others would not change their result
    step_kwargs = {"generator": g} if spec["sampler"] == "DDPMScheduler" else {}
    out = []
    for i in range(0, n, batch):
        b = min(batch, n - i)
        scheduler = make_scheduler(spec, card)  # fresh state (multistep history, Heun's half step) per batch
        scheduler.set_timesteps(spec["steps"])
        x = torch.randn(b, 1, 32, 32, generator=g, device=device) * scheduler.init_noise_sigma
        cond = {} if null is None else {"class_labels": torch.arange(i, i + b, device=device) % 10}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for t in scheduler.timesteps:
                xin = scheduler.scale_model_input(x, t)
                if w:
                    labels = cond["class_labels"]
                    both = net(torch.cat([xin, xin]), t,
                               class_labels=torch.cat([labels, torch.full_like(labels, null)])).sample.float()
                    eps_c, eps_u = both.chunk(2)
                    eps = eps_u + (1 + w) * (eps_c - eps_u)
                else:
                    eps = net(xin, t, **cond).sample.float()
                x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
        out.append(x.float().clamp(-1, 1))
    return torch.cat(out)


def sample(spec: dict, net, card: dict, n: int, *, device, seed: int = 0, batch: int = 2500) -> torch.Tensor:
    """Draw ``n`` images [n, 1, 32, 32] in [-1, 1] with one spec, from the eps-prediction UNet ``net`` of ``card``.

    diffbook specs go through :func:`diffbook.eval.measure.sample_images` (:meth:`DiffusionModel.sample`);
    diffusers specs through diffusers' own loop driving :func:`make_scheduler`. Same seed, same initial noise.
    """
    s = check_spec(spec, card["T"])
    device = torch.device(device)
    if s.get("w") and card.get("null_class") is None:
        raise ValueError(f"spec {spec} asks for guidance (w) but the model has no null class; drop 'w'.")
    fn = _sample_diffusers if s["library"] == "diffusers" else _sample_diffbook
    return fn(s, net, card, n, device=device, seed=seed, batch=batch)


class _Counted:
    """A network that counts its calls, so a row's NFE is counted, not assumed (other attributes: the network's)."""

    def __init__(self, net):
        self.net, self.calls = net, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.net(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.net, name)


# ----------------------------------------------------------------------------------------------- the run
def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _order(specs, n: int, T: int) -> list[dict]:
    """Goal rows (NFE target <= 20, the reference) first, then the rest; each group cheapest first (stable)."""
    def key(spec):
        goal = spec.get("nfe_target", nfe_of(spec)) <= 20 or is_reference(spec, T)
        return (0 if goal else 1, spec.get("n", n) * nfe_of(spec))

    return sorted(specs, key=key)


def run_comparison(out_path, *, n: int = 10_000, nfe_grid=NFE_GRID, model: str = "fmnist-ddpm", root=None,
                   clf_root=None, deadline_s: float | None = None, device=None, specs=None, batch: int = 2500,
                   seed: int = 0, command: str | None = None, on_progress=None) -> dict:
    """Measure every spec on ``n`` images and write the table to ``out_path`` (JSON) after every row.

    ``specs`` defaults to :func:`grid_specs` of :data:`DEFAULT_LINES` at ``nfe_grid`` (ignored when ``specs`` is
    given). The real-vs-real floor is computed once per N by :func:`diffbook.eval.measure.real_reference`: the first N test
    images against N random training images (seed 0), in the features of the classifier ``fmnist-clf`` in
    ``clf_root`` (default: the shipped one). Each row holds the spec, ``library``, ``nfe`` (counted calls per
    image), ``n``, :func:`diffbook.eval.measure.measure`'s fd, floor, fd_over_floor, precision, recall, density and
    coverage, ``excess`` = fd - floor, ``sample_s`` and ``ms_per_image`` (sampling only), ``row_s`` (with features
    and metrics), ``class_agreement`` (the classifier's prediction equals the requested class) and ``what``.
    ``deadline_s`` (seconds from the start) skips rows predicted to end after it (``skipped``, ``estimated_s``).
    ``on_progress(path)`` is called after every write. Returns the results dict (with :func:`summarize`).
    """
    import diffusers

    t_start = time.perf_counter()
    device = _resolve_device(device)
    out_path = Path(out_path)
    for name, v in (("n", n), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, numbers.Real)
                                   or deadline_s < 0):
        raise ValueError(f"deadline_s must be a number of seconds >= 0 or None, got {deadline_s!r}.")

    net, card = load_network(model, root=root, device=device)
    if card.get("parameterisation") != "eps" or card.get("arch") != "unet2d":
        raise ValueError(f"model {model!r} is not an eps-prediction DDPM UNet; compare runs on one such as "
                         "'fmnist-ddpm'.")
    T = card["T"]
    specs = grid_specs(DEFAULT_LINES, nfe_grid, T=T) if specs is None else [check_spec(s, T) for s in specs]
    if not specs:
        raise ValueError("no specs to run: pass specs=[...] or an nfe_grid that some sampler can meet.")
    grid = sorted({s.get("nfe_target", nfe_of(s)) for s in specs})

    clf, _ = load_network("fmnist-clf", clf_root, device=device)
    test_x, _ = load_fashion_mnist("test", pad_to=32)
    train_x, _ = load_fashion_mnist("train", pad_to=32)
    n_min, n_max = clf.config["feature_dim"] + 1, test_x.shape[0]
    for m in {n, *(s["n"] for s in specs if "n" in s)}:
        if not n_min <= m <= n_max:
            raise ValueError(f"N = {m} images per row is out of range: the floor uses the first N of the "
                             f"{n_max} test images, and a Frechet distance in {n_min - 1}-d features needs "
                             f"N >= {n_min}; use N in [{n_min}, {n_max}].")

    floors: dict[int, tuple[torch.Tensor, float]] = {}

    def floor_at(m: int):
        if m not in floors:
            floors[m] = real_reference(clf, test_x, train_x, m, device)
            results["floors"][str(m)] = round(floors[m][1], 4)
        return floors[m]

    reg = read_registry(root)
    results = dict(
        what=f"Samplers compared at equal NFE on {model}: FD (in the shipped classifier's features) beside the "
             "real-vs-real floor, precision/recall, class agreement and sampling time, diffbook and diffusers.",
        command=command or f"diffbook.eval.compare.run_comparison(n={n}, nfe_grid={grid})",
        commit=git_commit(), device=device_name(device), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        torch=torch.__version__, diffusers=diffusers.__version__, model=model,
        model_sha256=reg.get(model, {}).get("sha256"), n=n, nfe_grid=grid, seed=seed,
        batch=batch, deadline_s=deadline_s, numerics="bf16 autocast" if device.type == "cuda" else "float32",
        floors={}, rows=[])

    def dump():
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        results["summary"] = summarize(results)
        atomic_write_json(out_path, results)
        if on_progress:
            on_progress(out_path)

    fd0 = floor_at(n)[1]
    results["floor"] = dict(fd=round(fd0, 4), n=n, what=FLOOR_WHAT.format(n=n))
    dump()

    warm: set = set()
    spent_s, spent_nfes, overhead_s = 0.0, 0, []
    for spec in _order(specs, n, T):
        m = spec.get("n", n)
        cost = m * nfe_of(spec)
        base = dict(spec, n=m, nfe=nfe_of(spec), what=describe(spec))
        elapsed = time.perf_counter() - t_start
        if deadline_s is not None:
            estimate = spent_s / spent_nfes * cost + (sum(overhead_s) / len(overhead_s)) if spent_nfes else 0.0
            if elapsed + estimate > deadline_s:
                results["rows"].append(dict(base, skipped="deadline", estimated_s=round(estimate, 1),
                                            at_s=round(elapsed, 1)))
                print(json.dumps(results["rows"][-1]), flush=True)
                dump()
                continue
        t_row = time.perf_counter()
        real, floor = floor_at(m)
        shape = (spec["library"], spec["sampler"], min(batch, m), bool(spec.get("w")))
        if shape not in warm:  # one warm-up batch, 1 step, outside the timing
            sample(dict(spec, steps=1), net, card, min(batch, m), device=device, seed=seed, batch=batch)
            warm.add(shape)
        counted = _Counted(net)
        imgs, sec = timed(lambda: sample(spec, counted, card, m, device=device, seed=seed, batch=batch), device)
        n_batches = -(-m // batch)
        feats = extract_features(clf, imgs)
        row = dict(base, nfe=counted.calls // n_batches, sample_s=round(sec, 3),
                   ms_per_image=round(1000 * sec / m, 4), **measure(feats, real, floor))
        row["excess"] = round(row["fd"] - row["floor"], 4)
        labels = torch.arange(m) % 10
        row["class_agreement"] = (None if card.get("null_class") is None else
                                  round((predict_from_features(clf, feats) == labels).double().mean().item(), 4))
        row["row_s"] = round(time.perf_counter() - t_row, 3)
        spent_s, spent_nfes = spent_s + sec, spent_nfes + cost
        overhead_s.append(row["row_s"] - sec)
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
        dump()
    dump()
    return results
