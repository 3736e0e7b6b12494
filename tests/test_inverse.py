"""diffbook.inverse and diffbook.eval.restoration: the operators are what they claim (adjoint, pseudo-inverse), the
posterior-sampling step equals the Gaussian posterior in closed form, a sampler fed that step samples the posterior,
known pixels are kept exactly where the method promises it, seeded runs repeat, and bad input fails with one clear
error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbook import denoisers, inverse, samplers, schedules
from diffbook.eval import restoration

S = 0.7  # data N(0, S^2 I)
H = 4  # tiny images [B, 1, 4, 4]: dense matrices are cheap


def ops():
    mask = inverse.random_mask(H, 0.5, torch.Generator().manual_seed(1))
    return [inverse.Downsample(2), inverse.Inpaint(mask), inverse.Blur(0.8, eps=1e-6), inverse.Identity()]


def dense(op, shape=(1, 1, H, H)) -> torch.Tensor:
    """The matrix [m, n] of an operator on flattened images."""
    n = math.prod(shape[1:])
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])
    return op(basis).reshape(n, -1).T


def posterior(A, x, sigma, y, noise_std, given_x=True):
    """Mean and covariance of x0 given (x = x0 + sigma n and) y = A x0 + noise_std e, x0 ~ N(0, S^2 I)."""
    n = A.shape[1]
    P = torch.eye(n, dtype=torch.float64) / S**2 + A.T @ A / noise_std**2
    rhs = (A.T @ y.reshape(y.shape[0], -1).T).T / noise_std**2
    if given_x:
        P = P + torch.eye(n, dtype=torch.float64) / sigma**2
        rhs = rhs + x.reshape(x.shape[0], -1) / sigma**2
    cov = torch.linalg.inv(P)
    return (cov @ rhs.T).T, cov


@pytest.mark.parametrize("op", ops(), ids=lambda o: type(o).__name__)
def test_adjoint_and_pseudo_inverse_are_what_they_claim(op):
    A = dense(op)
    x = torch.randn(3, 1, H, H, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = torch.randn(op(x).shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose((op(x) * v).sum(), (x * op.adjoint(v)).sum(), atol=1e-10)
    y = op(x)
    assert torch.allclose(op(op.pinv(y)), y, atol=1e-8)  # A A^+ is the identity on the range of A
    pinv = torch.linalg.pinv(A)
    assert torch.allclose(op.pinv(y).reshape(3, -1), (pinv @ y.reshape(3, -1).T).T, atol=1e-6)
    # the Gram solve (a A A^T + b I)^{-1}
    got = op.gram_solve(y, 0.3, 0.2).reshape(3, -1)
    want = torch.linalg.solve(0.3 * A @ A.T + 0.2 * torch.eye(A.shape[0], dtype=torch.float64), y.reshape(3, -1).T).T
    if isinstance(op, inverse.Inpaint):  # measurements keep the image's shape: compare on the observed pixels
        keep = op.mask.flatten()
        got, want = got[:, keep], want[:, keep]
    assert torch.allclose(got, want, atol=1e-8)


@pytest.mark.parametrize("op", ops(), ids=lambda o: type(o).__name__)
def test_pigdm_step_is_the_gaussian_posterior_mean(op):
    """For data N(0, S^2 I) and a linear operator, Eq. (inv-pigdm) with data_std = S is E[x0 | x, y] exactly."""
    g = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(3, 1, H, H, dtype=torch.float64, generator=g)
    y = torch.randn(op(x).shape, dtype=torch.float64, generator=g)
    sigma, noise_std = torch.tensor([0.3, 0.9, 4.0], dtype=torch.float64), 0.3
    D = denoisers.gaussian_denoiser(S)
    got = inverse.pigdm_denoiser(D, op, y, noise_std=noise_std, data_std=S)(x, sigma)
    for b in range(3):
        mean, _ = posterior(dense(op), x[b:b + 1], float(sigma[b]), y[b:b + 1], noise_std)
        assert torch.allclose(got[b].flatten(), mean.flatten(), atol=1e-9)


@pytest.mark.parametrize("op", ops()[:2], ids=lambda o: type(o).__name__)
def test_projection_is_the_noiseless_posterior_mean(op):
    """Eq. (inv-projection) on Gaussian data is E[x0 | x, y] for noiseless y (the limit noise_std -> 0)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, H, H, dtype=torch.float64, generator=g)
    y = op(torch.randn(2, 1, H, H, dtype=torch.float64, generator=g))
    D = denoisers.gaussian_denoiser(S)
    got = inverse.projection_denoiser(D, op, y)(x, 0.5)
    assert torch.allclose(got, inverse.pigdm_denoiser(D, op, y, data_std=S)(x, 0.5), atol=1e-10)
    mean, _ = posterior(dense(op), x, 0.5, y, 1e-5)
    assert torch.allclose(got.reshape(2, -1), mean, atol=1e-6)
    assert torch.allclose(op(got), y, atol=1e-12)


