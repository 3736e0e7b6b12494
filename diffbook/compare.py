"""Compare samplers at equal cost: sample quality of ``fmnist-ddpm`` against the number of network evaluations (NFE).

One concept: every sampler that applies to a DDPM, from diffbook and from diffusers, gets the same model, the same
seeded noise and the same NFE budget, and each row of the table reports the Frechet distance (FD) beside the
real-vs-real floor at the same N, precision/recall, how often the shipped classifier recognises the requested
class, and the sampling time. Command: ``python -m diffbook compare --out results.json`` (``--smoke`` on a CPU);
on the lent GPU machine ``scripts/device_compare.py``.

A *spec* is one row, a dict in the shape of :data:`diffbook.release.EVAL_SPECS`:

=============  ======================================================================================================
``library``    "diffbook" (the default) or "diffusers"
``sampler``    diffbook: a key of :data:`diffbook.evaluate.SAMPLERS` ("ancestral", "ddim", "euler", "heun",
               "dpmpp_2m", "euler_maruyama"); diffusers: a scheduler class name (see :data:`DIFFUSERS_SCHEDULERS`)
``schedule``   "ddpm": the model's own discrete timesteps t (diffbook: sigma_t at :func:`schedules.ddpm_timesteps`;
               diffusers: the scheduler's ``set_timesteps``), spaced by ``spacing``; "karras": Karras et al.'s
               rho = 7 noise levels between the model's sigma_min and sigma_max (diffusers: ``use_karras_sigmas``)
``spacing``    diffusers' ``timestep_spacing``: "leading" (DDIM paper), "trailing" (Lin et al. 2024), "linspace"
``steps``      the number of steps; NFE = steps, except Heun: 2 steps - 1 (:func:`nfe_of`)
``w``          optional classifier-free guidance weight against the null class (diffusers: guidance_scale = 1 + w)
``clip``       optional bool: clamp x0_hat to [-1, 1] at every step (diffusers: ``clip_sample=True``, which only the
               DDPM and DDIM schedulers have)
``n``          optional: this row's sample count (default: run_comparison's ``n``), measured against its own floor
``nfe_target`` the grid value the row was made for (:func:`grid_specs`); informational
=============  ======================================================================================================

What the rows are. DDPM ancestral sampling (``ancestral``; diffusers ``DDPMScheduler``) walks the reverse Markov
chain; Euler-Maruyama (``euler_maruyama``) discretises the reverse SDE; the rest integrate the probability-flow ODE
(PF-ODE): ``euler`` (first order; DDIM with eta = 0 is the same update, so ``ddim`` on a schedule *is* Euler on that
schedule, and the grid runs DDIM on DDPM timesteps and Euler on Karras sigmas), ``heun`` (second order) and
``dpmpp_2m`` (DPM-Solver++(2M), a second-order multistep exponential integrator). :func:`describe` names each row.

Choices, stated once:

* NFE grid :data:`NFE_GRID`. For a grid value m a sampler gets the most steps whose NFE <= m, and the row records the
  exact NFE. Heun with 1 step is allowed: it is a single Euler step (no correction on the step to sigma = 0), NFE 1.
  Heun at m = 2 would again be 1 step, a duplicate, so it is left out. A "ddpm" schedule cannot take more than T steps.
* Noise: every row starts from the same seeded draws (common random numbers), x_T = z * the first noise level's
  prior std (diffbook: sqrt(1 + sigma_0^2), which is exactly diffusers' VP x_T = z; diffusers' Euler/Heun use
  z * init_noise_sigma). So identical configurations give identical images in both libraries (tested), and
  differences between rows are differences between samplers, not between draws.
* Labels i % 10 (balanced), batches of ``batch``, bf16 autocast on CUDA only, images clamped to [-1, 1].
* Timing: :func:`diffbook.evaluate.timed` around the sampling alone, after one warm-up batch (1 step, the row's
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
import math
import numbers
import time
from pathlib import Path

import torch

from . import zoo
from .evaluate import FLOOR_WHAT, SAMPLERS, measure, real_reference, sample_images, timed
from .evaluate import nfe_of as _diffbook_nfe_of

__all__ = [
    "NFE_GRID",
    "DIFFBOOK_LINES",
    "DIFFUSERS_LINES",
    "DEFAULT_LINES",
    "SMOKE_LINES",
    "SMOKE_N",
    "GOALS",
    "check_spec",
    "nfe_of",
    "steps_for_nfe",
    "grid_specs",
    "image_nfes",
    "describe",
    "label",
    "make_scheduler",
    "sample",
    "run_comparison",
    "summarize",
    "plot_fd_vs_nfe",
]

NFE_GRID = (1, 2, 5, 10, 20, 50, 100, 250, 1000)

# The diffusers schedulers that do what a diffbook sampler does, and which schedules each one offers.
DIFFUSERS_SCHEDULERS = {
    "DDPMScheduler": dict(same_as="ancestral", schedules=("ddpm",), clip=True, default_spacing="leading"),
    "DDIMScheduler": dict(same_as="ddim", schedules=("ddpm",), clip=True, default_spacing="leading"),
    "EulerDiscreteScheduler": dict(same_as="euler", schedules=("ddpm", "karras"), clip=False,
                                   default_spacing="linspace"),
    "HeunDiscreteScheduler": dict(same_as="heun", schedules=("ddpm", "karras"), clip=False,
                                  default_spacing="linspace"),
    "DPMSolverMultistepScheduler": dict(same_as="dpmpp_2m", schedules=("ddpm", "karras"), clip=False,
                                        default_spacing="linspace"),
}

# A *line* is a spec without ``steps``: one sampler on one schedule, run at every NFE of a grid (grid_specs).
DIFFBOOK_LINES = (
    dict(sampler="ancestral", schedule="ddpm", spacing="trailing"),
    dict(sampler="ancestral", schedule="ddpm", spacing="leading"),
    dict(sampler="ancestral", schedule="karras"),
    dict(sampler="ddim", schedule="ddpm", spacing="trailing"),
    dict(sampler="ddim", schedule="ddpm", spacing="leading"),
    dict(sampler="euler", schedule="karras"),  # = DDIM on Karras sigmas
    dict(sampler="heun", schedule="karras"),
    dict(sampler="heun", schedule="ddpm", spacing="trailing"),
    dict(sampler="dpmpp_2m", schedule="karras"),
    dict(sampler="dpmpp_2m", schedule="ddpm", spacing="trailing"),
    dict(sampler="dpmpp_2m", schedule="ddpm", spacing="leading"),
    dict(sampler="euler_maruyama", schedule="karras"),
    dict(sampler="euler_maruyama", schedule="ddpm", spacing="trailing"),
)
DIFFUSERS_LINES = (
    dict(library="diffusers", sampler="DDPMScheduler", schedule="ddpm", spacing="leading"),
    dict(library="diffusers", sampler="DDPMScheduler", schedule="ddpm", spacing="trailing"),
    dict(library="diffusers", sampler="DDIMScheduler", schedule="ddpm", spacing="leading"),
    dict(library="diffusers", sampler="DDIMScheduler", schedule="ddpm", spacing="trailing"),
    dict(library="diffusers", sampler="EulerDiscreteScheduler", schedule="ddpm", spacing="linspace"),
    dict(library="diffusers", sampler="EulerDiscreteScheduler", schedule="karras", spacing="linspace"),
    dict(library="diffusers", sampler="HeunDiscreteScheduler", schedule="ddpm", spacing="linspace"),
    dict(library="diffusers", sampler="HeunDiscreteScheduler", schedule="karras", spacing="linspace"),
    dict(library="diffusers", sampler="DPMSolverMultistepScheduler", schedule="ddpm", spacing="linspace"),
    dict(library="diffusers", sampler="DPMSolverMultistepScheduler", schedule="karras", spacing="linspace"),
)
DEFAULT_LINES = DIFFBOOK_LINES + DIFFUSERS_LINES

# ``--smoke``: every sampler and scheduler once, at NFE 1 and 2, on N = 130 images: the smallest N whose 128-d
# feature covariance is not singular (d + 1 = 129), so the Frechet distance is defined.
SMOKE_LINES = (
    dict(sampler="ancestral", schedule="ddpm", spacing="trailing"),
    dict(sampler="ddim", schedule="ddpm", spacing="trailing"),
    dict(sampler="euler", schedule="karras"),
    dict(sampler="heun", schedule="karras"),
    dict(sampler="dpmpp_2m", schedule="karras"),
    dict(sampler="euler_maruyama", schedule="karras"),
    *(dict(library="diffusers", sampler=s, schedule="ddpm", spacing="trailing") for s in DIFFUSERS_SCHEDULERS),
)
SMOKE_NFE = (1, 2)
SMOKE_N = 130

# The goals: at NFE m the best diffbook sampler's excess FD (fd - floor) is within ``factor`` times the
# excess of the 1000-step ancestral sampler; and at every NFE diffbook's best <= diffusers' best.
GOALS = ((10, 1.3), (20, 1.1))

_SPEC_KEYS = {"library", "sampler", "schedule", "spacing", "steps", "w", "clip", "n", "nfe_target", "eta"}
_SPACINGS = ("leading", "trailing", "linspace")


# ----------------------------------------------------------------------------------------------- specs and NFE
def check_spec(spec: dict, T: int | None = None) -> dict:
    """Return ``spec`` checked and normalised (``library``, ``schedule`` and, where it applies, ``spacing`` filled in).

    ``T`` is the model's number of training timesteps (a "ddpm" schedule takes at most T steps; None: not
    checked). Raises one ValueError naming the problem and the fix.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"a spec must be a dict like {{'sampler': 'ddim', 'schedule': 'ddpm', 'steps': 10}}, "
                         f"got {type(spec).__name__}.")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"spec {spec} has unknown key(s) {sorted(unknown)}; the keys are {sorted(_SPEC_KEYS)}.")
    s = dict(spec)
    lib = s.setdefault("library", "diffbook")
    if lib not in ("diffbook", "diffusers"):
        raise ValueError(f"spec {spec}: library must be 'diffbook' or 'diffusers', got {lib!r}.")
    if lib == "diffbook":
        if s.get("sampler") not in SAMPLERS:
            raise ValueError(f"spec {spec}: unknown diffbook sampler {s.get('sampler')!r}; use one of "
                             f"{sorted(SAMPLERS)}.")
        schedules = ("ddpm", "karras")
    else:
        if s.get("sampler") not in DIFFUSERS_SCHEDULERS:
            raise ValueError(f"spec {spec}: unknown diffusers scheduler {s.get('sampler')!r}; use one of "
                             f"{sorted(DIFFUSERS_SCHEDULERS)}.")
        info = DIFFUSERS_SCHEDULERS[s["sampler"]]
        schedules = info["schedules"]
        if s.get("clip") and not info["clip"]:
            raise ValueError(f"spec {spec}: diffusers' {s['sampler']} has no clip_sample option; drop 'clip' "
                             "(only DDPMScheduler and DDIMScheduler clip x0_hat).")
        if "eta" in s:
            raise ValueError(f"spec {spec}: 'eta' is a diffbook DDIM option; drop it from diffusers specs.")
    sched = s.setdefault("schedule", "karras" if lib == "diffbook" else "ddpm")
    if sched not in schedules:
        raise ValueError(f"spec {spec}: {lib} {s['sampler']} cannot use schedule {sched!r}; use one of "
                         f"{list(schedules)}.")
    if "spacing" in s or sched == "ddpm" or lib == "diffusers":
        if lib == "diffbook" and sched != "ddpm":
            raise ValueError(f"spec {spec}: 'spacing' only applies to schedule 'ddpm'; drop it.")
        default = "trailing" if lib == "diffbook" else DIFFUSERS_SCHEDULERS[s["sampler"]]["default_spacing"]
        if s.setdefault("spacing", default) not in _SPACINGS:
            raise ValueError(f"spec {spec}: spacing must be one of {list(_SPACINGS)}, got {s['spacing']!r}.")
    steps = s.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"spec {spec}: steps must be an integer >= 1, got {steps!r}.")
    if sched == "ddpm" and T is not None and steps > T:
        raise ValueError(f"spec {spec}: a 'ddpm' schedule has only T = {T} timesteps, so at most {T} steps; "
                         "use fewer steps or schedule 'karras'.")
    if "w" in s and (isinstance(s["w"], bool) or not isinstance(s["w"], numbers.Real) or not math.isfinite(s["w"])):
        raise ValueError(f"spec {spec}: w (the guidance weight) must be a finite number, got {s['w']!r}.")
    if "clip" in s and not isinstance(s["clip"], bool):
        raise ValueError(f"spec {spec}: clip must be True or False, got {s['clip']!r}.")
    if "n" in s and (isinstance(s["n"], bool) or not isinstance(s["n"], int) or s["n"] < 1):
        raise ValueError(f"spec {spec}: n must be a positive integer (images for this row), got {s['n']!r}.")
    return s


