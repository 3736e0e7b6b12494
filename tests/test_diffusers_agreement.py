"""Our samplers against diffusers' schedulers, numerically (torch.allclose), on a tiny random UNet2DModel.

The model is the same network on both sides; diffusers runs its usual loop in VP coordinates
(x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps), we run ours in VE coordinates through
``from_diffusers_unet``: sigmas = t_to_sigma(scheduler.timesteps) + [0] and x_T(VE) = x_T(VP) / sqrt(alpha_bar_T).
The two coordinate systems coincide at sigma = 0, so the final samples must agree up to float32 round-off. The
random network's x0_hat is large (|x| up to several hundred), so tolerances are relative to that scale: atol =
1e-4 * max|x| (observed differences are 1e-7 to 5e-6 of the scale).
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UNet2DModel,
)

from diffbook import samplers as S
from diffbook.denoisers import from_diffusers_unet, from_eps_model
from diffbook.forward import q_sample
from diffbook.guidance import cfg
from diffbook.schedules import append_zero, betas_to_alpha_bar, linear_betas, t_to_sigma

BETAS = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
REL_TOL = 1e-4



def tiny_unet(**extra) -> UNet2DModel:
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, **extra)
    return unet.eval()


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def noise():
    return torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))


def diffusers_loop(unet, scheduler, n_steps, x, step_kwargs=None, model=None):
    """diffusers' standard sampling loop (as in its pipelines)."""
    scheduler.set_timesteps(n_steps)
    model = model or (lambda inp, t: unet(inp, t).sample)
    with torch.no_grad():
        for t in scheduler.timesteps:
            inp = scheduler.scale_model_input(x, t)
            x = scheduler.step(model(inp, t), t, x, **(step_kwargs or {})).prev_sample
    return x


def ve_sigmas(scheduler) -> torch.Tensor:
    return append_zero(t_to_sigma(scheduler.timesteps, scheduler.alphas_cumprod))


def to_ve(x_vp: torch.Tensor, scheduler) -> torch.Tensor:
    return x_vp / scheduler.alphas_cumprod[scheduler.timesteps[0]].sqrt()


def assert_agree(ours: torch.Tensor, ref: torch.Tensor, label: str) -> float:
    scale = ref.abs().max().item()
    diff = (ours - ref).abs().max().item()
    assert torch.isfinite(ref).all()
    assert torch.allclose(ours, ref, rtol=0, atol=REL_TOL * scale), f"{label}: max |diff| {diff:.3g} at scale {scale:.3g}"
    print(f"{label}: max |diff| = {diff:.3g} (scale {scale:.3g})")
    return diff


# --------------------------------------------------------------------------------------- forward process
def test_q_sample_matches_add_noise():
    sched = DDPMScheduler(**BETAS)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 2, 8, 8, generator=g)
    eps = torch.randn(16, 2, 8, 8, generator=g)
    t = torch.randint(0, 1000, (16,), generator=g)
    ref = sched.add_noise(x0, eps, t)
    assert torch.allclose(q_sample(x0, t, sched.alphas_cumprod, noise=eps), ref, rtol=0, atol=1e-6)
    # our float64 schedule gives the same alpha_bar as diffusers' float32 one (up to float32 round-off)
    ours = betas_to_alpha_bar(linear_betas(1000))
    assert torch.allclose(ours, sched.alphas_cumprod.double(), rtol=1e-5, atol=0)
    assert torch.allclose(q_sample(x0, t, ours.float(), noise=eps), ref, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------- deterministic samplers
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_matches_diffusers(unet, noise, spacing):
    sched = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing=spacing)
    ref = diffusers_loop(unet, sched, 10, noise.clone())
    with torch.no_grad():
        ours = S.sample_ddim(from_diffusers_unet(unet, sched), to_ve(noise, sched), ve_sigmas(sched))
    assert_agree(ours, ref, f"DDIM eta=0 ({spacing})")


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_ddim_matches_diffusers_other_parameterisations(unet, noise, prediction_type):
    """The same network read as a v- or x0-predictor: from_diffusers_unet must follow the scheduler's config."""
    sched = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                          timestep_spacing="trailing", prediction_type=prediction_type)
    ref = diffusers_loop(unet, sched, 10, noise.clone())
    with torch.no_grad():
        ours = S.sample_ddim(from_diffusers_unet(unet, sched), to_ve(noise, sched), ve_sigmas(sched))
    assert_agree(ours, ref, f"DDIM eta=0 ({prediction_type})")


