"""diffbook.editing: SDEdit returns the right distribution on Gaussian data, DDIM inversion follows the exact
probability-flow ODE and regenerates the input up to a first-order error, seeded runs repeat, and noise levels
outside the model's range fail with one clear error. Also the sketches that guide SDEdit in the chapter."""

from __future__ import annotations

import math

import pytest
import torch

from diffbook import denoisers, editing, samplers, schedules
from diffbook.data import sketches

S = 0.6


def test_sdedit_on_gaussian_data_returns_the_posterior_given_the_noised_guide():
    """x = guide + sigma0 z, then an exact sampler: x0 ~ N(c x, r^2), so over z the mean is c guide and the variance
    c^2 sigma0^2 + r^2, with c = S^2 / (S^2 + sigma0^2) and r^2 = S^2 sigma0^2 / (S^2 + sigma0^2)."""
    sigma0, n = 1.5, 4000
    guide = torch.linspace(-1, 1, 16, dtype=torch.float64).expand(n, 16)
    sigmas = torch.cat([torch.tensor([sigma0], dtype=torch.float64),
                        schedules.karras_sigmas(1e-3, sigma0, 300).double()[1:]])
    out = editing.sdedit(denoisers.gaussian_denoiser(S), guide, sigmas, generator=torch.Generator().manual_seed(0))
    c, r2 = S**2 / (S**2 + sigma0**2), S**2 * sigma0**2 / (S**2 + sigma0**2)
    std = math.sqrt(c**2 * sigma0**2 + r2)
    assert ((out.mean(0) - c * guide[0]).abs() < 5 * std / math.sqrt(n)).all()
    assert abs(out.std(0).mean() / std - 1) < 0.04


def test_sdedit_is_seeded_and_takes_any_sampler():
    D = denoisers.gaussian_denoiser(S)
    guide = torch.zeros(3, 1, 8, 8)
    sigmas = schedules.karras_sigmas(0.01, 2.0, 6)
    run = lambda seed, **kw: editing.sdedit(D, guide, sigmas, generator=torch.Generator().manual_seed(seed), **kw)  # noqa
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    assert run(0, sampler=samplers.sample_heun).shape == guide.shape


def test_ddim_inversion_follows_the_exact_flow_and_regenerates_up_to_a_first_order_error():
    """For data N(0, S^2 I) the PF-ODE scales x by sqrt(S^2 + sigma^2): inversion with many steps matches it; the
    round trip (invert, then DDIM on the same levels) misses the input by an error that shrinks like 1 / steps."""
    D = denoisers.gaussian_denoiser(S)
    x0 = S * torch.randn(500, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lo, hi = 0.01, 20.0
    x_T = editing.ddim_invert(D, x0, schedules.karras_sigmas(lo, hi, 2000).double())
    assert torch.allclose(x_T, x0 * math.sqrt((S**2 + hi**2) / (S**2 + lo**2)), rtol=5e-3)

    def round_trip(steps):
        sig = schedules.karras_sigmas(lo, hi, steps).double()
        back = samplers.sample_ddim(D, editing.ddim_invert(D, x0, sig), sig)
        return (back - x0).pow(2).mean().sqrt().item()

    errors = {n: round_trip(n) for n in (10, 40, 160)}
    assert errors[40] < errors[10] / 2.5 and errors[160] < errors[40] / 2.5
    assert errors[160] < 0.02


def test_ddim_inversion_with_a_conditional_model_uses_the_condition():
    seen = []

    def D(x, sigma, class_labels=None):
        seen.append(class_labels)
        return 0.5 * x

    editing.ddim_invert(D, torch.ones(2, 4), schedules.karras_sigmas(0.1, 1.0, 3),
                        cond={"class_labels": torch.tensor([3, 3])})
    assert len(seen) == 2 and all(torch.equal(c, torch.tensor([3, 3])) for c in seen)


def test_noise_levels_outside_the_models_range_fail_clearly():
    alpha_bar = schedules.betas_to_alpha_bar(schedules.linear_betas(1000))
    D = denoisers.from_eps_model(lambda x_t, t: torch.zeros_like(x_t), alpha_bar)  # a DDPM knows its range
    lo, hi = editing.sigma_range(D)
    assert abs(lo - 0.01) < 1e-4 and abs(hi - 157.4) < 0.1
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="above the model's largest"):
        editing.sdedit(D, x, schedules.karras_sigmas(0.01, 500.0, 5))
    with pytest.raises(ValueError, match="below the model's smallest"):
        editing.ddim_invert(D, x, schedules.karras_sigmas(0.001, 10.0, 5))
    with pytest.raises(ValueError, match="above the model's largest"):  # an explicit limit for any denoiser
        editing.sdedit(denoisers.gaussian_denoiser(1.0), x, schedules.karras_sigmas(0.01, 5.0, 5), sigma_max=2.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        editing.sdedit(D, x, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(TypeError, match="callable"):
        editing.ddim_invert("model", x, schedules.karras_sigmas(0.01, 1.0, 3))
    # guidance and clipping wrappers keep the range
    assert editing.sigma_range(denoisers.clip_denoiser(D)) == (lo, hi)


def test_sketches_and_collages():
    x, labels = sketches.sketches()
    assert x.shape == (len(sketches.SKETCHES), 1, 32, 32) and x.min() == -1 and x.max() <= 1
    assert ((x > -1).float().mean((1, 2, 3)) > 0.05).all()  # every sketch draws something
    assert (x[:, :, 0, :] == -1).all()  # the top row is background
    with pytest.raises(ValueError, match="sketch for the classes"):
        sketches.sketch(4)
    a, b = -torch.ones(2, 1, 32, 32), torch.ones(2, 1, 32, 32)
    c = sketches.paste_patch(a, b, (4, 16, 14, 12))
    assert c[..., 4:18, 16:28].eq(1).all() and c.sum() == -2 * 1024 + 2 * 2 * 14 * 12
