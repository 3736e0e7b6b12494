"""Forward process and score SDEs: closed forms against simulation; PF-ODE against reverse SDE; likelihoods.

Monte-Carlo tolerances are 4 standard errors (SE) unless stated; a variance estimate from n samples pooled over
d coordinates has SE = var * sqrt(2 / (n d)).
"""

from __future__ import annotations

import math

import pytest
import torch

from diffbook import samplers as S
from diffbook.denoisers import gaussian_denoiser, gmm_denoiser, gmm_log_prob
from diffbook.forward import q_chain, q_posterior_mean_var, q_sample
from diffbook.likelihood import pf_ode_log_likelihood
from diffbook.schedules import alpha_bar_to_sigma, append_zero, betas_to_alpha_bar, linear_betas, ve_geometric_sigmas
from diffbook.sde import VESDE, VPSDE, SubVPSDE



def residual_moments(x_t: torch.Tensor, x0: torch.Tensor, m: float):
    """Mean and variance (pooled over coordinates) of x_t - m x0, and its correlation with x0."""
    r = x_t - m * x0
    corr = torch.corrcoef(torch.stack([r.flatten(), x0.flatten()]))[0, 1].item()
    return r.mean().item(), r.var().item(), corr


# --------------------------------------------------------------------------------------- DDPM forward chain
def test_closed_form_matches_iterated_chain():
    """q(x_t | x_0) in one shot (Eq. ddpm-closed-form) has the law of t steps of the chain (Eq. ddpm-forward-step)."""
    n = 20000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0], dtype=torch.float64) + 1.0
    betas = linear_betas(1000)
    alpha_bar = betas_to_alpha_bar(betas)
    chain = q_chain(x0, betas, generator=g, keep=50)  # x_0, then the states after 50, 100, ..., 1000 steps
    assert len(chain) == 21 and chain[0] is x0
    se = math.sqrt(2 / (2 * n))
    for k in (1, 2, 10, 20):  # after 50, 100, 500, 1000 steps, i.e. 0-based timestep t = 50 k - 1
        t = 50 * k - 1
        ab = alpha_bar[t].item()
        one_shot = q_sample(x0, torch.full((n,), t), alpha_bar, generator=g)
        for x_t in (chain[k], one_shot):
            mean, var, corr = residual_moments(x_t, x0, math.sqrt(ab))
            assert abs(mean) < 4 * math.sqrt((1 - ab) / (2 * n))
            assert abs(var / (1 - ab) - 1) < 4 * se
            assert abs(corr) < 4 / math.sqrt(2 * n)  # the noise is independent of x0


