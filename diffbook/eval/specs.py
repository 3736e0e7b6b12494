"""Sampler specs: one row of a comparison or evaluation table as a dict, checked, counted in network evaluations,
expanded over an NFE grid, and described in words.

A *spec* names one way to sample a DDPM:

==============  ======================================================================================================
``library``     "diffbook" (the default) or "diffusers"
``sampler``     diffbook: a key of :data:`diffbook.samplers.SAMPLERS` ("ancestral", "ddim", "euler", "heun",
                "dpmpp_2m", "euler_maruyama"); diffusers: a scheduler class name (see :data:`DIFFUSERS_SCHEDULERS`)
``schedule``    "ddpm": the model's own discrete timesteps t (diffbook: sigma_t at :func:`schedules.ddpm_timesteps`;
                diffusers: the scheduler's ``set_timesteps``), spaced by ``spacing``; "karras": Karras et al.'s
                rho = 7 noise levels between the model's sigma_min and sigma_max (diffusers: ``use_karras_sigmas``)
``spacing``     diffusers' ``timestep_spacing``: "leading" (DDIM paper), "trailing" (Lin et al. 2024), "linspace"
``steps``       the number of steps; NFE = steps, except Heun: 2 steps - 1 (:func:`nfe_of`)
``w``           optional classifier-free guidance weight against the null class (diffusers: guidance_scale = 1 + w)
``clip``        optional bool: clamp x0_hat to [-1, 1] at every step (diffusers: ``clip_sample=True``, which only the
                DDPM and DDIM schedulers have)
``n``           optional: this row's sample count (default: the run's ``n``), measured against its own floor
``nfe_target``  the grid value the row was made for (:func:`grid_specs`); informational
==============  ======================================================================================================

For a grid value m a sampler gets the most steps whose NFE <= m (:func:`steps_for_nfe`), and the row records the
exact NFE. Heun with 1 step is allowed: it is a single Euler step (no correction on the step to sigma = 0), NFE 1.
Heun at m = 2 would again be 1 step, a duplicate, so it is left out. A "ddpm" schedule cannot take more than T steps.
"""

from __future__ import annotations

import json
import math
import numbers

from ..samplers import SAMPLERS, nfe

__all__ = ["NFE_GRID", "DIFFUSERS_SCHEDULERS", "DIFFBOOK_LINES", "DIFFUSERS_LINES", "DEFAULT_LINES", "SMOKE_LINES",
           "SMOKE_NFE", "SMOKE_N", "check_spec", "nfe_of", "steps_for_nfe", "grid_specs", "image_nfes", "describe",
           "label", "is_reference", "sample_kwargs"]

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

_SPEC_KEYS = {"library", "sampler", "schedule", "spacing", "steps", "w", "clip", "n", "nfe_target", "eta"}
_SPACINGS = ("leading", "trailing", "linspace")


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
    """Network evaluations per image of a spec: :func:`diffbook.samplers.nfe` for diffbook (Heun 2 steps - 1);
    diffusers' HeunDiscreteScheduler lists every inner noise level twice, so it too makes 2 steps - 1 calls, and
    the other schedulers one per step; a GAN's "generator" spec: 1. (A guided call, w != 0, is one call on a batch
    of 2 B.)"""
    if spec.get("library", "diffbook") == "diffusers":
        return 2 * spec["steps"] - 1 if spec["sampler"] == "HeunDiscreteScheduler" else spec["steps"]
    if spec["sampler"] == "generator":
        return 1
    return nfe(spec["sampler"], spec["steps"], **{k: spec[k] for k in ("n_corrector", "n_steps_each") if k in spec})


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


def is_reference(spec: dict, T: int) -> bool:
    """The 1000-step (T-step) DDPM ancestral sampler, unguided and unclipped: the issue's reference."""
    return (spec.get("library", "diffbook") == "diffbook" and spec.get("sampler") == "ancestral"
            and spec.get("schedule") == "ddpm" and spec.get("steps") == T and not spec.get("w")
            and not spec.get("clip"))


_MODEL_KEYS = ("sampler", "schedule", "spacing", "steps", "clip", "eta", "snr", "n_corrector", "n_steps_each", "step_lr")


def sample_kwargs(spec: dict) -> dict:
    """The keyword arguments of :meth:`diffbook.zoo.DiffusionModel.sample` for a diffbook spec: all of it explicit
    (``w`` becomes ``guidance``, 0 when absent; ``clip`` False when absent), so nothing comes from the model's default
    spec; table-only keys such as ``library``, ``n``, ``nfe_target`` and ``weights`` are dropped."""
    kw = {k: spec[k] for k in _MODEL_KEYS if spec.get(k) is not None}
    kw["schedule"] = spec.get("schedule", "karras")
    kw["guidance"] = float(spec.get("w") or 0.0)
    kw["clip"] = bool(spec.get("clip", False))
    return kw
