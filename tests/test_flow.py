"""Flow matching and rectified flow (diffbook.flow). Checked: the path, its velocity and the change of variables to the
book's VE coordinates; a flow model's denoiser and a denoiser's velocity invert each other, and the exact denoiser's
velocity is the closed-form marginal velocity of Gaussian data; the flow ODE and the DDIM / probability-flow ODE give
the same samples under the change of variables (Euler = DDIM exactly, and the converged ODEs); exact velocities
recover the data's variance; the loss's minimiser; reflow straightens the paths of Gaussian data completely;
agreement with diffusers' FlowMatchEulerDiscreteScheduler on the same network and noise; the fmnist-flow objective at
smoke scale; bad input gets one clear error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffbook import flow as F
from diffbook import samplers as S
from diffbook.data import toy2d
from diffbook.denoisers import gaussian_denoiser, gmm_denoiser
from diffbook.nets.mlp import MLP2D
from diffbook.schedules import karras_sigmas

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
MIX = toy2d.ring8_mixture(radius=2.0, std=0.2)
D_MIX = gmm_denoiser(MIX.centres.double(), MIX.stds.double(), MIX.weights.double())


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gaussian_velocity(s):
    """The exact marginal velocity E[n - x0 | z_t] of data N(0, s^2 I), defined for every t in [0, 1]."""

    def velocity(z, t):
        t = t.to(z.dtype)[:, None]
        return (t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2) * z

    return velocity


# ------------------------------------------------------------------------------------------ the path
def test_path_target_and_change_of_variables():
    x0 = torch.randn(6, 2, generator=gen(0), dtype=torch.float64)
    n = torch.randn(6, 2, generator=gen(1), dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.999, 1.0], dtype=torch.float64)
    z = F.flow_path(x0, n, t)
    assert torch.equal(z[0], x0[0]) and torch.equal(z[-1], n[-1])
    h = 1e-6  # dz/dt is the target n - x0, everywhere on the path
    assert torch.allclose((F.flow_path(x0[1:4], n[1:4], t[1:4] + h) - F.flow_path(x0[1:4], n[1:4], t[1:4] - h)) / (2 * h),
                          F.velocity_target(x0, n)[1:4], atol=1e-6)
    sigma = F.sigma_from_t(t[:-1])
    assert torch.allclose(F.t_from_sigma(sigma), t[:-1])
    assert torch.allclose(z[:-1] / (1 - t[:-1, None]), x0[:-1] + sigma[:, None] * n[:-1])   # z = x / (1 + sigma)
    assert math.isinf(F.sigma_from_t(1.0).item())


def test_denoiser_and_velocity_invert_each_other():
    x = torch.randn(7, 2, generator=gen(2), dtype=torch.float64) * 3
    sigma = torch.tensor([1e-3, 0.05, 0.5, 1.0, 4.0, 30.0, 500.0], dtype=torch.float64)
    back = F.from_velocity_model(F.velocity_from_denoiser(D_MIX))
    assert torch.allclose(back(x, sigma), D_MIX(x, sigma), atol=1e-9)
    v = gaussian_velocity(0.7)
    t = F.t_from_sigma(sigma)
    z = x / (1 + sigma[:, None])
    assert torch.allclose(F.velocity_from_denoiser(F.from_velocity_model(v))(z, t), v(z, t), atol=1e-9)


def test_the_exact_denoisers_velocity_is_the_marginal_velocity():
    s = 0.7
    z = torch.randn(50, 2, generator=gen(3), dtype=torch.float64)
    t = torch.rand(50, generator=gen(4), dtype=torch.float64) * 0.98 + 0.01
    assert torch.allclose(F.velocity_from_denoiser(gaussian_denoiser(s))(z, t), gaussian_velocity(s)(z, t),
                          atol=1e-10)


def test_time_scale_reaches_the_network():
    seen = []
    D = F.from_velocity_model(lambda z, t: seen.append(t) or z * 0, time_scale=1000.0)
    D(torch.zeros(2, 2), torch.tensor([1.0, 3.0]))
    assert torch.allclose(seen[0], torch.tensor([500.0, 750.0]))


# ------------------------------------------------------------------------------------------ the ODE
@pytest.mark.parametrize("n", [1, 2, 5, 20, 100])
def test_flow_euler_is_ddim_under_the_change_of_variables(n):
    """Each Euler step in (z, t) is a DDIM step in (x, sigma) with x = z / (1 - t) and sigma = t / (1 - t)."""
    ts = F.flow_times(n, t_max=0.999)
    z = torch.randn(2000, 2, generator=gen(5), dtype=torch.float64)
    flow = F.sample_flow_euler(F.velocity_from_denoiser(D_MIX), z, ts)
    ddim = S.sample_ddim(D_MIX, z / (1 - ts[0]), ts / (1 - ts))   # ends at t = 0, where z = x
    assert (flow - ddim).abs().max() < 1e-10 * (1 + ddim.abs().max())


def test_the_flow_ode_and_the_probability_flow_ode_have_the_same_solutions():
    """Converged solutions: Euler in t with 1500 steps against Heun in sigma with 150 Karras steps, same start."""
    t_max = 0.995
    z = torch.randn(200, 2, generator=gen(6), dtype=torch.float64)
    flow = F.sample_flow_euler(F.velocity_from_denoiser(D_MIX), z, F.flow_times(1500, t_max=t_max, t_min=1e-4))
    sigma_max = t_max / (1 - t_max)
    pf = S.sample_heun(D_MIX, z / (1 - t_max), karras_sigmas(1e-4, sigma_max, 150))
    gap = (flow - pf).norm(dim=1)
    assert gap.median() < 5e-3 and gap.mean() < 2e-2, (gap.median(), gap.mean())


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_exact_velocity_recovers_the_data_variance(s):
    n = 20000
    z = torch.randn(n, 2, generator=gen(7), dtype=torch.float64)   # exactly p_1 = N(0, I)
    out = F.sample_flow_euler(gaussian_velocity(s), z, F.flow_times(400))
    se = s**2 * math.sqrt(2 / (2 * n))
    assert abs(out.var().item() - s**2) < 4 * se + 0.01 * s**2
    # and through the denoiser interface, from t_max < 1 (the exact marginal there: N(0, (1-t)^2 s^2 + t^2))
    t_max = 0.999
    z = torch.randn(n, 2, generator=gen(8), dtype=torch.float64) * math.sqrt((1 - t_max) ** 2 * s**2 + t_max**2)
    out = F.sample_flow_euler(F.velocity_from_denoiser(gaussian_denoiser(s)), z, F.flow_times(400, t_max=t_max))
    assert abs(out.var().item() - s**2) < 4 * se + 0.01 * s**2


def test_the_loss_is_minimised_by_the_marginal_velocity():
    """E||v* + delta - (n - x0)||^2 = E||v* - (n - x0)||^2 + ||delta||^2 / d, because E[n - x0 | z_t] = v*."""
    s, n = 0.7, 400_000
    x0 = s * torch.randn(n, 2, generator=gen(9), dtype=torch.float64)
    v = gaussian_velocity(s)
    delta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    base = F.flow_matching_loss(v, x0, gen(10)).item()
    off = F.flow_matching_loss(lambda z, t: v(z, t) + delta, x0, gen(10)).item()   # the same t and noise
    assert abs((off - base) - delta.pow(2).mean().item()) < 2e-3
    # the CFM target's conditional variance is what remains: a positive loss even at the optimum
    assert base > 0.1


def test_reflow_of_gaussian_data_gives_straight_paths():
    """A 2-rectified flow trained on the deterministic coupling (x0 = a n, n) has the exact velocity
    (1 - a) z / ((1 - t) a + t): straight lines at constant speed, straightness 0, and one Euler step is exact."""
    s = 0.5
    noise = torch.randn(4000, 2, generator=gen(11), dtype=torch.float64)
    ts = F.flow_times(200)
    x0, paired = F.reflow_pairs(gaussian_velocity(s), noise, ts)
    assert paired is noise
    a = (x0 / noise).median().item()   # the 1-rectified flow of N(0, s^2) maps n to a n
    assert torch.allclose(x0, a * noise, atol=1e-3) and abs(a - s) < 0.01

    def reflowed(z, t):
        t = t[:, None]
        return (1 - a) * z / ((1 - t) * a + t)

    assert F.straightness(reflowed, noise, ts) < 1e-10
    assert F.straightness(gaussian_velocity(s), noise, ts) > 0.01
    one_step = F.sample_flow_euler(reflowed, noise, F.flow_times(1))
    assert torch.allclose(one_step, a * noise, atol=1e-9)
    assert (F.sample_flow_euler(gaussian_velocity(s), noise, F.flow_times(1)) - x0).norm(dim=1).mean() > 0.1


# ------------------------------------------------------------------------------------------ diffusers
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 4, 25])
def test_agrees_with_diffusers_flow_match_euler_on_the_same_network_and_noise(n, shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    torch.manual_seed(0)
    net = MLP2D(hidden=32, depth=2).eval()

    def velocity(z, t):  # the network takes diffusers' timesteps, 1000 t
        return net(z, t * 1000)

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(n)
    # diffusers spaces its times between 1 and its shifted smallest time, then shifts them all
    ts = F.flow_times(n, t_min=float(scheduler.sigma_min), shift=shift)
    assert torch.allclose(scheduler.sigmas.double(), ts, atol=1e-6)
    noise = torch.randn(256, 2, generator=gen(12))
    z = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            z = scheduler.step(net(z, t.expand(z.shape[0])), t, z).prev_sample
        ours = F.sample_flow_euler(velocity, noise, ts.float())
    assert torch.allclose(ours, z, atol=1e-5, rtol=1e-5)


def test_diffusers_flow_scheduler_runs_a_denoiser_through_its_velocity():
    """A diffusion model's exact denoiser, as a velocity, in diffusers' flow sampler: the same points as our DDIM."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    ts = F.flow_times(10, t_max=0.995)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(sigmas=ts[:-1].tolist())
    velocity = F.velocity_from_denoiser(D_MIX)
    z0 = torch.randn(500, 2, generator=gen(13), dtype=torch.float64)
    z = z0.clone()
    for t in scheduler.timesteps:
        z = scheduler.step(velocity(z, (t / 1000).double().expand(len(z))), t, z).prev_sample.double()
    ddim = S.sample_ddim(D_MIX, z0 / (1 - ts[0]), ts / (1 - ts))
    assert (z - ddim).norm(dim=1).median() < 1e-5


