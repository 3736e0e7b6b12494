"""The formulas of the notation page (book/notation.md), checked on exact quantities: a known clean point x0 and
noise eps at a noise level sigma, read through diffbook's adapters where they exist."""

import math

import torch

from diffbook.denoisers import from_eps_model, from_v_model, gaussian_denoiser, score_from_denoiser
from diffbook.schedules import alpha_bar_to_sigma, betas_to_alpha_bar, linear_betas


def _exact(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
    sigma = torch.rand(n, generator=g, dtype=torch.float64) * 20 + 0.01
    return x0, eps, sigma


def test_ve_and_vp_coordinates_describe_the_same_point():
    x0, eps, sigma = _exact()
    s = sigma[:, None]
    a = (1 + s**2).rsqrt()                      # sqrt(alpha_bar)
    b = s * a                                   # sqrt(1 - alpha_bar)
    x = x0 + s * eps                            # VE
    x_t = a * x0 + b * eps                      # VP, the same noise draw
    assert torch.allclose(x, x_t / a) and torch.allclose(x_t, x / (1 + s**2).sqrt())
    assert torch.allclose(a**2 + b**2, torch.ones_like(a))
    assert torch.allclose(s, ((1 - a**2) / a**2).sqrt())       # sigma from alpha_bar
    ab = betas_to_alpha_bar(linear_betas(1000))
    assert torch.allclose(alpha_bar_to_sigma(ab) ** 2, (1 - ab) / ab)
    assert torch.allclose(ab / (1 - ab), 1 / alpha_bar_to_sigma(ab) ** 2)   # SNR = 1 / sigma^2


def test_the_four_readings_convert_as_the_table_says():
    x0, eps, sigma = _exact(1)
    s = sigma[:, None]
    a, b = (1 + s**2).rsqrt(), s * (1 + s**2).rsqrt()
    x = x0 + s * eps
    v = a * eps - b * x0
    score = -eps / s                                           # of the conditional p(x | x0), exact here
    # from eps
    assert torch.allclose(x - s * eps, x0)
    # from x0
    assert torch.allclose((x - x0) / s, eps) and torch.allclose((x0 - x) / s**2, score)
    # from v
    assert torch.allclose(a**2 * x - s * a * v, x0)
    assert torch.allclose(a**2 * s * x + a * v, eps)
    assert torch.allclose(-(a**2 * s * x + a * v) / s, score)
    # from the score
    assert torch.allclose(x + s**2 * score, x0) and torch.allclose(-s * score, eps)
    # VP forms: x0 = (x_t - b eps) / a = a x_t - b v
    x_t = a * x
    assert torch.allclose((x_t - b * eps) / a, x0) and torch.allclose(a * x_t - b * v, x0)


def test_the_adapters_implement_those_readings():
    """A network that returns the exact eps (or v) makes from_eps_model (from_v_model) return x0 exactly."""
    ab = betas_to_alpha_bar(linear_betas(1000))
    x0, eps, _ = _exact(2, n=5)
    t = torch.tensor([10, 200, 500, 800, 999])
    sigma = alpha_bar_to_sigma(ab)[t]
    s = sigma[:, None]
    a, b = (1 + s**2).rsqrt(), s * (1 + s**2).rsqrt()
    x = x0 + s * eps
    eps_net = lambda x_t, tt: eps                       # noqa: E731  (the exact noise predictor)
    v_net = lambda x_t, tt: a * eps - b * x0            # noqa: E731  (the exact velocity predictor)
    assert torch.allclose(from_eps_model(eps_net, ab)(x, sigma), x0)
    assert torch.allclose(from_v_model(v_net, ab)(x, sigma), x0)


def test_score_is_minus_eps_over_sigma_for_the_exact_denoiser():
    """For data N(0, s_d^2 I) the score of p_sigma is -x / (s_d^2 + sigma^2); Tweedie's formula with the exact
    denoiser gives it, and so does -eps_hat / sigma with eps_hat = (x - D) / sigma."""
    s_d = 0.7
    D = gaussian_denoiser(s_d)
    x = torch.randn(8, 2, dtype=torch.float64)
    sigma = torch.full((8,), 1.3, dtype=torch.float64)
    x0_hat = D(x, sigma)
    eps_hat = (x - x0_hat) / 1.3
    exact = -x / (s_d**2 + 1.3**2)
    assert torch.allclose(score_from_denoiser(x, sigma, x0_hat), exact)
    assert torch.allclose(-eps_hat / 1.3, exact)
    # VP: grad_{x_t} log p_t(x_t) = -eps_hat / sqrt(1 - alpha_bar), with x_t = a x
    a = 1 / math.sqrt(1 + 1.3**2)
    x_t = a * x
    vp_exact = -x_t / (a**2 * s_d**2 + 1 - a**2)          # x_t ~ N(0, a^2 s_d^2 + b^2)
    assert torch.allclose(-eps_hat / math.sqrt(1 - a**2), vp_exact)
