"""fmnist-ddpm is a discretised VP-SDE model: the same network serves as the book's fmnist-vp-sde."""

import torch

from diffbook import zoo
from diffbook.denoisers import gaussian_denoiser, vp_score
from diffbook.schedules import alpha_bar_to_sigma, betas_to_alpha_bar, linear_betas
from diffbook.sde import VPSDE


def test_ddpm_linear_betas_are_the_vp_sde_discretised():
    sde = VPSDE(0.1, 20.0)
    assert torch.allclose(sde.discrete_betas(1000), linear_betas(1000), rtol=0, atol=1e-15)
    # and the discrete chain's noise levels follow the SDE's sigma(t) at t = (i + 1) / T within 4%: the chain's
    # log(1 - beta) = -beta - beta^2 / 2 - ... differs from the SDE's integral of beta at second order
    sigma_discrete = alpha_bar_to_sigma(betas_to_alpha_bar(linear_betas(1000)))
    t = (torch.arange(1000, dtype=torch.float64) + 1) / 1000
    rel = (sigma_discrete / sde.to_sigma(t) - 1).abs()
    assert rel[10:].max() < 0.04


def test_vp_score_of_the_gaussian_denoiser_is_the_exact_vp_score():
    """Data N(0, s^2 I) under the VP SDE has x_t ~ N(0, m^2 s^2 + std^2): score = -x / (m^2 s^2 + std^2)."""
    sde, s = VPSDE(0.1, 20.0), 0.7
    score = vp_score(gaussian_denoiser(s), sde)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (0.01, 0.3, 0.9):
        m, std = sde.marginal(torch.tensor(t, dtype=torch.float64))
        assert torch.allclose(score(x, t), -x / (m**2 * s**2 + std**2), rtol=1e-10)


def test_fmnist_ddpm_through_the_vp_view_matches_its_eps_prediction():
    """At t on the training grid, the VP score equals -eps_hat / sqrt(1 - alpha_bar) of the same network."""
    den = zoo.load("fmnist-ddpm").denoiser
    sde = VPSDE(0.1, 20.0)
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(2, 1, 32, 32, generator=g)
    labels = torch.tensor([3, 10])
    t_index = 400  # the network's own timestep, and the SDE time whose sigma(t) equals that timestep's sigma
    alpha_bar = den.alpha_bar[t_index]
    # find the SDE time t with m(t)^2 = alpha_bar, so both views describe the same x_t
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sde.marginal(torch.tensor(mid, dtype=torch.float64))[0] ** 2 > alpha_bar else (lo, mid)
    with torch.no_grad():
        score = vp_score(den, sde)(x_t, (lo + hi) / 2, class_labels=labels)
        eps_hat = den.net(x_t, torch.full((2,), float(t_index)), class_labels=labels).sample
    assert torch.allclose(score, -eps_hat / (1 - alpha_bar).sqrt().float(), rtol=1e-3, atol=1e-3)
