"""Bad input gets one clear ValueError/TypeError, never an internal error (IndexError, RuntimeError, ...).

Property tests (hypothesis) throw random bad inputs at the samplers, schedules, denoisers, forward process,
likelihood and guidance. ``raises_clean`` demands a ValueError/TypeError with a message; ``no_internal_error``
(for random mixes of good and bad arguments) allows success too, but nothing other than ValueError/TypeError.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffbook import schedules as sch
from diffbook.denoisers import (
    from_diffusers_unet,
    from_eps_model,
    from_score_model,
    gaussian_denoiser,
    gmm_denoiser,
    gmm_log_prob,
)
from diffbook.forward import q_chain, q_posterior_mean_var, q_sample, q_step
from diffbook.guidance import cfg, classifier_guidance
from diffbook.likelihood import pf_ode_log_likelihood

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)
NAN, INF = float("nan"), float("inf")

from diffbook.samplers import SAMPLERS  # noqa: E402  (every sampler, by name)

D_GAUSS = gaussian_denoiser(1.0)
GOOD_X = torch.randn(3, 2)
GOOD_SIGMAS = torch.tensor([10.0, 1.0, 0.1, 0.0], dtype=torch.float64)
ALPHA_BAR = sch.betas_to_alpha_bar(sch.linear_betas(50))


def raises_clean(fn, *args, **kwargs):
    """fn(*args, **kwargs) must raise ValueError or TypeError, with a message."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn(*args, **kwargs)
    assert str(info.value).strip(), f"{type(info.value).__name__} without a message"


