"""Consistency models (diffbook.consistency). Checked: the boundary condition f(x, sigma_min) = x holds bit for bit for
any network and input; the scalings; the training levels; with Gaussian data, whose exact consistency function (the
ODE's solution map) has a closed form, the distillation loss of the exact f vanishes at the rate of the teacher's
Euler step and grows for a wrong f, and the training loss vanishes as the levels get denser; one- and two-step
sampling with the exact f recover the data's variance; a short distillation run learns; seeded sampling repeats;
bad input gets one clear error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diffbook import consistency as C
from diffbook.denoisers import gaussian_denoiser
from diffbook.nets.mlp import MLP2D
from diffbook.train.fit import fit

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def gen(seed):
    return torch.Generator().manual_seed(seed)


def exact_f(s: float, sigma_min: float = SIGMA_MIN):
    """The consistency function of data N(0, s^2 I): the PF-ODE maps x at sigma to x sqrt((s^2 + sigma_min^2) /
    (s^2 + sigma^2)) at sigma_min."""

    def f(x, sigma, **cond):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        return x * ((s**2 + sigma_min**2) / (s**2 + sigma**2)).sqrt()[:, None]

    f.sigma_min = sigma_min
    return f


# ------------------------------------------------------------------------------------------ the boundary condition
@SETTINGS
@given(scale=st.floats(1e-6, 1e6), sigma_min=st.floats(1e-4, 1.0), sigma_data=st.floats(0.05, 5.0),
       seed=st.integers(0, 1000))
@example(scale=1.0, sigma_min=1.0, sigma_data=3.78125, seed=0)   # number / tensor = number * (1 / tensor) in torch
def test_the_boundary_condition_holds_bit_for_bit(scale, sigma_min, sigma_data, seed):
    torch.manual_seed(seed)
    net = MLP2D(hidden=16, depth=1)
    with torch.no_grad():   # a network whose outputs are large: the boundary must not depend on them
        net.net[-1].bias.fill_(1e3)
    f = C.consistency_function(net, sigma_min, sigma_data)
    x = torch.randn(64, 2, generator=gen(seed)) * scale
    assert torch.equal(f(x, sigma_min), x)
    assert torch.equal(f(x, torch.full((64,), sigma_min)), x)
    assert not torch.equal(f(x, sigma_min * 2 + 0.01), x)


def test_scalings_are_exactly_one_and_zero_at_sigma_min_and_edm_above():
    s = torch.tensor([SIGMA_MIN], dtype=torch.float64)
    c_skip, c_out = C.consistency_scalings(s, SIGMA_MIN, 0.5)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    big = torch.tensor([10.0, 80.0], dtype=torch.float64)
    c_skip, c_out = C.consistency_scalings(big, SIGMA_MIN, 0.5)
    edm_skip, edm_out = 0.25 / (big**2 + 0.25), 0.5 * big / (big**2 + 0.25).sqrt()
    assert torch.allclose(c_skip, edm_skip, rtol=1e-3) and torch.allclose(c_out, edm_out, rtol=1e-3)


def test_training_levels():
    s = C.consistency_sigmas(18, SIGMA_MIN, SIGMA_MAX)
    assert len(s) == 18 and (s[1:] > s[:-1]).all()
    assert math.isclose(s[0].item(), SIGMA_MIN, rel_tol=1e-12) and math.isclose(s[-1].item(), SIGMA_MAX, rel_tol=1e-12)


# ------------------------------------------------------------------------------------------ the losses, Gaussian data
@pytest.mark.parametrize("s", [0.5, 2.0])
def test_distillation_loss_of_the_exact_f_vanishes_at_the_euler_steps_rate(s):
    """Only the teacher's Euler step errs: its local error is O(h^2), so the squared distance falls like N^-4."""
    x0 = s * torch.randn(20000, 2, generator=gen(0), dtype=torch.float64)
    teacher, f = gaussian_denoiser(s), exact_f(s)
    loss = {n: C.consistency_distillation_loss(f, f, teacher, x0, C.consistency_sigmas(n), gen(1)).item()
            for n in (20, 80)}
    assert loss[80] < loss[20] / 50
    wrong = exact_f(s * 1.2)
    assert C.consistency_distillation_loss(wrong, wrong, teacher, x0, C.consistency_sigmas(80), gen(1)).item() \
        > 20 * loss[80]


def test_training_loss_of_the_exact_f_falls_as_the_levels_get_denser():
    s = 1.0
    x0 = s * torch.randn(20000, 2, generator=gen(2), dtype=torch.float64)
    f = exact_f(s)
    loss = {n: C.consistency_training_loss(f, f, x0, C.consistency_sigmas(n), gen(3)).item() for n in (10, 40, 160)}
    assert loss[10] > loss[40] > loss[160] and loss[160] < loss[10] / 10


