"""Tests of diffbook.fields: grids, scores by autograd and by Tweedie's formula, cosine agreement, field plots."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffbook.denoisers import gaussian_denoiser, gmm_denoiser, gmm_log_prob  # noqa: E402
from diffbook.show.fields import (  # noqa: E402
    denoiser_score,
    field_cosine,
    grid2d,
    plot_field,
    plot_log_density,
    score_by_autograd,
)

MEANS = torch.tensor([[-1.5, -1.0], [1.5, 1.0], [1.0, -1.5]], dtype=torch.float64)
STDS = torch.tensor([0.5, 0.7, 0.4], dtype=torch.float64)
WEIGHTS = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64)


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- grid
def test_grid_layout_matches_imshow_and_quiver():
    g = grid2d((-1.0, 3.0), 5)
    assert g.points.shape == (25, 2) and g.n == 5 and g.extent == (-1.0, 3.0, -1.0, 3.0)
    assert torch.allclose(g.xs, torch.linspace(-1, 3, 5))
    # x varies fastest along the rows of points; reshape puts y on the rows (origin="lower" layout)
    assert torch.allclose(g.points[1] - g.points[0], torch.tensor([1.0, 0.0]))
    img = g.reshape(g.points[:, 1] * 10 + g.points[:, 0])
    assert img.shape == (5, 5)
    assert np.allclose(img[2, :], 10 * 1.0 + np.linspace(-1, 3, 5))  # row 2 is y = 1
    assert np.allclose(img[:, 0], 10 * np.linspace(-1, 3, 5) - 1.0)  # column 0 is x = -1
    assert g.reshape(g.points).shape == (5, 5, 2)


def test_grid_symmetric_limit():
    g = grid2d(2, 3)
    assert g.extent == (-2.0, 2.0, -2.0, 2.0)
    assert torch.allclose(g.points[4], torch.zeros(2))  # the centre of a 3 x 3 grid


# ----------------------------------------------------------------------------------------------- scores
def test_score_by_autograd_of_a_gaussian_is_linear():
    mu, s = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.7
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def log_prob(x):
        return -0.5 * ((x - mu) ** 2).sum(1) / s**2

    with torch.no_grad():  # the helper must work where notebooks switch gradients off
        score = score_by_autograd(log_prob, x)
    assert torch.allclose(score, -(x - mu) / s**2)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_tweedie_score_of_gmm_denoiser_equals_autograd_score(sigma):
    """Tweedie's formula: (D(x; sigma) - x) / sigma^2 = grad log p_sigma(x) for the exact mixture denoiser."""
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2.5
    exact = score_by_autograd(lambda z: gmm_log_prob(z, MEANS, STDS, WEIGHTS, sigma=sigma), x)
    tweedie = denoiser_score(gmm_denoiser(MEANS, STDS, WEIGHTS), sigma)(x)
    assert torch.allclose(tweedie, exact, rtol=1e-8, atol=1e-8)


def test_denoiser_score_of_gaussian_denoiser():
    s, sigma = 1.3, 0.4
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    field = denoiser_score(gaussian_denoiser(s), sigma)
    assert field.sigma == sigma
    assert torch.allclose(field(x), -x / (s**2 + sigma**2), atol=1e-6)
    assert torch.allclose(denoiser_score(gaussian_denoiser(s), torch.tensor(sigma))(x), field(x))


def test_field_cosine_values():
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0], [3.0, 4.0]])
    v = torch.tensor([[5.0, 0.0], [-2.0, -2.0], [1.0, 0.0], [1.0, 1.0], [6.0, 8.0]])
    cos = field_cosine(u, v)
    assert torch.allclose(cos, torch.tensor([1.0, -1.0, 0.0, 0.0, 1.0], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- plots
def test_plot_log_density_shows_clipped_log_density_in_the_right_place(ax):
    peak = torch.tensor([2.0, 0.0])

    def log_prob(x):
        return -0.5 * ((x - peak) ** 2).sum(1)

    img = plot_log_density(ax, log_prob, lim=3, n=61, floor=5.0)
    a = np.asarray(img.get_array())
    assert a.shape == (61, 61) and a.max() == pytest.approx(0.0, abs=1e-3) and a.min() == pytest.approx(-5.0)
    row, col = np.unravel_index(np.argmax(a), a.shape)
    xs = np.linspace(-3, 3, 61)
    assert xs[col] == pytest.approx(2.0, abs=0.06) and xs[row] == pytest.approx(0.0, abs=0.06)
    assert tuple(img.get_extent()) == (-3.0, 3.0, -3.0, 3.0)
    # the maximum is shaded at `strength` of the colour map
    assert img.norm(0.0) == pytest.approx(0.6) and img.norm(-5.0) == pytest.approx(0.0)


def test_plot_field_arrows_follow_the_field(ax):
    q = plot_field(ax, lambda x: 3.0 * x, lim=2, n=5)
    u, v = np.asarray(q.U).reshape(5, 5), np.asarray(q.V).reshape(5, 5)
    xs = np.linspace(-2, 2, 5)
    # at grid point (x = xs[j], y = xs[i]) the unit arrow points along (x, y)
    i, j = 4, 1
    norm = math.hypot(xs[j], xs[i])
    assert u[i, j] == pytest.approx(xs[j] / norm) and v[i, j] == pytest.approx(xs[i] / norm)
    q2 = plot_field(ax, lambda x: 3.0 * x, lim=2, n=5, normalize=False)
    assert np.asarray(q2.U).reshape(5, 5)[i, j] == pytest.approx(3 * xs[j])


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(ax):
    with pytest.raises(ValueError, match="lo < hi"):
        grid2d((1.0, -1.0))
    with pytest.raises(ValueError, match="lo < hi"):
        grid2d(0.0)
    with pytest.raises(TypeError, match="lim"):
        grid2d("wide")
    with pytest.raises(ValueError, match="n .grid points"):
        grid2d(1.0, 1)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        denoiser_score(gaussian_denoiser(1.0), 0.0)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        denoiser_score("D", 1.0)
    with pytest.raises(ValueError, match="one log-density per point"):
        score_by_autograd(lambda x: x.sum(), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="same shape"):
        field_cosine(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must return a tensor of shape"):
        plot_field(ax, lambda x: x[:, 0], lim=1, n=3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        plot_field(ax, lambda x: x / 0.0, lim=1, n=3)
    with pytest.raises(ValueError, match="floor"):
        plot_log_density(ax, lambda x: -x.pow(2).sum(1), floor=0)
    with pytest.raises(ValueError, match="strength"):
        plot_log_density(ax, lambda x: -x.pow(2).sum(1), strength=1.5)
    with pytest.raises(TypeError, match="log_prob must be a function"):
        plot_log_density(ax, None)


def test_plot_field_colours_arrows_by_a_scalar(ax):
    q = plot_field(ax, lambda x: x + 1.0, lim=1, n=3, color_by=lambda x: x[:, 0], clim=(-1, 1))
    c = np.asarray(q.get_array()).reshape(3, 3)
    assert np.allclose(c[0], [-1.0, 0.0, 1.0]) and q.get_clim() == (-1, 1)
    with pytest.raises(TypeError, match="color_by"):
        plot_field(ax, lambda x: x, lim=1, n=3, color_by=0.5)
