"""The denoiser family (diffbook.preconditioning): eps, x0, v, score, flow velocity and EDM as one denoiser
D = c_skip x + c_out F(c_in x; c_noise). Checked: each parameterisation's target gives back x0 exactly; each agrees
with the book's existing adapters for that parameterisation; the loss of F is the denoiser's error weighted by
1/c_out^2; v-prediction is EDM with sigma_data = 1; EDM's target has unit variance on Gaussian data at every noise
level (the property its scalings were designed for); the error gains the chapter quotes; bad input gets one clear
error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffbook import preconditioning as P
from diffbook.flow import from_velocity_model
from diffbook.losses import edm_loss

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SIGMAS = torch.tensor([1e-3, 0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 80.0, 157.0, 1e3], dtype=torch.float64)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list(P.PARAMETERISATIONS))
def test_the_target_of_each_parameterisation_gives_back_x0_exactly(name):
    scalings = P.PARAMETERISATIONS[name]
    x0 = torch.randn(len(SIGMAS), 3, generator=gen(0), dtype=torch.float64)
    x = x0 + SIGMAS[:, None] * torch.randn(x0.shape, generator=gen(1), dtype=torch.float64)
    target = P.network_target(scalings, x0, x, SIGMAS)
    D = P.precondition(lambda x_in, c_noise: target, scalings)   # a network that outputs the exact target
    assert torch.allclose(D(x, SIGMAS), x0, atol=1e-9, rtol=0)


def test_each_target_is_the_quantity_its_name_says():
    x0 = torch.randn(10, 2, generator=gen(2), dtype=torch.float64)
    n = torch.randn(10, 2, generator=gen(3), dtype=torch.float64)
    s = SIGMAS
    x = x0 + s[:, None] * n
    a, b = (1 / (1 + s**2)).sqrt()[:, None], (s / (1 + s**2).sqrt())[:, None]   # sqrt(alpha_bar), sqrt(1-alpha_bar)
    t = (s / (1 + s))[:, None]
    expected = {"eps": n, "x0": x0, "v": a * n - b * x0, "score": -n, "flow": n - x0}
    for name, want in expected.items():
        got = P.network_target(P.PARAMETERISATIONS[name], x0, x, s)
        assert torch.allclose(got, want, atol=1e-9 * (1 + s.max().item()), rtol=1e-9), name
    # the flow target is the velocity of the path z_t = (1 - t) x0 + t n, and z = x / (1 + sigma)
    assert torch.allclose(x / (1 + s[:, None]), (1 - t) * x0 + t * n)


def test_eps_and_v_scalings_are_the_book_adapters():
    """D = x - sigma eps_hat (Eq. eps-to-denoiser) and D = c_in^2 x - sigma c_in v_hat (Eq. v-denoiser)."""
    x = torch.randn(len(SIGMAS), 2, generator=gen(4), dtype=torch.float64)
    F = torch.randn(x.shape, generator=gen(5), dtype=torch.float64)
    s, c_in = SIGMAS[:, None], (1 + SIGMAS**2).rsqrt()[:, None]
    eps_D = P.precondition(lambda x_in, c: F, P.eps_scalings)(x, SIGMAS)
    v_D = P.precondition(lambda x_in, c: F, P.v_scalings)(x, SIGMAS)
    score_D = P.precondition(lambda x_in, c: F, P.score_scalings)(x, SIGMAS)
    assert torch.allclose(eps_D, x - s * F)
    assert torch.allclose(v_D, c_in**2 * x - s * c_in * F)
    assert torch.allclose(score_D, x + s**2 * (F / s))   # Tweedie with the NCSN score s = F / sigma


def test_v_prediction_is_edm_with_unit_data_std_and_the_output_sign_flipped():
    v, e = P.v_scalings(SIGMAS), P.edm_scalings(SIGMAS, sigma_data=1.0)
    assert torch.allclose(v.c_skip, e.c_skip) and torch.allclose(v.c_in, e.c_in)
    assert torch.allclose(v.c_out, -e.c_out) and torch.allclose(v.c_noise, e.c_noise)


def test_flow_scalings_are_the_flow_models_denoiser():
    """The same velocity network read through flow_scalings and through diffbook.flow.from_velocity_model."""
    A = torch.tensor([[0.3, -1.2], [0.7, 0.4]], dtype=torch.float64)

    def velocity(z, t):  # a velocity that ignores its time input, so the two time labels cannot differ
        return z @ A.T + 1.0

    x = torch.randn(len(SIGMAS), 2, generator=gen(6), dtype=torch.float64) * (1 + SIGMAS[:, None])
    a = P.precondition(lambda x_in, c: velocity(x_in, None), P.flow_scalings)(x, SIGMAS)
    b = from_velocity_model(velocity)(x, SIGMAS)
    assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", list(P.PARAMETERISATIONS))
def test_the_loss_of_F_is_the_denoisers_error_weighted_by_one_over_c_out_squared(name):
    scalings = P.PARAMETERISATIONS[name]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def F(x_in, c_noise):
        return net(torch.cat([x_in, c_noise[:, None]], 1))

    x0 = torch.randn(len(SIGMAS), 2, generator=gen(7), dtype=torch.float64)
    loss = P.preconditioned_loss(F, scalings, x0, SIGMAS, gen(8))
    x = x0 + SIGMAS[:, None] * torch.randn(x0.shape, generator=gen(8), dtype=torch.float64)  # the same noise
    err = (P.precondition(F, scalings)(x, SIGMAS) - x0).pow(2).mean(1)
    assert math.isclose(loss.item(), (P.loss_weight(scalings, SIGMAS) * err).mean().item(), rel_tol=1e-6)


def test_the_weights_named_in_the_chapter():
    s = SIGMAS
    assert torch.allclose(P.loss_weight(P.eps_scalings, s), 1 / s**2)             # the SNR
    assert torch.allclose(P.loss_weight(P.v_scalings, s), 1 + 1 / s**2)           # SNR + 1
    assert torch.allclose(P.loss_weight(P.x0_scalings, s), torch.ones_like(s))
    assert torch.allclose(P.loss_weight(P.flow_scalings, s), (1 + s) ** 2 / s**2)
    sd = 0.5
    assert torch.allclose(P.loss_weight(lambda q: P.edm_scalings(q, sd), s), (s**2 + sd**2) / (s * sd) ** 2)


def test_edm_weight_is_the_one_in_diffbook_losses():
    """losses.edm_loss weights the denoiser's error by (sigma^2 + sd^2) / (sigma sd)^2: with a denoiser that is off by
    a constant 0.1, its loss is that weight times 0.01, averaged over its log-normal sigmas."""
    x0 = torch.zeros(20000, 1, dtype=torch.float64)
    g = gen(9)
    loss = edm_loss(lambda x, sigma: x0 + 0.1, x0, g).item()
    ln_sigma = torch.randn(20000, generator=gen(9), dtype=torch.float64) * 1.2 - 1.2   # the same draws
    w = P.loss_weight(P.edm_scalings, ln_sigma.exp())
    assert math.isclose(loss, (w * 0.01).mean().item(), rel_tol=1e-6)


@pytest.mark.parametrize("sd", [0.5, 1.4])
def test_edm_targets_have_unit_variance_on_gaussian_data_at_every_level(sd):
    """Karras et al.'s design rule: with data N(0, sd^2), Var[F_target] = 1 for every sigma (within Monte Carlo)."""
    n = 200_000
    for sigma in (0.002, 0.1, 1.0, 10.0, 80.0):
        x0 = sd * torch.randn(n, 1, generator=gen(10), dtype=torch.float64)
        x = x0 + sigma * torch.randn(n, 1, generator=gen(11), dtype=torch.float64)
        target = P.network_target(lambda q: P.edm_scalings(q, sd), x0, x, torch.full((n,), sigma,
                                                                                       dtype=torch.float64))
        assert abs(target.var().item() - 1) < 4 * math.sqrt(2 / n), sigma
    # eps-prediction's target also has unit variance, but its error gain c_out = -sigma does not stay bounded