def nfe_of(spec: dict) -> int:
    """Network evaluations per image of a spec: :func:`diffbook.evaluate.nfe_of` for diffbook (Heun 2 steps - 1);
    diffusers' HeunDiscreteScheduler lists every inner noise level twice, so it too makes 2 steps - 1 calls, and
    the other schedulers one per step. (A guided call, w != 0, is one call on a batch of 2 B.)"""
    if spec.get("library", "diffbook") == "diffusers":
        return 2 * spec["steps"] - 1 if spec["sampler"] == "HeunDiscreteScheduler" else spec["steps"]
    return _diffbook_nfe_of(spec)


def steps_for_nfe(spec: dict, nfe: int) -> int:
    """The most steps whose NFE is at most ``nfe``: ``nfe`` itself, or (nfe + 1) // 2 for Heun (>= 1)."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"an NFE budget must be an integer >= 1, got {nfe!r}.")
    heun = spec.get("sampler") in ("heun", "HeunDiscreteScheduler")
    return (nfe + 1) // 2 if heun else nfe


def _check_grid(nfe_grid) -> tuple[int, ...]:
    try:
        grid = tuple(nfe_grid)
    except TypeError:
        raise ValueError(f"nfe_grid must be a sequence of integers >= 1, e.g. {NFE_GRID}, got {nfe_grid!r}.") from None
    if not grid or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in grid):
        raise ValueError(f"nfe_grid must be a non-empty sequence of integers >= 1, e.g. {NFE_GRID}, got {nfe_grid!r}.")
    return tuple(sorted(set(grid)))


def grid_specs(lines=DEFAULT_LINES, nfe_grid=NFE_GRID, *, T: int = 1000) -> list[dict]:
    """Expand each line (a spec without ``steps``) to one spec per NFE grid value, with ``nfe_target`` set.

    What a method cannot do is left out: a "ddpm" schedule beyond T steps, and a steps count an earlier grid value
    already produced (Heun at NFE 2 is 1 step, NFE 1 again). Exact duplicates across lines are dropped.
    """
    grid = _check_grid(nfe_grid)
    out, seen = [], set()
    for line in lines:
        used = set()
        for m in grid:
            steps = steps_for_nfe(line, m)
            if steps in used or (line.get("schedule") == "ddpm" and steps > T):
                continue
            used.add(steps)
            spec = check_spec(dict(line, steps=steps, nfe_target=m), T)
            key = json.dumps({k: v for k, v in spec.items() if k != "nfe_target"}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(spec)
    return out


def image_nfes(specs, n: int) -> int:
    """Total network evaluations (images x NFE) of running ``specs`` on ``n`` images each (or each spec's ``n``)."""
    return sum(spec.get("n", n) * nfe_of(spec) for spec in specs)


_WHAT = {
    "ancestral": "DDPM ancestral sampling (the reverse chain through q(x_{i+1} | x_i, x0_hat); = DDIM with eta = 1)",
    "ddim": "DDIM, eta = 0 (the same update as Euler on the PF-ODE in sigma)",
    "euler": "PF-ODE, Euler (first order)",
    "heun": "PF-ODE, Heun (second order; 2 calls per step, 1 on the last)",
    "dpmpp_2m": "PF-ODE, DPM-Solver++(2M) (second-order multistep exponential integrator)",
    "euler_maruyama": "reverse SDE, Euler-Maruyama",
    "pc": "reverse SDE, predictor-corrector (Langevin corrector)",
    "annealed_langevin": "annealed Langevin dynamics",
    "DDPMScheduler": "diffusers DDPMScheduler (variance fixed_small): DDPM ancestral sampling",
    "DDIMScheduler": "diffusers DDIMScheduler (eta = 0, set_alpha_to_one, steps_offset 0): DDIM",
    "DDIMScheduler clip": "diffusers DDIMScheduler with clip_sample (x0_hat clamped, eps kept unclipped: "
                          "use_clipped_model_output=False): DDIM",
    "EulerDiscreteScheduler": "diffusers EulerDiscreteScheduler (no churn): PF-ODE, Euler",
    "HeunDiscreteScheduler": "diffusers HeunDiscreteScheduler: PF-ODE, Heun",
    "DPMSolverMultistepScheduler": "diffusers DPMSolverMultistepScheduler (dpmsolver++, order 2, final sigma 0): "
                                   "DPM-Solver++(2M)",
}


def describe(spec: dict) -> str:
    """What a row is, in words: the method, its schedule and its options."""
    s = check_spec(spec)
    if s["schedule"] == "ddpm":
        sched = f"on DDPM timesteps, {s['spacing']} spacing"
    else:
        sched = "on Karras sigmas (rho = 7)" + (f", {s['spacing']} timesteps" if s["library"] == "diffusers" else "")
    what = _WHAT[s["sampler"] + (" clip" if s.get("clip") and s["sampler"] == "DDIMScheduler" else "")]
    extra = "".join([", x0_hat clamped to [-1, 1]" if s.get("clip") else "",
                     f", CFG w = {s['w']}" if s.get("w") else ""])
    return f"{what}, {sched}{extra}"


def label(spec: dict) -> str:
    """A short name of a spec's line (everything but steps), e.g. ``diffbook ddim ddpm/trailing``."""
    lib = spec.get("library", "diffbook")
    sched = spec.get("schedule", "karras" if lib == "diffbook" else "ddpm")
    if spec.get("spacing") and (sched == "ddpm" or lib == "diffusers"):
        sched += "/" + spec["spacing"]
    opts = (" clip" if spec.get("clip") else "") + (f" w={spec['w']}" if spec.get("w") else "")
    return f"{lib} {spec['sampler']} {sched}{opts}"


def _is_reference(spec: dict, T: int) -> bool:
    """The 1000-step (T-step) DDPM ancestral sampler, unguided and unclipped: the issue's reference."""
    return (spec.get("library", "diffbook") == "diffbook" and spec.get("sampler") == "ancestral"
            and spec.get("schedule") == "ddpm" and spec.get("steps") == T and not spec.get("w")
            and not spec.get("clip"))


# ----------------------------------------------------------------------------------------------- sampling
def make_scheduler(spec: dict, card: dict):
    """The diffusers scheduler of a diffusers spec, on the model's training schedule
    (:func:`diffbook.export.ddpm_scheduler_for`), ``clip_sample=False`` unless the spec says ``clip``."""
    import diffusers

    from .export import ddpm_scheduler_for

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
    """diffbook's sampler through :func:`diffbook.evaluate.sample_images`, which starts x_T at the schedule's first
    level, guides, and clamps the (guided) x0_hat when ``clip`` is set, as diffusers' ``clip_sample`` does."""
    denoiser, sigma_min, sigma_max, prior_std = zoo.as_denoiser(net, card)
    plain = {k: v for k, v in spec.items() if k not in ("library", "nfe_target", "n")}
    return sample_images(denoiser, card, plain, n, sigma_min=sigma_min, sigma_max=sigma_max, prior_std=prior_std,
                         device=device, batch=batch, seed=seed)


@torch.no_grad()
def _sample_diffusers(spec, net, card, n, *, device, seed, batch):
    """diffusers' pipeline loop (as :class:`diffbook.export.ClassConditionalDDPMPipeline`) over batches."""
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

    diffbook specs go through :func:`diffbook.evaluate.sample_images` (the denoiser of :func:`zoo.as_denoiser`);
    diffusers specs through diffusers' own loop driving :func:`make_scheduler`. Same seed, same initial noise.
    """
    s = check_spec(spec, card["T"])
    device = torch.device(device)
    if s.get("w") and card.get("null_class") is None:
        raise ValueError(f"spec {spec} asks for guidance (w) but the model has no null class; drop 'w'.")
    fn = _sample_diffusers if s["library"] == "diffusers" else _sample_diffbook
    return fn(s, net, card, n, device=device, seed=seed, batch=batch)


class _Counted:
    """A network that counts its calls, so a row's NFE is counted, not assumed."""

    def __init__(self, net):
        self.net, self.calls = net, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.net(*args, **kwargs)


# ----------------------------------------------------------------------------------------------- the run
def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _order(specs, n: int, T: int) -> list[dict]:
    """Goal rows (NFE target <= 20, the reference) first, then the rest; each group cheapest first (stable)."""
    def key(spec):
        goal = spec.get("nfe_target", nfe_of(spec)) <= 20 or _is_reference(spec, T)
        return (0 if goal else 1, spec.get("n", n) * nfe_of(spec))

    return sorted(specs, key=key)


def run_comparison(out_path, *, n: int = 10_000, nfe_grid=NFE_GRID, model: str = "fmnist-ddpm", root=None,
                   clf_root=None, deadline_s: float | None = None, device=None, specs=None, batch: int = 2500,
                   seed: int = 0, command: str | None = None, on_progress=None) -> dict:
    """Measure every spec on ``n`` images and write the table to ``out_path`` (JSON) after every row.

    ``specs`` defaults to :func:`grid_specs` of :data:`DEFAULT_LINES` at ``nfe_grid`` (ignored when ``specs`` is
    given). The real-vs-real floor is computed once per N by :func:`diffbook.evaluate.real_reference`: the first N test
    images against N random training images (seed 0), in the features of the classifier ``fmnist-clf`` in
    ``clf_root`` (default: the shipped one). Each row holds the spec, ``library``, ``nfe`` (counted calls per
    image), ``n``, :func:`diffbook.evaluate.measure`'s fd, floor, fd_over_floor, precision, recall, density and
    coverage, ``excess`` = fd - floor, ``sample_s`` and ``ms_per_image`` (sampling only), ``row_s`` (with features
    and metrics), ``class_agreement`` (the classifier's prediction equals the requested class) and ``what``.
    ``deadline_s`` (seconds from the start) skips rows predicted to end after it (``skipped``, ``estimated_s``).
    ``on_progress(path)`` is called after every write. Returns the results dict (with :func:`summarize`).
    """
    import diffusers

    from .classifier import extract_features, load_classifier, predict_from_features
    from .fashion import load_fashion_mnist
    from .release import _git_commit
    from .training import _device_name

    t_start = time.perf_counter()
    device = _resolve_device(device)
    out_path = Path(out_path)
    for name, v in (("n", n), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, numbers.Real)
                                   or deadline_s < 0):
        raise ValueError(f"deadline_s must be a number of seconds >= 0 or None, got {deadline_s!r}.")

    net, card = zoo.load(model, root=root, device=device)
    if card.get("parameterisation") != "eps" or card.get("arch") != "unet2d":
        raise ValueError(f"model {model!r} is not an eps-prediction DDPM UNet; compare runs on one such as "
                         "'fmnist-ddpm'.")
    T = card["T"]
    specs = grid_specs(DEFAULT_LINES, nfe_grid, T=T) if specs is None else [check_spec(s, T) for s in specs]
    if not specs:
        raise ValueError("no specs to run: pass specs=[...] or an nfe_grid that some sampler can meet.")
    grid = sorted({s.get("nfe_target", nfe_of(s)) for s in specs})

    clf = load_classifier(clf_root, device=device)
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

    reg = zoo.read_registry(root)
    results = dict(
        what=f"Samplers compared at equal NFE on {model}: FD (in the shipped classifier's features) beside the "
             "real-vs-real floor, precision/recall, class agreement and sampling time, diffbook and diffusers.",
        command=command or f"diffbook.compare.run_comparison(n={n}, nfe_grid={grid})",
        commit=_git_commit(), device=_device_name(device), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        torch=torch.__version__, diffusers=diffusers.__version__, model=model,
        model_sha256=reg.get(model, {}).get("sha256"), n=n, nfe_grid=grid, seed=seed,
        batch=batch, deadline_s=deadline_s, numerics="bf16 autocast" if device.type == "cuda" else "float32",
        floors={}, rows=[])

    def dump():
        results["wall_s"] = round(time.perf_counter() - t_start, 1)
        results["summary"] = summarize(results)
        zoo.atomic_write_json(out_path, results)
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


