"""EDM's stochastic sampler (diffbook.samplers.sample_edm, Karras et al. 2022 Alg. 2). Checked: with churn 0 (or
outside the [s_tmin, s_tmax] window) it is Heun's method bit for bit; the churn step moves a sample of p_sigma to a
sample of p_sigma_hat exactly; with an exact denoiser it recovers the data's variance (Gaussian) and the mixture's
mode shares at every churn; gamma is capped at sqrt(2) - 1; seeded runs repeat; the NFE count; bad options get one
clear error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffbook import samplers as S
from diffbook.data import toy2d
from diffbook.denoisers import gaussian_denoiser, gmm_denoiser
from diffbook.schedules import append_zero, karras_sigmas, ve_geometric_sigmas

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
MIX = toy2d.ring8_mixture(radius=2.0, std=0.2)
D_MIX = gmm_denoiser(MIX.centres.double(), MIX.stds.double(), MIX.weights.double())


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("levels", [karras_sigmas(0.002, 80.0, 18), karras_sigmas(0.01, 20.0, 3),
                                    append_zero(ve_geometric_sigmas(0.01, 50.0, 25))])
def test_no_churn_is_heun_bit_for_bit(levels):
    x = torch.randn(500, 2, generator=gen(0), dtype=torch.float64) * float(levels[0])
    heun = S.sample_heun(D_MIX, x, levels)
    assert torch.equal(S.sample_edm(D_MIX, x, levels), heun)
    assert torch.equal(S.sample_edm(D_MIX, x, levels, churn=0.0, s_noise=1.007, generator=gen(1)), heun)
    # churn switched off by the window: levels outside [s_tmin, s_tmax] get none
    assert torch.equal(S.sample_edm(D_MIX, x, levels, churn=30.0, s_tmin=1e4, s_tmax=1e5, generator=gen(1)), heun)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2)).double()

    def learned(x, sigma):  # an imperfect, learned-looking denoiser
        return x / (1 + sigma[:, None] ** 2) + net(torch.cat([x, sigma.log()[:, None]], 1))

    assert torch.equal(S.sample_edm(learned, x, levels), S.sample_heun(learned, x, levels))


def test_the_churn_step_lands_exactly_on_the_noisier_marginal():
    """For data N(0, s^2): x ~ N(0, s^2 + sigma^2) plus sqrt(sigma_hat^2 - sigma^2) z is N(0, s^2 + sigma_hat^2)."""
    s, n = 0.8, 200_000
    levels = torch.tensor([10.0, 5.0, 0.0], dtype=torch.float64)
    seen = []
    x = torch.randn(n, 2, generator=gen(2), dtype=torch.float64) * math.sqrt(s**2 + 100.0)
    S.sample_edm(gaussian_denoiser(s), x, levels, churn=0.5, generator=gen(3),
                 callback=lambda info: seen.append((info["sigma"], info["x"].var().item())))
    sigma_hat, var = seen[0]
    assert math.isclose(sigma_hat, 10.0 * (1 + 0.25))   # gamma = churn / N = 0.25
    assert abs(var / (s**2 + sigma_hat**2) - 1) < 4 * math.sqrt(2 / (2 * n))


@pytest.mark.parametrize("churn", [0.0, 10.0, 40.0, 80.0])
@pytest.mark.parametrize("s", [0.5, 2.0])
def test_exact_gaussian_denoiser_recovers_the_data_variance(s, churn):
    n, levels = 20000, append_zero(ve_geometric_sigmas(0.005, 40.0, 100))
    x = torch.randn(n, 2, generator=gen(4), dtype=torch.float64) * math.sqrt(s**2 + 40.0**2)
    out = S.sample_edm(gaussian_denoiser(s), x, levels, churn=churn, generator=gen(5))
    se = s**2 * math.sqrt(2 / (2 * n))   # standard error of the pooled variance estimate
    assert abs(out.var().item() - s**2) < 4 * se + 0.004 * s**2, (out.var().item(), s**2)
    assert out.mean(0).abs().max() < 4 * s / math.sqrt(n)


@pytest.mark.parametrize("churn", [0.0, 40.0])
def test_exact_mixture_denoiser_recovers_the_mode_shares(churn):
    n = 8000
    x = torch.randn(n, 2, generator=gen(6), dtype=torch.float64) * 80.0
    out = S.sample_edm(D_MIX, x, karras_sigmas(0.002, 80.0, 40), churn=churn, generator=gen(7))
    nearest = torch.cdist(out, MIX.centres.double()).min(1)
    shares = torch.bincount(nearest.indices, minlength=8).double() / n
    assert (shares - 1 / 8).abs().max() < 4 * math.sqrt(1 / 8 * 7 / 8 / n)
    # within 3 std of a centre: the exact fraction is P(chi_2 < 3) = 0.9889
    assert abs((nearest.values < 3 * MIX.std).double().mean().item() - 0.9889) < 0.01


def test_gamma_is_capped_and_the_callback_sees_the_raised_level():
    levels = karras_sigmas(0.01, 20.0, 4)
    seen = []
    x = torch.randn(10, 2, generator=gen(8), dtype=torch.float64) * 20.0
    S.sample_edm(D_MIX, x, levels, churn=1e6, generator=gen(9), callback=lambda info: seen.append(info["sigma"]))
    assert len(seen) == 4
    for sigma_hat, sigma in zip(seen, levels[:-1].tolist()):
        assert math.isclose(sigma_hat, sigma * math.sqrt(2), rel_tol=1e-12)


def test_seeded_runs_repeat_and_different_seeds_differ():
    levels = karras_sigmas(0.01, 20.0, 10)
    x = torch.randn(100, 2, generator=gen(10)) * 20.0
    a = S.sample_edm(D_MIX, x.double(), levels, churn=20.0, generator=gen(11))
    b = S.sample_edm(D_MIX, x.double(), levels, churn=20.0, generator=gen(11))
    c = S.sample_edm(D_MIX, x.double(), levels, churn=20.0, generator=gen(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_nfe_and_name():
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return D_MIX(x, sigma)

    levels = karras_sigmas(0.01, 20.0, 7)
    S.sample_edm(counting, torch.randn(4, 2, dtype=torch.float64) * 20.0, levels, churn=5.0, generator=gen(13))
    assert len(calls) == S.nfe("edm", 7) == 13
    assert S.SAMPLERS["edm"] is S.sample_edm


# ------------------------------------------------------------------------------------------ bad input
BAD = st.one_of(st.floats(max_value=-1e-9), st.sampled_from([math.nan, "1", None, True, [1.0]]))


@SETTINGS
@given(option=st.sampled_from(["churn", "s_tmin", "s_noise"]), value=st.one_of(BAD, st.just(math.inf)))
def test_bad_options_raise_one_clear_error(option, value):
    with pytest.raises((ValueError, TypeError)) as info:
        S.sample_edm(D_MIX, torch.randn(3, 2, dtype=torch.float64), karras_sigmas(0.01, 10.0, 3), **{option: value})
    assert option in str(info.value)


def test_window_must_be_ordered():
    with pytest.raises(ValueError, match="s_tmin must not exceed s_tmax"):
        S.sample_edm(D_MIX, torch.randn(3, 2, dtype=torch.float64), karras_sigmas(0.01, 10.0, 3), s_tmin=5.0,
                     s_tmax=1.0)
    with pytest.raises((ValueError, TypeError), match="s_tmax"):
        S.sample_edm(D_MIX, torch.randn(3, 2, dtype=torch.float64), karras_sigmas(0.01, 10.0, 3), s_tmax=math.nan)