def test_error_gains_at_the_largest_noise_level_of_the_book_models():
    s = torch.tensor([157.0], dtype=torch.float64)
    gain = {name: P.PARAMETERISATIONS[name](s).c_out.abs().item() for name in P.PARAMETERISATIONS}
    assert gain["eps"] == 157.0 and gain["score"] == 157.0
    assert gain["x0"] == 1.0 and gain["v"] < 1.0 and gain["flow"] < 1.0 and gain["edm"] < 0.5


def test_log_uniform_sigmas_cover_every_scale_equally():
    s = P.log_uniform_sigmas(100_000, 0.01, 100.0, gen(12), dtype=torch.float64)
    assert s.min() >= 0.01 and s.max() <= 100.0
    counts = torch.histc(s.log10(), bins=4, min=-2, max=2)
    assert (counts / len(s) - 0.25).abs().max() < 0.01
    assert torch.equal(P.log_uniform_sigmas(5, 0.1, 1.0, gen(1)), P.log_uniform_sigmas(5, 0.1, 1.0, gen(1)))


# ------------------------------------------------------------------------------------------ bad input
@SETTINGS
@given(sigma=st.one_of(st.floats(max_value=-1e-6), st.sampled_from([math.nan, math.inf, -math.inf]),
                       st.text(max_size=2)), name=st.sampled_from(list(P.PARAMETERISATIONS)))
def test_bad_noise_levels_raise_one_clear_error(sigma, name):
    with pytest.raises((ValueError, TypeError)) as info:
        P.PARAMETERISATIONS[name](sigma)
    assert str(info.value).strip()


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="sigma_data"):
        P.edm_scalings(1.0, sigma_data=0.0)
    with pytest.raises(TypeError, match="scalings must be a function"):
        P.precondition(lambda x, c: x, "edm")
    with pytest.raises(TypeError, match="net must be callable"):
        P.precondition(3, P.edm_scalings)
    with pytest.raises(ValueError, match="sigma > 0"):
        P.network_target(P.eps_scalings, torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="sigma > 0"):
        P.preconditioned_loss(lambda x, c: x, P.eps_scalings, torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        P.log_uniform_sigmas(4, 1.0, 0.1)
    with pytest.raises(ValueError, match="integer"):
        P.log_uniform_sigmas(0, 0.1, 1.0)