# ----------------------------------------------------------------------------------------------- reading results
def _excess(row: dict) -> float:
    return row["fd"] - row["floor"]


def _brief(row: dict | None) -> dict | None:
    if row is None:
        return None
    keep = ("library", "sampler", "schedule", "spacing", "steps", "nfe", "n", "clip", "fd", "floor")
    return {**{k: row[k] for k in keep if k in row}, "excess": round(_excess(row), 4)}


def summarize(results: dict, *, tie_rtol: float = 0.01) -> dict:
    """The issue's goal checks, read from a :func:`run_comparison` results dict (or its JSON).

    excess = fd - floor (each row against the floor at its own N). The reference is the T-step (1000-step)
    diffbook ancestral sampler. "Best at NFE m" is the lowest excess among rows with nfe <= m (the best a budget
    of m evaluations buys); guided rows (w != 0) change the target distribution and are left out. diffbook's best
    counts as <= diffusers' best within a relative ``tie_rtol`` (1 %): the same method in both libraries differs
    only by round-off and diffusers' slightly different x_T scale for Euler/Heun (measured: 2e-4 relative in FD),
    which must not decide the check; ``margin`` reports the raw differences. Returns::

        reference        the reference row (brief) or None
        best             {"diffbook": {m: brief row or None}, "diffusers": {...}} for every grid value m
        ratio            {m: best diffbook excess / reference excess, or None} for the goals' m
        margin           {m: best diffbook excess - best diffusers excess, or None} for every grid value m
        checks           {"nfe10_within_1.3x_of_reference": bool or None, "nfe20_within_1.1x_of_reference": ...,
                          "diffbook_le_diffusers_at_nfe{m}": bool or None for every m}
        all_pass         True / False, or None when any check could not be made (missing rows)
        excess_by_line   {label: {nfe: excess}}: what each sampler and schedule buys at each NFE

    A check is None where its rows are missing (skipped, not run, or not in the grid).
    """
    rows = [r for r in results.get("rows", []) if r.get("fd") is not None and r.get("floor") is not None]
    unguided = [r for r in rows if not r.get("w")]
    refs = [r for r in unguided if r.get("library", "diffbook") == "diffbook" and r.get("sampler") == "ancestral"
            and r.get("schedule") == "ddpm" and r.get("nfe") == 1000 and not r.get("clip")]
    ref = min(refs, key=_excess) if refs else None
    ref_excess = _excess(ref) if ref else None
    grid = sorted({int(m) for m in results.get("nfe_grid") or ()} | {r.get("nfe_target", r["nfe"]) for r in rows})

    def best(lib: str, m: int):
        cands = [r for r in unguided if r.get("library", "diffbook") == lib and r["nfe"] <= m]
        return min(cands, key=_excess) if cands else None

    best_rows = {lib: {m: best(lib, m) for m in grid} for lib in ("diffbook", "diffusers")}
    checks, ratio = {}, {}
    for m, factor in GOALS:
        b = best_rows["diffbook"].get(m) or best("diffbook", m)
        ok = None if b is None or ref is None else _excess(b) <= factor * ref_excess
        checks[f"nfe{m}_within_{factor}x_of_reference"] = ok
        ratio[m] = (round(_excess(b) / ref_excess, 4) if b is not None and ref is not None and ref_excess > 0
                    else None)
    margin = {}
    for m in grid:
        db, dz = best_rows["diffbook"][m], best_rows["diffusers"][m]
        both = db is not None and dz is not None
        margin[m] = round(_excess(db) - _excess(dz), 4) if both else None
        checks[f"diffbook_le_diffusers_at_nfe{m}"] = (_excess(db) <= _excess(dz) + tie_rtol * abs(_excess(dz))
                                                      if both else None)
    values = list(checks.values())
    all_pass = None if any(v is None for v in values) else all(values)
    by_line: dict[str, dict[int, float]] = {}
    for r in sorted(rows, key=lambda r: r["nfe"]):
        by_line.setdefault(label(r), {})[r["nfe"]] = round(_excess(r), 4)
    return dict(reference=_brief(ref), best={lib: {m: _brief(r) for m, r in d.items()} for lib, d in best_rows.items()},
                ratio=ratio, margin=margin, checks=checks, all_pass=all_pass, tie_rtol=tie_rtol,
                excess_by_line=by_line)