def test_gradients_flow_only_through_the_student():
    torch.manual_seed(0)
    net = MLP2D(hidden=16, depth=1)
    f = C.consistency_function(net, SIGMA_MIN)
    x0 = torch.randn(32, 2)
    loss = C.consistency_distillation_loss(f, f, gaussian_denoiser(1.0), x0, C.consistency_sigmas(10).float(), gen(4))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters()) and loss.item() > 0


# ------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("levels", [[SIGMA_MAX, 0.0], [SIGMA_MAX, 0.8, 0.0], [SIGMA_MAX, 5.0, 0.5, 0.0]])
@pytest.mark.parametrize("s", [0.5, 2.0])
def test_exact_consistency_function_recovers_the_variance_in_one_and_few_steps(s, levels):
    n = 20000
    x = torch.randn(n, 2, generator=gen(5), dtype=torch.float64) * math.sqrt(s**2 + SIGMA_MAX**2)
    calls = []
    out = C.sample_consistency(exact_f(s), x, torch.tensor(levels, dtype=torch.float64), generator=gen(6),
                               callback=lambda info: calls.append(info["sigma"]))
    assert calls == levels[:-1]
    se = s**2 * math.sqrt(2 / (2 * n))
    assert abs(out.var().item() - s**2) < 4 * se + 1e-5, (out.var().item(), s**2)


def test_seeded_sampling_repeats():
    x = torch.randn(100, 2, generator=gen(7), dtype=torch.float64) * SIGMA_MAX
    levels = torch.tensor([SIGMA_MAX, 1.0, 0.0], dtype=torch.float64)
    a = C.sample_consistency(exact_f(1.0), x, levels, generator=gen(8))
    b = C.sample_consistency(exact_f(1.0), x, levels, generator=gen(8))
    c = C.sample_consistency(exact_f(1.0), x, levels, generator=gen(9))
    assert torch.equal(a, b) and not torch.equal(a, c)
    one = torch.tensor([SIGMA_MAX, 0.0], dtype=torch.float64)   # one step is deterministic
    assert torch.equal(C.sample_consistency(exact_f(1.0), x, one, generator=gen(8)),
                       C.sample_consistency(exact_f(1.0), x, one, generator=gen(9)))


def test_a_short_distillation_learns_the_one_step_map():
    """200 steps on 2D Gaussian data with the exact teacher: the one-step samples get the data's spread."""
    s = 1.0
    torch.manual_seed(0)
    net = MLP2D(hidden=64, depth=2, c_scale=4.0)
    sigmas = C.consistency_sigmas(18, SIGMA_MIN, SIGMA_MAX).float()
    teacher = gaussian_denoiser(s)

    def loss_fn(model, x0, g):
        f = C.consistency_function(model, SIGMA_MIN, 1.0)
        return C.consistency_distillation_loss(f, f, teacher, x0, sigmas, g)

    def data(n, g):
        return s * torch.randn(n, 2, generator=g)

    student, losses = fit(net, loss_fn, data, steps=300, batch=256, lr=2e-3, seed=1, ema_decay=0.99)
    f = C.consistency_function(student, SIGMA_MIN, 1.0)
    x = torch.randn(4000, 2, generator=gen(10)) * math.sqrt(s**2 + SIGMA_MAX**2)
    out = C.sample_consistency(f, x, torch.tensor([SIGMA_MAX, 0.0]))
    assert abs(out.std().item() - s) < 0.25 and sum(losses[-30:]) < sum(losses[:30])


# ------------------------------------------------------------------------------------------ bad input
def test_bad_arguments_name_the_problem():
    f = C.consistency_function(MLP2D(hidden=8, depth=1), SIGMA_MIN)
    with pytest.raises(ValueError, match="sigma >= sigma_min"):
        f(torch.zeros(2, 2), SIGMA_MIN / 2)
    with pytest.raises(ValueError, match="sigma_min"):
        C.consistency_function(MLP2D(), sigma_min=0.0)
    with pytest.raises(TypeError, match="net must be callable"):
        C.consistency_function("net")
    with pytest.raises(ValueError, match="increasing"):
        C.consistency_training_loss(f, f, torch.zeros(4, 2), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="n >= 2"):
        C.consistency_sigmas(1)
    with pytest.raises(ValueError, match="sigma_min"):
        C.sample_consistency(f, torch.zeros(2, 2), torch.tensor([1.0, 0.001, 0.0]))
    with pytest.raises(TypeError, match="callable"):
        C.sample_consistency(3, torch.zeros(2, 2), torch.tensor([1.0, 0.0]))


@SETTINGS
@given(levels=st.lists(st.floats(-5, 100, allow_nan=False), min_size=0, max_size=4))
def test_bad_sampling_levels_raise_one_clear_error(levels):
    grid = torch.tensor(levels, dtype=torch.float64)
    try:
        C.sample_consistency(exact_f(1.0), torch.zeros(3, 2, dtype=torch.float64), grid)
    except (ValueError, TypeError) as err:
        assert str(err).strip()
