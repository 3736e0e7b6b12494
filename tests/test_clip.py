"""clip_denoiser: the clamped estimate is never farther from an in-range truth, leaves exact in-range estimates
alone, and composes with guidance in the order the evaluation uses."""

import pytest
import torch

from diffbook.denoisers import clip_denoiser, gmm_denoiser


def test_clip_never_moves_an_estimate_away_from_an_in_range_truth():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(256, 4, generator=g) * 2 - 1              # clean data lie in [-1, 1]
    raw = truth + 5 * torch.randn(256, 4, generator=g)           # a bad estimate, often far outside the range
    den = clip_denoiser(lambda x, sigma: raw)
    out = den(torch.zeros(256, 4), torch.ones(256))
    assert out.min() >= -1 and out.max() <= 1
    assert ((out - truth).abs() <= (raw - truth).abs() + 1e-7).all()
    assert ((out - truth).abs() < (raw - truth).abs()).float().mean() > 0.5   # and mostly strictly closer


def test_clip_leaves_an_exact_in_range_denoiser_unchanged():
    # a mixture whose means lie inside [-1, 1] with tiny spread: E[x0 | x] is a convex combination of the means
    means = torch.tensor([[-0.8, 0.5], [0.6, -0.2], [0.1, 0.9]], dtype=torch.float64)
    exact = gmm_denoiser(means, torch.full((3,), 1e-3, dtype=torch.float64))
    x = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 10
    sigma = torch.full((500,), 10.0, dtype=torch.float64)
    assert torch.equal(clip_denoiser(exact)(x, sigma), exact(x, sigma))


def test_clip_keeps_attributes_and_checks_its_range():
    def den(x, sigma, **cond):
        return x

    den.alpha_bar = "table"
    assert clip_denoiser(den).alpha_bar == "table"
    with pytest.raises(ValueError, match="lo < hi"):
        clip_denoiser(den, 1.0, -1.0)
    with pytest.raises(TypeError, match="callable"):
        clip_denoiser("not a denoiser")