# ------------------------------------------------------------------------------------------ the image model
def test_fmnist_flow_smoke_config_trains_and_samples(tmp_path, monkeypatch):
    from diffbook.train import recipes
    from diffbook.train.flow import FLOW_CONFIGS, TIME_SCALE, UNET_FLOW, FlowObjective
    from diffbook.train.loop import train
    from diffbook.zoo import load_network

    assert UNET_FLOW == recipes.UNET_DDPM   # the same U-Net as fmnist-ddpm
    assert recipes.CONFIGS["fmnist-flow"] == FLOW_CONFIGS["fmnist-flow"]     # registered: the training command
    assert recipes.OBJECTIVES["fmnist-flow"] is FlowObjective               # knows the model
    card = train("fmnist-flow", "smoke", tmp_path, fresh=True)
    assert card["parameterisation"] == "flow" and card["steps"] == 6 and card["time_scale"] == TIME_SCALE
    net, card = load_network("fmnist-flow", root=tmp_path)
    denoiser = F.from_velocity_model(net, time_scale=card["time_scale"])
    labels = torch.tensor([3, 10])
    x = torch.randn(2, 1, 32, 32, generator=gen(14))
    with torch.no_grad():
        assert denoiser(x * 10, torch.tensor([9.0, 9.0]), class_labels=labels).shape == x.shape
        images = F.sample_flow_euler(lambda z, t, **c: net(z, t * TIME_SCALE, **c), x, F.flow_times(3),
                                     cond={"class_labels": labels})
    assert images.shape == x.shape and torch.isfinite(images).all()