def plot_fd_vs_nfe(results: dict, ax):
    """FD against NFE (log-log), one line per sampler/schedule and library (diffbook solid, diffusers dashed),
    with the real-vs-real floor and the 1000-step ancestral reference as horizontal lines. Returns ``ax``."""
    rows = [r for r in results.get("rows", []) if r.get("fd") is not None]
    lines: dict[str, list] = {}
    for r in rows:
        lines.setdefault(label(r), []).append(r)
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    for k, (name, rs) in enumerate(sorted(lines.items())):
        rs = sorted(rs, key=lambda r: r["nfe"])
        ax.plot([r["nfe"] for r in rs], [r["fd"] for r in rs], marker="o", markersize=3, lw=1.2,
                ls="--" if name.startswith("diffusers") else "-", color=cmap(k % 20), label=name)
    floor = results.get("floor", {}).get("fd")
    if floor is not None:
        ax.axhline(floor, color="k", ls=":", lw=1, label=f"real-vs-real floor (N = {results['floor'].get('n')})")
    ref = (results.get("summary") or summarize(results)).get("reference")
    if ref is not None:
        ax.axhline(ref["fd"], color="0.5", ls="-.", lw=1, label="1000-step DDPM ancestral")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network evaluations per image (NFE)")
    ax.set_ylabel("Frechet distance (classifier features)")
    ax.legend(fontsize=6, ncol=2)
    return ax