def test_a_sampler_fed_the_exact_posterior_step_samples_the_posterior():
    """DDPM's ancestral sampler with the exact posterior denoiser returns samples of p(x0 | y)."""
    op, noise_std = inverse.Downsample(2), 0.2
    g = torch.Generator().manual_seed(4)
    y = op(S * torch.randn(1, 1, H, H, dtype=torch.float64, generator=g)).expand(4000, -1, -1, -1)
    D = inverse.pigdm_denoiser(denoisers.gaussian_denoiser(S), op, y, noise_std=noise_std, data_std=S)
    sigmas = schedules.karras_sigmas(1e-3, 80.0, 200).double()
    x = samplers.sample_ddpm_ancestral(D, 80.0 * torch.randn(4000, 1, H, H, dtype=torch.float64, generator=g),
                                       sigmas, generator=g)
    mean, cov = posterior(dense(op), None, None, y[:1], noise_std, given_x=False)
    flat = x.reshape(4000, -1)
    se = cov.diagonal().sqrt() / math.sqrt(4000)
    assert ((flat.mean(0) - mean[0]).abs() < 5 * se).all()
    assert torch.allclose(flat.var(0), cov.diagonal(), rtol=0.12)


def test_replacement_keeps_observed_pixels_exactly_and_samples_the_rest():
    """For a mask and independent Gaussian pixels, replacement (Eq. (inv-replacement)) keeps the observed pixels
    bit for bit and the missing ones come out N(0, S^2), with and without RePaint's resampling."""
    mask = inverse.box_mask(8, 4)
    op = inverse.Inpaint(mask)
    g = torch.Generator().manual_seed(5)
    y = op(S * torch.randn(1, 1, 8, 8, generator=g)).expand(2000, -1, -1, -1)
    sigmas = schedules.karras_sigmas(1e-3, 80.0, 200)
    D = denoisers.gaussian_denoiser(S)
    plain = samplers.sample_ddpm_ancestral(D, 80.0 * torch.randn(2000, 1, 8, 8, generator=g), sigmas, generator=g)
    assert abs(plain.std() / S - 1) < 0.05  # the sampler alone, 200 steps
    for resample in (1, 3):
        x = inverse.sample_replacement(D, 80.0 * torch.randn(2000, 1, 8, 8, generator=g), sigmas, op, y,
                                       resample=resample, generator=g)
        assert torch.equal(x[..., mask.expand(1, 8, 8)], y[..., mask.expand(1, 8, 8)])
        missing = x[:, 0][:, ~mask]
        assert abs(missing.mean()) < 0.02 and abs(missing.std() / plain.std() - 1) < 0.04


def test_projection_with_a_sampler_keeps_observed_pixels_exactly():
    op = inverse.Inpaint(inverse.half_mask(8, "top"))
    y = op(torch.rand(3, 1, 8, 8) * 2 - 1)
    D = inverse.projection_denoiser(denoisers.gaussian_denoiser(0.5), op, y)
    x = samplers.sample_ddim(D, 10 * torch.randn(3, 1, 8, 8), schedules.karras_sigmas(0.01, 10.0, 8))
    m = op.mask.expand_as(x)
    assert torch.equal(x[m], y[m])


def test_repaint_network_calls_and_seeded_determinism():
    calls = []

    def D(x, sigma, **cond):
        calls.append(1)
        return 0.5 * x

    op = inverse.Inpaint(inverse.box_mask(8, 4))
    y = op(torch.zeros(2, 1, 8, 8))
    sigmas = schedules.karras_sigmas(0.01, 10.0, 5)
    run = lambda seed, U=3: inverse.sample_replacement(D, torch.ones(2, 1, 8, 8), sigmas, op, y, resample=U,  # noqa
                                                       generator=torch.Generator().manual_seed(seed))
    a = run(0)
    assert len(calls) == 4 * 3 + 1  # U passes on every step but the last
    assert torch.equal(a, run(0)) and not torch.equal(a, run(1))
    assert a.shape == (2, 1, 8, 8)