def no_internal_error(fn, *args, **kwargs):
    """fn(*args, **kwargs) may succeed or raise ValueError/TypeError with a message; nothing else may escape."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        assert str(err).strip()
        return None


# --------------------------------------------------------------------------------------- strategies
finite = st.floats(-100, 100, allow_nan=False)
positive = st.floats(1e-3, 100, allow_nan=False)
non_tensors = st.one_of(st.none(), st.floats(), st.integers(), st.text(alphabet="abc", max_size=3),
                        st.lists(st.floats(0, 10), max_size=4),
                        st.dictionaries(st.text(alphabet="abc", max_size=2), st.integers(), max_size=1))


@st.composite
def bad_sigmas(draw):
    kind = draw(st.sampled_from(["non_tensor", "0d", "2d", "short", "increasing", "tie", "nan", "negative", "int_flat"]))
    if kind == "non_tensor":
        return draw(non_tensors)
    if kind == "0d":
        return torch.tensor(draw(positive))
    if kind == "2d":
        return torch.rand(draw(st.integers(1, 3)), draw(st.integers(2, 4))) + 1
    if kind == "short":
        return torch.tensor([draw(positive)])[: draw(st.integers(0, 1))]
    vals = sorted(draw(st.lists(positive, min_size=2, max_size=6, unique=True)), reverse=True)
    if kind == "increasing":
        vals = vals[::-1]
    elif kind == "tie":
        i = draw(st.integers(0, len(vals) - 2))
        vals[i + 1] = vals[i]
    elif kind == "nan":
        vals[draw(st.integers(0, len(vals) - 1))] = draw(st.sampled_from([NAN, INF, -INF]))
    elif kind == "negative":
        vals = vals + [-draw(positive)]
    elif kind == "int_flat":
        return torch.full((len(vals),), 3)  # an integer tensor that is not decreasing
    return torch.tensor(vals, dtype=torch.float64)


@st.composite
def bad_x(draw, allow_empty: bool = True):
    """A sample batch that is not a finite floating-point tensor with a batch dimension (or, optionally, is empty)."""
    kinds = ["non_tensor", "int", "bool", "nan", "0d", "complex"] + (["empty"] if allow_empty else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "non_tensor":
        return draw(non_tensors)
    if kind == "int":
        return torch.randint(0, 5, (3, 2))
    if kind == "bool":
        return torch.zeros(3, 2, dtype=torch.bool)
    if kind == "nan":
        x = torch.randn(3, 2)
        x[draw(st.integers(0, 2)), draw(st.integers(0, 1))] = draw(st.sampled_from([NAN, INF, -INF]))
        return x
    if kind == "0d":
        return torch.tensor(draw(finite))
    if kind == "complex":
        return torch.randn(3, 2, dtype=torch.complex64)
    return torch.zeros(0, 2)


@st.composite
def good_x(draw):
    B = draw(st.integers(1, 4))
    tail = draw(st.sampled_from([(2,), (3,), (1, 2, 2)]))
    scale = draw(st.floats(0.1, 50))
    seed = draw(st.integers(0, 2**16))
    return torch.randn(B, *tail, generator=torch.Generator().manual_seed(seed)) * scale


@st.composite
def good_sigmas(draw):
    vals = sorted(draw(st.lists(st.floats(1e-3, 80), min_size=1, max_size=6, unique=True)), reverse=True)
    vals = [v for i, v in enumerate(vals) if i == 0 or v < vals[i - 1] * 0.999]
    if draw(st.booleans()) or len(vals) == 1:
        vals.append(0.0)
    return torch.tensor(vals, dtype=torch.float64)


@st.composite
def bad_sigma_for_batch(draw):
    """A per-sample sigma that does not fit a batch of 3."""
    kind = draw(st.sampled_from(["len", "2d", "nan", "neg", "non_tensor"]))
    if kind == "len":
        return torch.ones(draw(st.sampled_from([1, 2, 4, 5])))
    if kind == "2d":
        return torch.ones(3, draw(st.integers(1, 2)))
    if kind == "nan":
        return torch.tensor([1.0, draw(st.sampled_from([NAN, INF])), 1.0])
    if kind == "neg":
        return torch.tensor([1.0, -draw(positive), 1.0])
    return draw(st.one_of(st.text(alphabet="abc", max_size=2), st.none(), st.lists(st.floats(0, 1), min_size=1, max_size=3)))


# --------------------------------------------------------------------------------------- samplers
@SETTINGS
@given(name=st.sampled_from(list(SAMPLERS)), sigmas=bad_sigmas())
def test_samplers_reject_bad_sigmas(name, sigmas):
    raises_clean(SAMPLERS[name], D_GAUSS, GOOD_X, sigmas)


@SETTINGS
@given(name=st.sampled_from(list(SAMPLERS)), x=bad_x())
def test_samplers_reject_bad_x(name, x):
    raises_clean(SAMPLERS[name], D_GAUSS, x, GOOD_SIGMAS)


BAD_OPTIONS = {
    "ddim": [{"eta": v} for v in (-0.1, 1.5, NAN, INF, "0.5", None, True)],
    "pc": [{"snr": v} for v in (0, -1.0, NAN, INF, "x", None)] + [{"n_corrector": v} for v in (0, -2, 1.5, "2", None)],
    "annealed_langevin": [{"n_steps_each": v} for v in (0, -1, 2.5, "5", None)]
    + [{"step_lr": v} for v in (0.0, -1e-5, NAN, INF, "a")] + [{"final_denoise": v} for v in ("yes", None, 1)],
}
COMMON_BAD = [{"callback": 3}, {"callback": "print"}, {"generator": 42}, {"generator": "seed"}, {"cond": [1, 2]},
              {"cond": "label"}]


@SETTINGS
@given(name=st.sampled_from(list(SAMPLERS)), data=st.data())
def test_samplers_reject_bad_options(name, data):
    options = data.draw(st.sampled_from(BAD_OPTIONS.get(name, []) + COMMON_BAD))
    raises_clean(SAMPLERS[name], D_GAUSS, GOOD_X, GOOD_SIGMAS, **options)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_reject_bad_denoisers(name):
    fn = SAMPLERS[name]
    raises_clean(fn, "not callable", GOOD_X, GOOD_SIGMAS)
    raises_clean(fn, lambda x, sigma: x[:, :1], GOOD_X, GOOD_SIGMAS)  # wrong shape
    raises_clean(fn, lambda x, sigma: x.tolist(), GOOD_X, GOOD_SIGMAS)  # not a tensor
    raises_clean(fn, lambda x, sigma: x * NAN, GOOD_X, GOOD_SIGMAS)  # NaN output -> the result check names it


@SETTINGS
@given(name=st.sampled_from(list(SAMPLERS)), x=good_x(), sigmas=good_sigmas(), seed=st.integers(0, 100))
def test_samplers_accept_random_valid_inputs(name, x, sigmas, seed):
    """Valid inputs never raise an internal error; the output has the shape and dtype of x (or a clear
    ValueError if annealed Langevin's step size makes it diverge)."""
    out = no_internal_error(SAMPLERS[name], D_GAUSS, x, sigmas, generator=torch.Generator().manual_seed(seed))
    if name != "annealed_langevin":
        assert out is not None
    if out is not None:
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------- schedules
maybe_bad_int = st.one_of(st.integers(-3, 30), st.floats(-2, 30), st.text(alphabet="abc", max_size=2), st.none(), st.booleans())
maybe_bad_float = st.one_of(st.floats(-1, 100), st.sampled_from([NAN, INF, 0.0]), st.text(alphabet="abc", max_size=2), st.none())


@SETTINGS
@given(T=maybe_bad_int, a=maybe_bad_float, b=maybe_bad_float, n=maybe_bad_int, rho=maybe_bad_float,
       spacing=st.sampled_from(["leading", "trailing", "linspace", "bogus", 3]))
def test_schedules_never_raise_internal_errors(T, a, b, n, rho, spacing):
    no_internal_error(sch.linear_betas, T, a, b)
    no_internal_error(sch.cosine_alpha_bar, T, a)
    no_internal_error(sch.ve_geometric_sigmas, a, b, n)
    no_internal_error(sch.karras_sigmas, a, b, n, rho)
    no_internal_error(sch.ddpm_timesteps, T, n, spacing)
    no_internal_error(sch.ddpm_sigmas, ALPHA_BAR, n, spacing)
    no_internal_error(sch.vp_prior_std, a)


@SETTINGS
@given(n=st.one_of(st.integers(-5, 0), st.floats(0.5, 3.5).filter(lambda v: not v.is_integer()),
                   st.text(alphabet="abc", max_size=2), st.none(), st.just(True)))
def test_step_counts_must_be_positive_integers(n):
    raises_clean(sch.linear_betas, n)
    raises_clean(sch.karras_sigmas, 0.01, 10.0, n)
    raises_clean(sch.ve_geometric_sigmas, 0.01, 10.0, n)
    raises_clean(sch.ddpm_sigmas, ALPHA_BAR, n)
    raises_clean(sch.cosine_alpha_bar, n)


@SETTINGS
@given(lo=maybe_bad_float, hi=maybe_bad_float)
def test_sigma_ranges(lo, hi):
    ok = all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in (lo, hi)) and lo < hi
    for fn in (sch.karras_sigmas, sch.ve_geometric_sigmas):
        if ok:
            s = fn(lo, hi, 5)
            assert (s[1:] < s[:-1]).all()
        else:
            raises_clean(fn, lo, hi, 5)