def test_q_posterior_is_the_ve_ancestral_step():
    """Eq. (ddpm-posterior) in VP coordinates = our ancestral step from sigma_t to sigma_{t-1}, times sqrt(ab_{t-1})."""
    betas = linear_betas(1000)
    alpha_bar = betas_to_alpha_bar(betas)
    sigma = alpha_bar_to_sigma(alpha_bar)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    for t in (1, 10, 300, 999):
        x_t = alpha_bar[t].sqrt() * x0 + (1 - alpha_bar[t]).sqrt() * torch.randn(5, 3, generator=g, dtype=torch.float64)
        mean, var = q_posterior_mean_var(x0, x_t, torch.full((5,), t), betas)
        oracle = lambda x, s, **c: x0  # noqa: E731  (the denoiser that knows x0)
        step = S.sample_ddpm_ancestral(oracle, x_t / alpha_bar[t].sqrt(), torch.stack([sigma[t], sigma[t - 1]]),
                                       generator=torch.Generator().manual_seed(t))
        z = torch.randn(5, 3, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        assert torch.allclose(step * alpha_bar[t - 1].sqrt(), mean + var.sqrt() * z, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------- continuous SDEs
def simulate_forward_from(sde, x, t0, t1, n_steps, generator):
    """Euler-Maruyama for the forward SDE dx = f(x, t) dt + g(t) dw from t0 to t1."""
    dt = (t1 - t0) / n_steps
    for k in range(n_steps):
        t = torch.tensor(t0 + k * dt, dtype=torch.float64)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + sde.drift(x, t) * dt + float(sde.diffusion(t)) * math.sqrt(dt) * z
    return x


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=50.0)], ids=["vp", "subvp", "ve"])
def test_sde_marginals_match_simulation(sde):
    """x_t | x_0 ~ N(m(t) x_0, v(t) I) with v(t) = s(t)^2 - (m(t)/m(0))^2 s(0)^2 (s(0) = sigma_min for VE, else 0)."""
    n = 10000
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([2.0, -1.0], dtype=torch.float64)
    m0, s0 = (float(v) for v in sde.marginal(torch.tensor(0.0, dtype=torch.float64)))
    x, t_prev = x0, 0.0
    for t in (0.25, 0.5, 1.0):
        x = simulate_forward_from(sde, x, t_prev, t, 400, g)
        t_prev = t
        m, s = (float(v) for v in sde.marginal(torch.tensor(t, dtype=torch.float64)))
        v = s**2 - (m / m0) ** 2 * s0**2
        mean, var, corr = residual_moments(x, x0, m / m0)
        assert abs(mean) < 4 * math.sqrt(v / (2 * n)) + 1e-3 * abs(m)
        assert abs(var / v - 1) < 4 * math.sqrt(2 / (2 * n)) + 0.01, (t, var, v)  # 1 %: Euler-Maruyama, 400 steps
        assert abs(corr) < 4 / math.sqrt(2 * n) + 0.01
        assert float(sde.to_sigma(t)) == pytest.approx(s / m)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=50.0)], ids=["vp", "subvp", "ve"])
def test_reverse_sde_and_pf_ode_drifts_recover_gaussian_data(sde):
    """Integrating sde.reverse_drift (with noise) or sde.pf_ode_drift from t = 1 to ~0 with the exact score of
    N(0, s^2 I) data returns variance s^2: checks drift, diffusion and marginal together."""
    s, n, n_steps, t_min = 0.8, 10000, 500, 1e-3
    g = torch.Generator().manual_seed(2)

    def score(x, t):
        m, std = sde.marginal(torch.tensor(t, dtype=torch.float64))
        return -x / (float(m) ** 2 * s**2 + float(std) ** 2)

    m1, s1 = (float(v) for v in sde.marginal(torch.tensor(1.0, dtype=torch.float64)))
    x_T = torch.randn(n, 2, generator=g, dtype=torch.float64) * math.sqrt(m1**2 * s**2 + s1**2)
    ts = torch.linspace(1.0, t_min, n_steps + 1, dtype=torch.float64)
    for stochastic in (True, False):
        x = x_T.clone()
        for k in range(n_steps):
            t, dt = ts[k], float(ts[k + 1] - ts[k])  # dt < 0
            if stochastic:
                z = torch.randn(x.shape, generator=g, dtype=x.dtype)
                x = x + sde.reverse_drift(x, t, score(x, float(t))) * dt + float(sde.diffusion(t)) * math.sqrt(-dt) * z
            else:  # Heun: Euler in t is too crude for VE, where x shrinks by sigma_max / sigma_min along the way
                f = sde.pf_ode_drift(x, t, score(x, float(t)))
                x_pred = x + f * dt
                f_next = sde.pf_ode_drift(x_pred, ts[k + 1], score(x_pred, float(ts[k + 1])))
                x = x + (f + f_next) / 2 * dt
        m, std = (float(v) for v in sde.marginal(torch.tensor(t_min, dtype=torch.float64)))
        target = m**2 * s**2 + std**2
        rel = x.var().item() / target - 1
        assert abs(rel) < 4 * math.sqrt(2 / (2 * n)) + 0.015, (stochastic, rel)