# ------------------------------------------------------------------------------------------ bad input
@SETTINGS
@given(ts=st.one_of(st.lists(st.floats(-2, 2, allow_nan=False), min_size=0, max_size=5),
                    st.sampled_from([[1.0, 0.5, 0.5, 0.0], [0.2, 0.6, 0.0], [1.5, 0.0], [1.0, -0.1], [math.nan, 0.0]])))
def test_bad_time_grids_raise_one_clear_error(ts):
    grid = torch.tensor(ts, dtype=torch.float64)
    ok = len(ts) >= 2 and all(a > b for a, b in zip(ts, ts[1:])) and ts[0] <= 1 and ts[-1] >= 0
    if ok:
        return
    with pytest.raises(ValueError) as info:
        F.sample_flow_euler(gaussian_velocity(1.0), torch.randn(3, 2, dtype=torch.float64), grid)
    assert "ts" in str(info.value)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="0 < t < 1"):
        F.velocity_from_denoiser(D_MIX)(torch.zeros(2, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        F.flow_path(torch.zeros(2, 2), torch.zeros(2, 2), 1.5)
    with pytest.raises(ValueError, match="shape"):
        F.flow_path(torch.zeros(2, 2), torch.zeros(3, 2), 0.5)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        F.flow_matching_loss(gaussian_velocity(1.0), torch.zeros(4, 2), t=torch.rand(3))
    with pytest.raises(TypeError, match="velocity must be callable"):
        F.sample_flow_euler("v", torch.zeros(2, 2), F.flow_times(2))
    with pytest.raises(ValueError, match="shape of z"):
        F.sample_flow_euler(lambda z, t: z[:, :1], torch.zeros(2, 2), F.flow_times(2))
    with pytest.raises(ValueError, match="t_min"):
        F.flow_times(4, t_max=0.5, t_min=0.6)
    with pytest.raises(ValueError, match="time_scale"):
        F.from_velocity_model(gaussian_velocity(1.0), time_scale=0)