@SETTINGS
@given(table=st.one_of(non_tensors, bad_x(), st.just(torch.ones(3, 3) * 0.5), st.just(torch.tensor([0.9, 1.0])),
                       st.just(torch.tensor([0.9, 0.0])), st.just(torch.tensor([0.9, NAN]))))
def test_alpha_bar_tables_are_checked(table):
    raises_clean(sch.ddpm_sigmas, table, 1)
    raises_clean(sch.t_to_sigma, 0, table)
    raises_clean(sch.sigma_to_t, 1.0, table)
    raises_clean(from_eps_model, lambda x, t: x, table)


@SETTINGS
@given(t=st.one_of(st.floats(-10, -1e-3), st.floats(49.001, 100), st.sampled_from([NAN, INF, -INF]),
                   st.text(alphabet="abc", max_size=2), st.none()))
def test_t_to_sigma_rejects_bad_times(t):
    raises_clean(sch.t_to_sigma, torch.tensor([t]) if isinstance(t, float) else t, ALPHA_BAR)


@SETTINGS
@given(sigma=st.one_of(st.sampled_from([NAN, -1.0]), st.floats(-10, -1e-3), st.text(alphabet="abc", max_size=2), st.none()))
def test_sigma_to_t_rejects_bad_sigmas(sigma):
    raises_clean(sch.sigma_to_t, torch.tensor([sigma]) if isinstance(sigma, float) else sigma, ALPHA_BAR)