def test_vp_sde_discrete_betas_are_ddpm_linear_betas():
    """beta_i = beta(t_i) / T with beta_min = 0.1, beta_max = 20 is DDPM's 1e-4 ... 0.02 (Song et al. 2021, App. B)."""
    ours = VPSDE(0.1, 20.0).discrete_betas(1000)
    ddpm = linear_betas(1000)
    assert ours.shape == ddpm.shape
    # equal up to where on [0, 1] the grid t_i sits: at most one grid step of beta(t)/T = 19.9 / 1000^2 apart
    assert (ours - ddpm).abs().max().item() <= 19.9 / 1000**2 + 1e-12
    assert ours[-1].item() == pytest.approx(0.02)
    ab_ours, ab_ddpm = betas_to_alpha_bar(ours), betas_to_alpha_bar(ddpm)
    assert torch.allclose(ab_ours, ab_ddpm, rtol=0.02)
    # and the chain's alpha_bar follows the SDE's m(t)^2 = exp(-int_0^t beta) at t = (i + 1) / T
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000
    m, _ = VPSDE(0.1, 20.0).marginal(t)
    # log prod(1 - beta_i) = -sum beta_i - sum beta_i^2 / 2 - ...; the second term reaches 0.068 at t = 1
    log_gap = (ab_ddpm.log() - 2 * m.log()).abs()
    assert log_gap.max().item() < 0.075
    assert log_gap[99].item() < 0.002  # 0.0008 at t = 0.1