@pytest.mark.parametrize("n_steps", [10, 20])
def test_dpmpp_2m_matches_diffusers(unet, noise, n_steps):
    sched = DPMSolverMultistepScheduler(**BETAS, algorithm_type="dpmsolver++", solver_order=2,
                                        final_sigmas_type="zero")
    ref = diffusers_loop(unet, sched, n_steps, noise.clone())
    with torch.no_grad():
        ours = S.sample_dpmpp_2m(from_diffusers_unet(unet, sched), to_ve(noise, sched), ve_sigmas(sched))
    assert_agree(ours, ref, f"DPM-Solver++(2M), {n_steps} steps")


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
@pytest.mark.parametrize("kind", ["euler", "heun"])
def test_euler_heun_match_diffusers(unet, noise, kind, spacing):
    """Euler/Heun schedulers already work in VE coordinates (x_T = noise * init_noise_sigma, fractional t)."""
    cls, sampler = {"euler": (EulerDiscreteScheduler, S.sample_euler),
                    "heun": (HeunDiscreteScheduler, S.sample_heun)}[kind]
    sched = cls(**BETAS, timestep_spacing=spacing)
    sched.set_timesteps(10)
    x_T = noise * sched.init_noise_sigma
    ref = diffusers_loop(unet, sched, 10, x_T.clone())
    sigmas = torch.unique_consecutive(sched.sigmas.double())  # Heun lists each inner sigma twice
    assert len(sigmas) == 11
    # diffusers' sigmas are the table interpolated at its (fractional) timesteps: our t_to_sigma
    assert torch.allclose(sigmas[:-1], t_to_sigma(sched.timesteps[:: 1 if kind == "euler" else 2].double(),
                                                  sched.alphas_cumprod), rtol=1e-6)
    with torch.no_grad():
        ours = sampler(from_diffusers_unet(unet, sched), x_T, sigmas)
    assert_agree(ours, ref, f"{kind} ({spacing})")


# --------------------------------------------------------------------------------------- stochastic samplers
def test_ddpm_ancestral_matches_diffusers_with_the_same_noise(unet, noise):
    """Same generator seed: diffusers and we draw one N(0, I) per step in the same order, so whole trajectories agree."""
    sched = DDPMScheduler(**BETAS, clip_sample=False, variance_type="fixed_small")
    ref = diffusers_loop(unet, sched, 50, noise.clone(), {"generator": torch.Generator().manual_seed(5)})
    with torch.no_grad():
        ours = S.sample_ddpm_ancestral(from_diffusers_unet(unet, sched), to_ve(noise, sched), ve_sigmas(sched),
                                       generator=torch.Generator().manual_seed(5))
    assert_agree(ours, ref, "DDPM ancestral, 50 steps, same noise")
    # and a single step from x_T with the same seed, compared in VP coordinates
    t, t_prev = sched.timesteps[0], sched.timesteps[1]
    with torch.no_grad():
        eps = unet(noise, t).sample
    out = sched.step(eps, t, noise, generator=torch.Generator().manual_seed(9)).prev_sample
    sig = ve_sigmas(sched)[:2]
    mine = S.sample_ddpm_ancestral(from_diffusers_unet(unet, sched), to_ve(noise, sched), sig,
                                   generator=torch.Generator().manual_seed(9))
    # our step lands on VP x_{t_prev} / sqrt(alpha_bar_{t_prev}); diffusers' on VP x_{t_prev}
    mine_vp = mine * sched.alphas_cumprod[t_prev].sqrt()
    assert_agree(mine_vp, out, "DDPM one step")


def test_ddim_eta_matches_diffusers_with_the_same_noise(unet, noise):
    sched = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    ref = diffusers_loop(unet, sched, 10, noise.clone(), {"eta": 0.6, "generator": torch.Generator().manual_seed(3)})
    with torch.no_grad():
        ours = S.sample_ddim(from_diffusers_unet(unet, sched), to_ve(noise, sched), ve_sigmas(sched), eta=0.6,
                             generator=torch.Generator().manual_seed(3))
    assert_agree(ours, ref, "DDIM eta=0.6, same noise")