@pytest.mark.parametrize("bad", [[1.0, 0.5], "x", None, torch.tensor(0.5), torch.full((2, 2), 0.5)])
def test_tensor_helpers_reject_non_vectors(bad):
    raises_clean(sch.append_zero, bad)
    raises_clean(sch.betas_to_alpha_bar, bad)
    raises_clean(sch.alpha_bar_to_betas, bad)


def test_cosine_schedule_rejects_bad_offsets():
    for s in (-1.0, NAN, -0.5, "a"):
        raises_clean(sch.cosine_alpha_bar, 10, s)


# --------------------------------------------------------------------------------------- denoisers
FAKE_SCHED = type("Sched", (), {"alphas_cumprod": ALPHA_BAR.float(),
                                "config": type("Cfg", (), {"prediction_type": "epsilon"})()})()
DENOISERS = {
    "gaussian": gaussian_denoiser(1.0),
    "gmm": gmm_denoiser(torch.zeros(2, 2), 0.5, torch.tensor([0.5, 0.5])),
    "eps_model": from_eps_model(lambda x, t: x * 0, ALPHA_BAR),
    "score_model": from_score_model(lambda x, sigma: -x),
    "diffusers_unet": from_diffusers_unet(lambda x, t: x * 0, FAKE_SCHED),
    "cfg": cfg(gaussian_denoiser(1.0), 1.0, {}),
}


@SETTINGS
@given(name=st.sampled_from(list(DENOISERS)), sigma=bad_sigma_for_batch())
def test_denoisers_reject_bad_sigma(name, sigma):
    raises_clean(DENOISERS[name], torch.randn(3, 2), sigma)


@SETTINGS
@given(name=st.sampled_from(list(DENOISERS)), x=bad_x(allow_empty=False))  # an empty batch is fine for a denoiser
def test_denoisers_reject_bad_x(name, x):
    raises_clean(DENOISERS[name], x, 1.0)


@pytest.mark.parametrize("means, stds, weights, x", [
    (torch.zeros(2, 3), 1.0, None, torch.randn(4, 2)),  # means of dimension 3, data of dimension 2
    (torch.zeros(2, 2), torch.ones(3), None, torch.randn(4, 2)),  # 3 stds for 2 components
    (torch.zeros(2, 2), 1.0, torch.tensor([0.3, 0.3]), torch.randn(4, 2)),  # weights do not sum to 1
    (torch.zeros(2, 2), 1.0, torch.tensor([1.5, -0.5]), torch.randn(4, 2)),  # negative weight
    (torch.zeros(2, 2), -1.0, None, torch.randn(4, 2)),
    (torch.zeros(2, 2), NAN, None, torch.randn(4, 2)),
    (torch.zeros(2), 1.0, None, torch.randn(4, 2)),  # means not [K, d]
    (torch.zeros(2, 2), 1.0, None, torch.randn(4, 2, 2)),  # images, not points
    ([[0.0, NAN]], 1.0, None, torch.randn(4, 2)),
])
def test_gmm_rejects_inconsistent_mixtures(means, stds, weights, x):
    raises_clean(gmm_denoiser(means, stds, weights), x, 1.0)
    raises_clean(gmm_log_prob, x, means, stds, weights)


