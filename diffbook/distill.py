"""Progressive distillation (Salimans & Ho 2022): the mathematics of a few-step student of a diffusion model.

The loss takes the teacher as a denoiser argument; training ``fmnist-fast`` from the shipped ``fmnist-ddpm`` is
:mod:`diffbook.train.distill`, loading a trained student :func:`diffbook.zoo.load_student`.

Why this method. Progressive distillation needs only the teacher and the DDIM update, which diffbook already has
(Eq. (ddim-update)). Consistency distillation (Song et al. 2023) in its published form trains with a perceptual
LPIPS loss whose pretrained VGG/AlexNet weights we could neither ship nor download offline. Each round halves the
number of DDIM steps (64 -> 32 -> ... -> 1), and the student of every round is itself a usable sampler, so the
round checkpoints give the 4-, 2- and 1-step models side by side.

One round, in diffbook's VE coordinates (x = x_0 + sigma n, Eq. (ve-coordinates)) and denoiser convention
D(x; sigma, c) -> x0_hat. The teacher samples with 2N DDIM steps on the grid sigma_0 > sigma_1 > ... > sigma_2N = 0;
the student gets the N-step grid sigma_0 > sigma_2 > ... > sigma_2N (every other level). For a training pair x_0 and
a student level sigma_2i:

1. x = x_0 + sigma_2i eps;
2. the teacher takes two DDIM steps sigma_2i -> sigma_2i+1 -> sigma_2i+2 and lands on x_teacher;
3. the target x0_tilde is the clean image for which ONE DDIM step from sigma_2i lands exactly on x_teacher
   (:func:`distillation_target`);
4. the student minimises max(SNR, 1) ||D_student(x; sigma_2i) - x0_tilde||^2 (:func:`distillation_loss`).

After the round the student becomes the next round's teacher (Salimans & Ho 2022, Algorithm 2).

Notation (code name -> book symbol), as in :mod:`diffbook.samplers`:

==================  ===================================================================================
``x``               x, a noisy image at level sigma (VE coordinates)
``sigma``           sigma_2i, the student's current level (one per sample, shape [B])
``sigma_mid``       sigma_2i+1, the teacher's intermediate level
``sigma_next``      sigma_2i+2, where both the student's one step and the teacher's two steps end
``x_teacher``       the teacher's point after its two DDIM steps
``x0_tilde``        the distillation target (the student's x0_hat should equal it)
``v``               the student's network output, v = alpha eps - sigma_VP x_0 (Salimans & Ho 2022, Sec. 4)
``c_in``            1 / sqrt(1 + sigma^2) = sqrt(alpha_bar) = alpha, the VP scale (Eq. (vp-to-ve))
==================  ===================================================================================

The student's parameterisation. An eps-prediction student cannot become a 1-step sampler: its denoiser is
D = x - sigma eps_hat, so at sigma_max ~ 157 an error of 1e-3 in eps_hat (already bf16's rounding) is an error of
0.16 in x0_hat, and the network would have to reproduce its noisy input to that precision to output an image (the
shipped fmnist-ddpm's x0_hat at sigma_max has a standard deviation of 6, the data's is 0.66).
We use v-prediction (Salimans & Ho 2022, Sec. 4): D = c_in^2 x - sigma c_in v_hat, which is
a noise prediction at low noise (c_in -> 1, sigma c_in -> 0) and minus an x0 prediction at high noise
(c_in^2 x -> 0, sigma c_in -> 1), so a unit error in v_hat is at most a unit error in x0_hat at every sigma. The loss
is the paper's "truncated SNR" weighting max(SNR, 1) ||x0 - x0_hat||^2 = max(||x0 - x0_hat||^2, ||eps - eps_hat||^2),
with SNR = 1/sigma^2 (Eq. (ddpm-snr)); in v it reads max(SNR, 1)/(1 + SNR) ||v - v_hat||^2, a weight between
1/2 and 1, so no noise level dominates the gradient.

The student starts from a copy of the teacher's weights, as in the paper, although the teacher predicts eps: for
sigma << 1 the two readings agree (v = c_in eps - sigma c_in x_0 -> eps, and the v-denoiser of the copied network
differs from the teacher's by O(sigma^2)), so the copy is already right at low noise; at high noise its output
means something else (eps_hat read as v_hat gives x0_hat ~ -noise) and round 1 repairs it, because round 1's targets
come from the frozen teacher alone and never from the student. The student is an ordinary diffusers UNet2DModel
whose output is v: :func:`from_v_model` is :func:`diffbook.denoisers.from_diffusers_unet` with
``prediction_type="v_prediction"``, so the student also runs in a diffusers pipeline with a v-prediction scheduler.

Guidance. Round 1's teacher is guided with classifier-free guidance of weight w (Eq. (cfg), Ho & Salimans 2022)
from the config; the student is class-conditional and learns the guided map directly, so it samples with one network
call per step instead of two (as Meng et al. 2023 do for guided models, with w fixed here). The null class 10 stays
in training with the teacher's label drop rate: for a dropped label the guided teacher returns its unconditional
denoiser exactly (cond and null coincide in Eq. (cfg)), so the student's class 10 means "unconditional" and classes
0-9 mean "class c, guided with w". Later rounds distil the previous student, already guided, without CFG.

Clipping. The config's ``teacher_clip`` clamps the round-1 teacher's guided x0_hat to the pixel range [-1, 1]
(:func:`diffbook.denoisers.clip_denoiser`, diffusers' ``clip_sample=True``), so the sampler distilled is clipped
DDIM. Chapter 5 found that the DDPM's deterministic samplers carry the wild first estimate at sigma_max into broken
images and that clipping repairs most of them; at the 64 steps distilled here it still matters (40 requests, w = 1,
CPU: the shipped classifier agreed with 24 of the unclipped and 32 of the clipped samples). Later rounds' teachers
are students and are never clamped: their x0_hat are one-step targets x0_tilde, not estimates of E[x_0 | x], and
may leave [-1, 1]. For the same reason a student is sampled without clipping.

Rounds. The grids are the teacher's own DDPM timesteps with "trailing" spacing
(:func:`diffbook.schedules.ddpm_sigmas`, Lin et al. 2024), which start at t = T - 1 (the largest sigma the teacher
was trained on) and are nested: the N-step grid is every other level of the 2N-step grid (:func:`round_sigmas`
checks it), so a student trained on N steps samples with ``sample_ddim`` on ``ddpm_sigmas(alpha_bar, N,
"trailing")``. The release starts from 64 steps: the guided teacher's 64-step DDIM samples are within a mean squared
error of 0.001 of its 256-step ones (16 images, from the same noise), so 64 steps are close to its ODE's solution.
"""