def gaussian_eps_model(s: float, alpha_bar: torch.Tensor):
    """The exact E[eps | x_t] for data N(0, s^2 I): sqrt(1 - ab) x_t / (ab s^2 + 1 - ab). t may be fractional."""

    def eps_model(x_t, t):
        t = torch.as_tensor(t, dtype=torch.float64)
        ab = torch.as_tensor(t_to_sigma(t, alpha_bar), dtype=torch.float64).pow(2).add(1).reciprocal()
        ab = ab.reshape(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
        return (1 - ab).sqrt() * x_t / (ab * s**2 + 1 - ab)

    return eps_model


def test_ddpm_ancestral_matches_diffusers_in_distribution():
    """Analytic eps-model, independent noise on both sides: the output moments agree within Monte-Carlo error."""
    s, n, n_steps = 0.7, 20000, 50
    sched = DDPMScheduler(**BETAS, clip_sample=False, variance_type="fixed_small")
    eps_model = gaussian_eps_model(s, sched.alphas_cumprod)
    x_T = torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    ref = diffusers_loop(None, sched, n_steps, x_T.clone(), {"generator": torch.Generator().manual_seed(1)},
                         model=eps_model)
    D = from_eps_model(eps_model, sched.alphas_cumprod)
    x_T2 = torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    ours = S.sample_ddpm_ancestral(D, to_ve(x_T2, sched), ve_sigmas(sched), generator=torch.Generator().manual_seed(3))
    se = math.sqrt(2 / (4 * n)) * s**2  # SE of a variance pooled over 4 pixels
    v_ref, v_ours = ref.var(0).mean().item(), ours.var(0).mean().item()
    assert abs(v_ours - v_ref) < 4 * math.sqrt(2) * se, (v_ours, v_ref)
    assert abs(ours.mean().item() - ref.mean().item()) < 4 * math.sqrt(2 / (4 * n)) * s
    # 50 of 1000 steps leaves a visible discretisation error (measured: -17 % in variance, the same on both sides):
    # ancestral steps from the posterior mean under-disperse. It shrinks with more steps (see
    # test_samplers_analytic); here it only has to be the same for both implementations.
    assert 0.75 * s**2 < v_ref < s**2
    per_pixel = (ours.var(0) - ref.var(0)).abs().max().item()
    assert per_pixel < 4 * math.sqrt(2) * math.sqrt(2 / n) * s**2


# --------------------------------------------------------------------------------------- adapters and guidance
def test_from_eps_model_equals_from_diffusers_unet(unet, noise):
    sched = DDIMScheduler(**BETAS)
    a = from_diffusers_unet(unet, sched)
    b = from_eps_model(lambda x, t: unet(x, t).sample, sched.alphas_cumprod)
    with torch.no_grad():
        for sigma in (0.05, 1.0, 30.0):
            x = noise * math.sqrt(1 + sigma**2)
            assert torch.allclose(a(x, sigma), b(x, sigma), rtol=0, atol=1e-5 * x.abs().max().item())


def test_cfg_matches_diffusers_guidance_scale(noise):
    """Our cfg(w) is diffusers' classifier-free guidance with guidance_scale = 1 + w (one batched call, as pipelines do)."""
    unet = tiny_unet(num_class_embeds=4)  # classes 0..2 and the null class 3
    sched = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="trailing")
    y = torch.tensor([0, 1, 2, 1])
    null = torch.full_like(y, 3)
    guidance_scale = 3.0

    def guided_eps(x, t):
        eps_c, eps_u = unet(torch.cat([x, x]), t, class_labels=torch.cat([y, null])).sample.chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    ref = diffusers_loop(None, sched, 10, noise.clone(), model=guided_eps)
    D = cfg(from_diffusers_unet(unet, sched), w=guidance_scale - 1, null_cond={"class_labels": 3})
    with torch.no_grad():
        ours = S.sample_ddim(D, to_ve(noise, sched), ve_sigmas(sched), cond={"class_labels": y})
    assert_agree(ours, ref, "DDIM + classifier-free guidance")