def test_measure_and_tikhonov():
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    op = inverse.Downsample(4)
    assert inverse.measure(op, x0).shape == (2, 1, 2, 2)
    y = inverse.measure(inverse.Identity(), x0, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(y, inverse.measure(inverse.Identity(), x0, 0.1, torch.Generator().manual_seed(0)))
    assert 0.07 < (y - x0).std() < 0.13
    assert torch.allclose(inverse.tikhonov(inverse.Identity(), y, 0.25), y / 1.25)


# ------------------------------------------------------------------------------------------------ bad input
def test_masks_of_the_wrong_dtype_or_shape_fail_clearly():
    with pytest.raises(TypeError, match="bool"):
        inverse.Inpaint(torch.ones(32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        inverse.Inpaint([[True]])
    op = inverse.Inpaint(torch.ones(28, 28, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not fit images"):
        op(torch.zeros(1, 1, 32, 32))


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40))
def test_any_mask_that_does_not_match_the_image_fails_with_one_value_error(h, w):
    op = inverse.Inpaint(torch.ones(h, w, dtype=torch.bool))
    x = torch.zeros(2, 1, 16, 16)
    if (h, w) == (16, 16):
        assert torch.equal(op(x), x)
    else:
        with pytest.raises(ValueError, match="does not fit images"):
            op(x)


def test_an_operator_that_does_not_match_the_image_fails_clearly():
    with pytest.raises(ValueError, match="divisible by 3"):
        inverse.Downsample(3)(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="integer >= 1"):
        inverse.Downsample(0)
    y = torch.zeros(1, 1, 16, 16)  # a 2x measurement given to a 4x problem
    D = inverse.projection_denoiser(denoisers.gaussian_denoiser(1.0), inverse.Downsample(4), y)
    with pytest.raises(ValueError, match="measurement y has shape"):
        D(torch.zeros(1, 1, 32, 32), 1.0)
    with pytest.raises(ValueError, match="batch of images"):
        inverse.Identity()(torch.zeros(3, 32))
    with pytest.raises(TypeError, match="Operator"):
        inverse.projection_denoiser(denoisers.gaussian_denoiser(1.0), lambda x: x, y)


def test_noise_levels_outside_the_models_range_fail_clearly():
    D = denoisers.gaussian_denoiser(1.0)
    D.sigma_range = (0.01, 10.0)
    op = inverse.Inpaint(inverse.box_mask(8, 4))
    y = op(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="above the model's largest"):
        inverse.sample_replacement(D, torch.zeros(1, 1, 8, 8), schedules.karras_sigmas(0.01, 50.0, 4), op, y)
    with pytest.raises(ValueError, match="below the model's smallest"):
        inverse.sample_replacement(D, torch.zeros(1, 1, 8, 8), schedules.karras_sigmas(0.001, 10.0, 4), op, y)
    with pytest.raises(ValueError, match="noise_std"):
        inverse.pigdm_denoiser(D, op, y, noise_std=-1.0)


# ------------------------------------------------------------------------------------------------ metrics
def test_psnr_and_ssim():
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    assert torch.allclose(restoration.psnr(x + 0.1, x), torch.full((3,), 10 * math.log10(4 / 0.01),
                                                                    dtype=torch.float64))
    assert torch.allclose(restoration.ssim(x, x), torch.ones(3, dtype=torch.float64))
    noisy = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert (restoration.ssim(noisy, x) < 0.9).all()
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, :16] = True
    y = x.clone()
    y[..., 16:] += 0.2  # error only where the mask is False
    assert torch.isinf(restoration.psnr(y, x, mask=mask)).logical_not().all()
    assert (restoration.psnr(y, x, mask=mask) > 100).all()
    with pytest.raises(ValueError, match="one shape"):
        restoration.psnr(x, x[:, :, :16])


def test_baselines():
    op = inverse.Inpaint(inverse.box_mask(32, 10))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    fill = torch.zeros(1, 1, 32, 32)
    out = restoration.restore(None, op, op(x), "mean fill", fill=fill)
    m = op.mask.expand_as(x)
    assert torch.equal(out[m], x[m]) and (out[~m] == 0).all()
    up = restoration.restore(None, inverse.Downsample(2), torch.zeros(2, 1, 16, 16), "bicubic")
    assert up.shape == (2, 1, 32, 32)
    with pytest.raises(TypeError, match="diffusion model"):
        restoration.restore(None, op, op(x), "projection")
    assert restoration.nfe_of("RePaint", 20, 2) == 19 and restoration.nfe_of("bicubic", 20) == 0