# --------------------------------------------------------------------------------------- PF-ODE vs reverse SDE
MEANS = torch.tensor([[-2.0, -1.0], [2.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
STD = 0.4
WEIGHTS = torch.tensor([0.25, 0.25, 0.5], dtype=torch.float64)  # the mixture's mean is (0, 0)


def histogram_chi2(a: torch.Tensor, b: torch.Tensor, edges: torch.Tensor):
    """Two-sample chi-square statistic on a 2D histogram (equal sample sizes) and its degrees of freedom."""
    def hist(x):
        i = torch.bucketize(x[:, 0].contiguous(), edges).clamp(0, len(edges))
        j = torch.bucketize(x[:, 1].contiguous(), edges).clamp(0, len(edges))
        return torch.bincount(i * (len(edges) + 1) + j, minlength=(len(edges) + 1) ** 2).double()

    ha, hb = hist(a), hist(b)
    keep = (ha + hb) > 0
    chi2 = ((ha - hb)[keep] ** 2 / (ha + hb)[keep]).sum().item()
    return chi2, int(keep.sum()) - 1


def test_pf_ode_and_reverse_sde_give_the_same_marginals():
    n = 4000
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    x_T = torch.randn(2, n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 40.0
    ode = S.sample_heun(D, x_T[0], append_zero(ve_geometric_sigmas(0.005, 40.0, 50)))
    sde = S.sample_euler_maruyama(D, x_T[1], append_zero(ve_geometric_sigmas(0.005, 40.0, 400)),
                                  generator=torch.Generator().manual_seed(4))
    mu = (WEIGHTS[:, None] * MEANS).sum(0)
    cov = (WEIGHTS[:, None, None] * MEANS[:, :, None] * MEANS[:, None, :]).sum(0) + STD**2 * torch.eye(2)
    for out in (ode, sde):
        assert ((out.mean(0) - mu).abs() < 4 * (cov.diagonal() / n).sqrt()).all()
        assert torch.allclose(torch.cov(out.T), cov, atol=0.08)
    assert ((ode.mean(0) - sde.mean(0)).abs() < 4 * (2 * cov.diagonal() / n).sqrt()).all()
    chi2, df = histogram_chi2(ode, sde, torch.linspace(-3.0, 3.0, 13, dtype=torch.float64))
    assert chi2 < df + 4 * math.sqrt(2 * df), (chi2, df)
    # the test has power: the ODE's samples against samples of the wrong mixture (equal weights) fail it
    wrong = S.sample_heun(gmm_denoiser(MEANS, STD, None), x_T[1], append_zero(ve_geometric_sigmas(0.005, 40.0, 50)))
    chi2_wrong, df_wrong = histogram_chi2(ode, wrong, torch.linspace(-3.0, 3.0, 13, dtype=torch.float64))
    assert chi2_wrong > df_wrong + 4 * math.sqrt(2 * df_wrong)


# --------------------------------------------------------------------------------------- likelihood
POINTS = torch.tensor([[-2.0, -0.9], [1.5, -1.3], [0.0, 0.0], [0.3, 1.4], [2.5, 2.0]], dtype=torch.float64)


def test_pf_ode_likelihood_gaussian():
    s, sigma_max, sigma_min = 0.7, 80.0, 1e-3
    ll = pf_ode_log_likelihood(gaussian_denoiser(s), POINTS, sigma_max, sigma_min=sigma_min, n_steps=40,
                               prior_std=math.sqrt(s**2 + sigma_max**2))
    v = s**2 + sigma_min**2
    exact = -0.5 * (POINTS**2).sum(1) / v - math.log(2 * math.pi * v)
    assert ll.shape == (5,)
    assert (ll - exact).abs().max().item() < 0.01
    # Hutchinson's estimator is exact here: the Jacobian of D is a multiple of the identity
    hutch = pf_ode_log_likelihood(gaussian_denoiser(s), POINTS, sigma_max, sigma_min=sigma_min, n_steps=40,
                                  prior_std=math.sqrt(s**2 + sigma_max**2), exact_trace=False,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hutch, ll, atol=1e-9)


def test_pf_ode_likelihood_gaussian_mixture():
    sigma_max, sigma_min = 100.0, 1e-3
    prior_std = math.sqrt(sigma_max**2 + (WEIGHTS[:, None] * MEANS**2).sum().item() / 2 + STD**2)
    D = gmm_denoiser(MEANS, STD, WEIGHTS)
    ll = pf_ode_log_likelihood(D, POINTS, sigma_max, sigma_min=sigma_min, n_steps=60, prior_std=prior_std)
    exact = gmm_log_prob(POINTS, MEANS, STD, WEIGHTS, sigma=sigma_min)
    assert (ll - exact).abs().max().item() < 0.05, (ll - exact)
    # observed at sigma_min = 0.3 the answer is the density of the data blurred by N(0, 0.3^2 I)
    ll_blur = pf_ode_log_likelihood(D, POINTS, sigma_max, sigma_min=0.3, n_steps=40, prior_std=prior_std)
    assert (ll_blur - gmm_log_prob(POINTS, MEANS, STD, WEIGHTS, sigma=0.3)).abs().max().item() < 0.05
    # Hutchinson: unbiased; the mean over 64 probes per point is within 4 SE (+ the 0.05 above) of the exact value
    reps = 64
    hutch = pf_ode_log_likelihood(D, POINTS[:4].repeat(reps, 1), sigma_max, sigma_min=sigma_min, n_steps=60,
                                  prior_std=prior_std, exact_trace=False, generator=torch.Generator().manual_seed(1))
    hutch = hutch.reshape(reps, 4)
    err = (hutch.mean(0) - exact[:4]).abs()
    assert (err < 4 * hutch.std(0) / math.sqrt(reps) + 0.05).all(), err


def test_pf_ode_likelihood_is_deterministic_and_keeps_grads_off():
    D = gaussian_denoiser(1.0)
    x = POINTS.clone()
    with torch.no_grad():  # works inside no_grad (it turns autograd on internally for the trace)
        a = pf_ode_log_likelihood(D, x, 50.0, n_steps=10, exact_trace=False, generator=torch.Generator().manual_seed(0))
    b = pf_ode_log_likelihood(D, x, 50.0, n_steps=10, exact_trace=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not b.requires_grad


@pytest.mark.parametrize("kwargs", [
    {"sigma_max": 0.0}, {"sigma_max": float("nan")}, {"sigma_min": 200.0}, {"n_steps": 0}, {"n_steps": 2.5},
    {"exact_trace": "yes"}, {"prior_std": -1.0}, {"generator": 3}, {"cond": [1]},
])
def test_pf_ode_likelihood_rejects_bad_arguments(kwargs):
    args = {"sigma_max": 80.0, **kwargs}
    with pytest.raises((TypeError, ValueError)):
        pf_ode_log_likelihood(gaussian_denoiser(1.0), POINTS, **args)