from __future__ import annotations

import numbers

import torch

from .checks import check_batch_sigma, check_nfe, check_sigmas, check_tensor, per_sample
from .denoisers import from_v_model  # noqa: F401  (the student's denoiser, Eq. (v-denoiser))
from .schedules import ddpm_sigmas

__all__ = [
    "from_v_model",
    "ddim_step",
    "teacher_two_steps",
    "distillation_target",
    "truncated_snr_weight",
    "distillation_loss",
    "round_plan",
    "round_sigmas",
    "SPACING",
]

SPACING = "trailing"  # the timestep spacing of every round's grid (diffusers' ``timestep_spacing``)


# ----------------------------------------------------------------------------------------------- the target
def _as_level(name: str, v, x: torch.Tensor) -> torch.Tensor:
    """A noise level given as a number or a [B] tensor, as a [B] tensor on x's device and dtype."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        v = torch.tensor(float(v), dtype=torch.float64)  # cast to x's dtype below, without a float32 detour
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor of shape [B], got {type(v).__name__}.")
    try:
        return check_batch_sigma(x, v)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def ddim_step(x: torch.Tensor, x0_hat: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """One deterministic DDIM step from sigma to sigma_next: x_next = x0_hat + (sigma_next / sigma)(x - x0_hat).

    Implements Eq. (ddim-update) with eta = 0 (:func:`diffbook.samplers.sample_ddim`'s update) for per-sample levels
    ``sigma`` and ``sigma_next`` (numbers or [B] tensors, sigma > 0); sigma_next = 0 returns x0_hat.
    """
    sigma, sigma_next = _as_level("sigma", sigma, x), _as_level("sigma_next", sigma_next, x)
    if (sigma <= 0).any():
        raise ValueError("sigma must be > 0: a DDIM step starts from a noisy image.")
    r = per_sample(sigma_next / sigma, x)
    return x0_hat + r * (x - x0_hat)


@torch.no_grad()
def teacher_two_steps(teacher, x: torch.Tensor, sigma, sigma_mid, sigma_next, **cond) -> torch.Tensor:
    """The teacher's two DDIM steps sigma -> sigma_mid -> sigma_next from x (step 2 of Salimans & Ho 2022, Alg. 2).

    ``teacher`` is a denoiser ``D(x, sigma, **cond) -> x0_hat``; the levels are numbers or [B] tensors with
    sigma > sigma_mid > sigma_next >= 0. Eq. (ddim-update) with eta = 0, twice.
    """
    sigma, sigma_mid = _as_level("sigma", sigma, x), _as_level("sigma_mid", sigma_mid, x)
    sigma_next = _as_level("sigma_next", sigma_next, x)
    if not ((sigma > sigma_mid) & (sigma_mid > sigma_next)).all():
        raise ValueError("the teacher's levels must decrease strictly: sigma > sigma_mid > sigma_next; take them in "
                         "order from the teacher's grid (diffbook.distill.round_sigmas).")
    x_mid = ddim_step(x, teacher(x, sigma, **cond), sigma, sigma_mid)
    return ddim_step(x_mid, teacher(x_mid, sigma_mid, **cond), sigma_mid, sigma_next)


def distillation_target(x: torch.Tensor, sigma, sigma_next, x_teacher: torch.Tensor) -> torch.Tensor:
    """The x0 for which ONE DDIM step from (x, sigma) to sigma_next lands exactly on ``x_teacher``.

    One DDIM step with estimate x0_tilde gives x_next = x0_tilde + (sigma_next/sigma)(x - x0_tilde)
    (Eq. (ddim-update), eta = 0); setting x_next = x_teacher and solving, with r = sigma_next / sigma < 1,

        x0_tilde = (x_teacher - r x) / (1 - r).

    Implements Eq. (distill-target). This is Salimans & Ho 2022, Algorithm 2,
    x_tilde = (z'' - (sigma''/sigma) z) / (alpha'' - (sigma''/sigma) alpha),
    in VE coordinates (alpha = 1). At sigma_next = 0 (the student's last step) r = 0 and x0_tilde = x_teacher, the
    teacher's own final output, with no special case. ``sigma`` and ``sigma_next`` are numbers or [B] tensors.
    """
    check_tensor("x", x)
    check_tensor("x_teacher", x_teacher)
    if x_teacher.shape != x.shape:
        raise ValueError(f"x_teacher must have the shape of x, {tuple(x.shape)}, got {tuple(x_teacher.shape)}.")
    sigma, sigma_next = _as_level("sigma", sigma, x), _as_level("sigma_next", sigma_next, x)
    if not (sigma_next < sigma).all():
        raise ValueError("sigma_next must be smaller than sigma (the student steps towards less noise); the "
                         "target is undefined for sigma_next >= sigma.")
    r = per_sample(sigma_next / sigma, x)
    return (x_teacher - r * x) / (1 - r)


def truncated_snr_weight(sigma: torch.Tensor) -> torch.Tensor:
    """max(SNR, 1) with SNR = 1/sigma^2 (Eq. (ddpm-snr)): Salimans & Ho 2022's "truncated SNR" weighting.

    On the x0 error it makes the loss max(||x0 - x0_hat||^2, ||eps - eps_hat||^2): the eps loss below sigma = 1, the
    x0 loss above, so the weight stays finite at the pure-noise end where a 1-step student works.
    """
    return torch.clamp(sigma.double() ** -2, min=1.0).to(sigma.dtype)


def distillation_loss(student, teacher, x0: torch.Tensor, teacher_sigmas: torch.Tensor, *, generator=None,
                      **cond) -> torch.Tensor:
    """One batch of progressive distillation (Salimans & Ho 2022, Algorithm 2): the weighted MSE to the target,
    Eq. (distill-loss).

    ``student`` and ``teacher`` are denoisers ``D(x, sigma, **cond) -> x0_hat``; ``teacher_sigmas`` is the teacher's grid
    (2N + 1 decreasing levels ending in 0, :func:`round_sigmas`). Each sample draws a student step i uniformly from
    0..N-1 and noise eps; with sigma = sigma_2i, x = x0 + sigma eps (Eq. (ve-coordinates)), x_teacher the teacher's
    two DDIM steps to sigma_2i+2 (:func:`teacher_two_steps`, no gradient) and x0_tilde its
    :func:`distillation_target`, the loss is mean_b max(SNR, 1) mean_pixels (D_student(x; sigma) - x0_tilde)^2
    (:func:`truncated_snr_weight`), computed in float32 (float64 for float64 data).
    """
    check_tensor("x0", x0, min_dim=2)
    check_sigmas(teacher_sigmas)
    n_teacher = teacher_sigmas.shape[0] - 1
    if n_teacher % 2 or float(teacher_sigmas[-1]) != 0.0:
        raise ValueError(f"teacher_sigmas must be an even number 2N of steps ending in 0 (2N + 1 levels), got "
                         f"{teacher_sigmas.shape[0]} levels ending in {float(teacher_sigmas[-1])}; build it with "
                         "diffbook.distill.round_sigmas.")
    B = x0.shape[0]
    i = torch.randint(0, n_teacher // 2, (B,), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    s = teacher_sigmas.to(device=x0.device, dtype=x0.dtype)
    sigma, sigma_mid, sigma_next = s[2 * i], s[2 * i + 1], s[2 * i + 2]
    x = x0 + per_sample(sigma, x0) * eps
    dt = torch.promote_types(x0.dtype, torch.float32)  # never below float32, whatever the network computes in
    with torch.no_grad():
        x_teacher = teacher_two_steps(teacher, x, sigma, sigma_mid, sigma_next, **cond).to(dt)
        x0_tilde = distillation_target(x.to(dt), sigma.to(dt), sigma_next.to(dt), x_teacher)
    x0_hat = student(x, sigma, **cond).to(dt)
    err = (x0_hat - x0_tilde).pow(2).flatten(1).mean(1)
    return (truncated_snr_weight(sigma.to(dt)) * err).mean()


# ----------------------------------------------------------------------------------------------- the rounds
def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def round_plan(start_steps: int, end_steps: int = 1) -> list[tuple[int, int]]:
    """The rounds as (teacher steps 2N, student steps N) pairs, halving from ``start_steps`` to ``end_steps``.

    ``round_plan(64, 1)`` is [(64, 32), (32, 16), (16, 8), (8, 4), (4, 2), (2, 1)]: six rounds.
    """
    start_steps, end_steps = check_nfe(start_steps), check_nfe(end_steps)
    if not (_is_power_of_two(start_steps) and _is_power_of_two(end_steps)) or end_steps >= start_steps:
        raise ValueError(f"start_steps and end_steps must be powers of two with end_steps < start_steps (each round "
                         f"halves the number of steps), got {start_steps} and {end_steps}; e.g. 64 and 1.")
    plan, n = [], start_steps
    while n > end_steps:
        plan.append((n, n // 2))
        n //= 2
    return plan


def round_sigmas(alpha_bar: torch.Tensor, n_teacher: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's and the student's grids of one round: ``(teacher_sigmas, student_sigmas)``, float64.

    ``teacher_sigmas = ddpm_sigmas(alpha_bar, n_teacher, "trailing")`` (n_teacher + 1 levels ending in 0) and
    ``student_sigmas`` = every other level of it, which is checked to equal
    ``ddpm_sigmas(alpha_bar, n_teacher // 2, "trailing")``: the grid the student samples with.
    """
    n_teacher = check_nfe(n_teacher)
    if n_teacher % 2:
        raise ValueError(f"the teacher takes two steps per student step, so n_teacher must be even, got {n_teacher}.")
    teacher = ddpm_sigmas(alpha_bar, n_teacher, SPACING)
    student = ddpm_sigmas(alpha_bar, n_teacher // 2, SPACING)
    if not torch.equal(teacher[::2], student):
        raise ValueError(f"the {n_teacher // 2}-step grid is not every other level of the {n_teacher}-step grid for "
                         f"this alpha_bar (T = {alpha_bar.shape[0]}); use T divisible by {n_teacher}.")
    return teacher, student