def test_gaussian_denoiser_rejects_bad_std():
    for s in (-1.0, NAN, INF, "a"):
        raises_clean(lambda: gaussian_denoiser(s)(torch.randn(3, 2), 1.0))


# --------------------------------------------------------------------------------------- forward process
@SETTINGS
@given(t=st.one_of(st.integers(-5, -1), st.integers(50, 60), st.floats(0, 10), st.text(alphabet="abc", max_size=2), st.none(),
                   st.just(torch.zeros(2, dtype=torch.long)), st.just(torch.zeros(3, 1, dtype=torch.long)),
                   st.just(torch.tensor([0.5, 1.0, 2.0]))))
def test_q_sample_rejects_bad_timesteps(t):
    raises_clean(q_sample, torch.randn(3, 2), t, ALPHA_BAR)


@SETTINGS
@given(alpha_bar=st.one_of(non_tensors, bad_x(), st.just(torch.ones(3, 3) * 0.5), st.just(torch.tensor([0.9, 1.5]))),
       noise=st.one_of(st.none(), non_tensors.filter(lambda v: v is not None), bad_x(), st.just(torch.randn(4, 2))))
def test_q_sample_rejects_bad_tables_and_noise(alpha_bar, noise):
    raises_clean(q_sample, torch.randn(3, 2), 1, alpha_bar)
    if noise is not None:
        raises_clean(q_sample, torch.randn(3, 2), 1, ALPHA_BAR, noise=noise)


@SETTINGS
@given(x0=bad_x(allow_empty=False), betas=st.one_of(non_tensors, bad_x(), st.just(torch.tensor([0.1, 1.5]))))
def test_forward_chain_and_posterior_reject_bad_inputs(x0, betas):
    raises_clean(q_sample, x0, 1, ALPHA_BAR)
    raises_clean(q_chain, x0, torch.full((5,), 0.1))
    raises_clean(q_chain, torch.randn(3, 2), betas)
    raises_clean(q_step, x0, 0.1)
    raises_clean(q_posterior_mean_var, x0, torch.randn(3, 2), 1, torch.full((5,), 0.1))
    raises_clean(q_posterior_mean_var, torch.randn(3, 2), torch.randn(3, 2), 1, betas)


def test_forward_posterior_needs_matching_shapes_and_t_at_least_1():
    betas = torch.full((5,), 0.1)
    raises_clean(q_posterior_mean_var, torch.randn(3, 2), torch.randn(4, 2), 1, betas)
    raises_clean(q_posterior_mean_var, torch.randn(3, 2), torch.randn(3, 2), 0, betas)
    for beta in (0.0, -0.1, 1.5, NAN, "a"):
        raises_clean(q_step, torch.randn(3, 2), beta)


# --------------------------------------------------------------------------------------- likelihood and guidance
@SETTINGS
@given(x0=bad_x())
def test_likelihood_rejects_bad_points(x0):
    raises_clean(pf_ode_log_likelihood, D_GAUSS, x0, 10.0, n_steps=2)


@SETTINGS
@given(w=st.one_of(st.sampled_from([NAN, INF, -INF]), st.text(alphabet="abc", max_size=2), st.none(), st.booleans()),
       null=st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.text(alphabet="abc", max_size=2)))
def test_guidance_rejects_bad_arguments(w, null):
    raises_clean(cfg, D_GAUSS, w, {})
    raises_clean(cfg, D_GAUSS, 1.0, null)
    raises_clean(classifier_guidance, D_GAUSS, lambda x, s: x.sum(1), w)
    guided = classifier_guidance(D_GAUSS, lambda x, s: x.sum())  # returns a scalar, not one value per sample
    raises_clean(guided, torch.randn(3, 2), 1.0)
