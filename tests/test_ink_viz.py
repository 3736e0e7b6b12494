"""Tests of diffbook.ink (the ink-in-water simulation) and diffbook.viz (plotting helpers).

The ink tests check physics that a wrong implementation would break: Brownian motion's mean squared
displacement is 2 D t whatever the starting cloud, the variance grows by exactly 2 D t, the centre of mass does
not drift, splitting a time interval into many jumps changes nothing in distribution, walls keep the ink in
the glass and mix it to a uniform distribution, and (tying the simulation to the book's samplers) running the
reverse process with sigma(t) = sqrt(2 D t) and the exact denoiser brings a diffused Gaussian drop back to its
original spread.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffbook import denoisers, samplers  # noqa: E402
from diffbook.data import ink  # noqa: E402
from diffbook.show import plots as viz  # noqa: E402


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- the drop
def test_ink_drop_is_inside_and_fills_the_outline():
    x = ink.ink_drop(20_000, gen(0))
    assert x.shape == (20_000, 2) and x.dtype == torch.float32
    assert ink.inside_drop(x).all()
    # uniform filling: the fraction in the upper half equals the upper half's share of the area
    theta = torch.linspace(0, math.pi, 20_001, dtype=torch.float64)
    size, m = 2.0, 2.0
    half = size * theta.sin() * (theta / 2).sin() ** m           # half-width at y = size cos(theta)
    dy = size * theta.sin()                                      # |dy/dtheta|
    area_w = 2 * half * dy
    upper = (theta <= math.pi / 2)
    share_upper = (area_w[upper].sum() / area_w.sum()).item()
    measured = (x[:, 1] > 0).double().mean().item()
    assert abs(measured - share_upper) < 4 * math.sqrt(share_upper * (1 - share_upper) / 20_000)


def test_outline_separates_inside_from_outside():
    outline = ink.drop_outline(300)
    centre = torch.tensor([0.0, -0.2])                            # a point inside the drop
    shrunk = centre + 0.97 * (outline - centre)
    grown = centre + 1.03 * (outline - centre)
    # the cusp at the tip (where the outline meets itself) is excluded
    away_from_tip = outline[:, 1] < 1.9
    assert ink.inside_drop(shrunk[away_from_tip]).all()
    assert not ink.inside_drop(grown[away_from_tip]).any()


def test_ink_drop_is_seeded_and_respects_size_and_center():
    a, b, c = ink.ink_drop(500, gen(1)), ink.ink_drop(500, gen(1)), ink.ink_drop(500, gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    small = ink.ink_drop(5000, gen(3), size=0.5, center=(3.0, -1.0))
    assert ink.inside_drop(small, size=0.5, center=(3.0, -1.0)).all()
    assert small[:, 1].min() >= -1.5 - 1e-6 and small[:, 1].max() <= -0.5 + 1e-6
    # scaling the drop scales its spread
    big = ink.ink_drop(20_000, gen(4), size=4.0)
    ref = ink.ink_drop(20_000, gen(5), size=2.0)
    assert torch.allclose(big.std(0) / ref.std(0), torch.tensor([2.0, 2.0]), rtol=0.03)


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=2.5), dict(n=10, size=-1.0), dict(n=10, center=(0.0,)),
                                 dict(n=10, sharpness=0.0), dict(n=10, generator="seed")])
def test_ink_drop_rejects_bad_input(bad):
    kwargs = dict(bad)
    n = kwargs.pop("n")
    with pytest.raises((ValueError, TypeError)):
        ink.ink_drop(n, **kwargs)


# ----------------------------------------------------------------------------------------------- Brownian motion
def test_mean_squared_displacement_is_2Dt_and_variance_grows_by_2Dt():
    D = 0.7
    x0 = ink.ink_drop(15_000, gen(0))
    times = [0.0, 0.05, 0.3, 1.0, 4.0]
    frames = ink.simulate(x0, D, times, generator=gen(1))
    assert frames.shape == (5, 15_000, 2)
    assert torch.equal(frames[0], x0)
    t = torch.tensor(times, dtype=torch.float64)
    msd = ink.mean_squared_displacement(frames, x0)
    # relative standard error of the msd estimate: sqrt(2 / (N d)) = 0.8%
    assert torch.allclose(msd[1:], 2 * D * t[1:], rtol=0.03)
    var = ink.variance(frames)
    assert torch.allclose(var, ink.variance(x0) + 2 * D * t, rtol=0.03)
    # the spread follows sqrt(Var_0 + 2 D t), and sigma_at is the added part
    assert torch.allclose(ink.sigma_at(D, t) ** 2, 2 * D * t)


def test_centre_of_mass_does_not_drift():
    x0 = ink.ink_drop(15_000, gen(0))
    D, t = 0.5, 2.0
    end = ink.simulate(x0, D, [t], generator=gen(1))[0]
    se = math.sqrt(2 * D * t / 15_000)
    assert ((end.mean(0) - x0.mean(0)).abs() < 4 * se).all()


def test_many_small_jumps_equal_one_big_jump_in_distribution():
    x0 = torch.zeros(15_000, 2)
    D, t = 0.25, 3.0
    one = ink.simulate(x0, D, [t], generator=gen(0))[0]
    many = ink.simulate(x0, D, [t], generator=gen(1), max_dt=t / 50)[0]
    assert torch.allclose(ink.variance(one), torch.tensor(2 * D * t, dtype=torch.float64), rtol=0.04)
    assert torch.allclose(ink.variance(many), torch.tensor(2 * D * t, dtype=torch.float64), rtol=0.04)
    # and the displacement is Gaussian: its kurtosis is 3 (standard error sqrt(96 / N) = 0.08)
    z = many[:, 0].double() / math.sqrt(2 * D * t)
    assert abs((z**4).mean().item() - 3.0) < 0.3


def test_simulation_is_seeded():
    x0 = ink.ink_drop(100, gen(0))
    a = ink.simulate(x0, 1.0, [0.5, 1.0], generator=gen(7))
    b = ink.simulate(x0, 1.0, [0.5, 1.0], generator=gen(7))
    assert torch.equal(a, b)


def test_sigma_at_and_time_at_are_inverse():
    t = torch.tensor([0.0, 0.1, 2.0, 50.0], dtype=torch.float64)
    assert torch.allclose(ink.time_at(0.3, ink.sigma_at(0.3, t)), t)
    with pytest.raises(ValueError):
        ink.sigma_at(0.3, -1.0)
    with pytest.raises(ValueError):
        ink.sigma_at(0.0, 1.0)


def test_reflect_folds_into_the_box():
    L = 1.5
    x = torch.linspace(-20, 20, 4001)[:, None].expand(-1, 2)
    y = ink.reflect(x, L)
    assert (y.abs() <= L + 1e-6).all()
    inside = x[:, 0].abs() <= L
    assert torch.allclose(y[inside], x[inside], atol=1e-5)              # points inside stay put
    assert torch.allclose(ink.reflect(torch.tensor([[L + 0.2, -L - 0.3]]), L), torch.tensor([[L - 0.2, -L + 0.3]]),
                          atol=1e-6)
    # two bounces: 2L + 0.5 past the right wall comes back from the left wall
    assert torch.allclose(ink.reflect(torch.tensor([[3 * L + 0.5, 0.0]]), L), torch.tensor([[-L + 0.5, 0.0]]), atol=1e-6)


def test_ink_in_a_glass_stays_in_and_mixes_to_uniform():
    L, D = 2.0, 0.5
    x0 = ink.ink_drop(10_000, gen(0), size=1.0)
    end = ink.simulate(x0, D, [0.05, 20.0], generator=gen(1), box=L, max_dt=0.05)
    assert (end.abs() <= L + 1e-6).all()
    # fully mixed: uniform on [-L, L] in each coordinate, variance L^2 / 3 and flat histogram
    assert torch.allclose(ink.variance(end[-1]), torch.tensor(L**2 / 3, dtype=torch.float64), rtol=0.03)
    counts = torch.histc(end[-1][:, 0], bins=8, min=-L, max=L)
    assert ((counts / counts.mean() - 1).abs() < 0.1).all()
    # early on, far from the walls, it still spreads like free space
    assert torch.allclose(ink.mean_squared_displacement(end[:1], x0), torch.tensor([2 * D * 0.05], dtype=torch.float64),
                          rtol=0.05)


def test_simulate_rejects_bad_input():
    x0 = ink.ink_drop(10, gen(0))
    with pytest.raises(ValueError):
        ink.simulate(x0, 1.0, [1.0, 0.5])                         # times must increase
    with pytest.raises(ValueError):
        ink.simulate(x0, 1.0, [-1.0])
    with pytest.raises(ValueError):
        ink.simulate(x0, -1.0, [1.0])
    with pytest.raises(ValueError):
        ink.simulate(x0 + 10, 1.0, [1.0], box=2.0)                 # particles outside the glass
    with pytest.raises(TypeError):
        ink.simulate(x0.numpy(), 1.0, [1.0])
    with pytest.raises(ValueError):
        ink.mean_squared_displacement(torch.zeros(3, 5, 2), torch.zeros(4, 2))


def test_reverse_process_brings_the_spread_back():
    """Diffuse a Gaussian drop N(0, s^2 I) until sigma(T) = sqrt(2 D T) = 0.5, then run the reverse process with
    the exact denoiser on the noise levels of the ink's own clock, sigma(t) = sqrt(2 D t): the drop's spread
    comes back. With a wrong clock (sqrt(D t)) the sampler removes too little noise and the drop stays too wide."""
    s, D, T = 0.3, 0.5, 0.25
    x0 = s * torch.randn(10_000, 2, generator=gen(0))
    mixed = ink.simulate(x0, D, [T], generator=gen(1))[0]
    assert torch.allclose(mixed.std(0), torch.full((2,), math.sqrt(s**2 + 2 * D * T)), rtol=0.03)
    times = torch.cat([torch.logspace(math.log10(T), -4, 200, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    back = samplers.sample_ddpm_ancestral(denoisers.gaussian_denoiser(s), mixed, ink.sigma_at(D, times),
                                          generator=gen(2))
    assert torch.allclose(back.std(0), torch.tensor([s, s]), rtol=0.03)
    wrong = samplers.sample_ddpm_ancestral(denoisers.gaussian_denoiser(s), mixed, (D * times).sqrt(), generator=gen(2))
    assert (wrong.std(0) > 1.08 * s).all()


# ----------------------------------------------------------------------------------------------- viz
def test_image_grid_places_images():
    imgs = torch.stack([torch.full((1, 4, 5), float(k)) for k in range(5)])
    grid = viz.image_grid(imgs, nrow=3, pad=1, pad_value=-1.0)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1)
    assert grid[1, 1] == 0 and grid[1, 1 + 6] == 1 and grid[1 + 5, 1 + 6] == 4
    assert grid[0, 0] == -1 and grid[-1, -1] == -1                   # padding and the empty 6th slot
    with pytest.raises(ValueError):
        viz.image_grid(torch.zeros(2, 2, 4, 4))                      # 2 channels


def test_show_images_one_axis_per_image_with_titles():
    fig = viz.show_images(torch.rand(3, 1, 8, 8) * 2 - 1, ["a", "b", "c"])
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3 and [ax.get_title() for ax in axes] == ["a", "b", "c"]
    assert axes[0].images[0].get_clim() == (-1.0, 1.0)
    plt.close(fig)
    with pytest.raises(ValueError):
        viz.show_images(torch.zeros(3, 1, 8, 8), ["only one"])


def test_scatter_and_density():
    x = torch.randn(1000, 2, generator=gen(0))
    fig, (a, b) = plt.subplots(1, 2)
    viz.scatter2d(a, x, lim=3)
    assert a.get_xlim() == (-3, 3)
    im = viz.density2d(b, x, lim=3, bins=30)
    h = im.get_array()
    cell = (6 / 30) ** 2
    assert h.shape == (30, 30) and abs(h.sum() * cell - 1.0) < 1e-9     # a density on the shown square
    # the histogram's row index is y (image convention): the mass of the upper half matches the points there
    in_square = x[(x.abs() < 3).all(1)]
    upper_share = (in_square[:, 1] > 0).double().mean().item()
    assert abs(h[15:].sum() * cell - upper_share) < 1e-9
    plt.close(fig)
    with pytest.raises(ValueError):
        viz.scatter2d(a, torch.zeros(5, 3))


def test_moving_average():
    v = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert np.allclose(viz.moving_average(v, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    assert np.allclose(viz.moving_average(v, 10), np.cumsum(v) / np.arange(1, 6))
    with pytest.raises(ValueError):
        viz.moving_average(v, 0)


def test_recorder_collects_sampler_states():
    sigmas = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.0])
    rec = viz.Recorder(every=2, keep=10)
    x = torch.randn(50, 2, generator=gen(0)) * 4
    out = samplers.sample_ddpm_ancestral(denoisers.gaussian_denoiser(1.0), x, sigmas, callback=rec, generator=gen(1))
    assert rec.steps == [0, 2] and rec.sigmas == [4.0, 1.0]
    traj = rec.trajectory(final=out)
    assert traj.shape == (3, 10, 2)
    assert torch.equal(traj[0], x[:10]) and torch.equal(traj[-1], out[:10])
    assert torch.allclose(rec.denoised[0], x[:10] / (1 + 16))           # D*(x, 4) = x / (1 + 4^2) for s = 1
    with pytest.raises(ValueError):
        viz.Recorder().trajectory()


def test_to_jshtml_animation_has_distinct_frames_and_stays_small():
    plt.close("all")
    values = list(range(20))
    x = torch.randn(2000, 2, generator=gen(0))

    def draw(axes, k):
        viz.scatter2d(axes[0], x * (1 + k / 10), lim=6, s=1)
        axes[1].imshow(np.full((8, 8), k / 20), vmin=0, vmax=1)

    html = viz.animate(draw, values, ncols=2, figsize=(5, 2.5)).data
    frames = html.count("frames[")
    assert frames >= 20                                             # one entry per frame
    assert 'class="animation"' in html
    assert len(html) < 1_500_000
    import re
    pngs = re.findall(r'frames\[\d+\] = "(data:image/png;base64,.*?)"', html, re.S)
    assert len(pngs) == 20 and pngs[0] != pngs[1]
    assert not plt.get_fignums()                                   # the figure was closed


def test_to_jshtml_rejects_one_frame():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError):
        viz.to_jshtml(fig, lambda k: None, 1)
    plt.close(fig)


def test_slider_is_a_live_explorer_over_the_values():
    ipywidgets = pytest.importorskip("ipywidgets")
    seen = []

    def draw(axes, v):
        seen.append(v)
        axes[0].plot([0, v], [0, v])

    w = viz.slider(draw, [10, 20, 30], description="t")
    assert isinstance(w, ipywidgets.interactive)
    control = w.children[0]
    assert control.min == 0 and control.max == 2 and control.description == "t"
    control.value = 2
    assert seen[-1] == 30
    plt.close("all")
    with pytest.raises(ValueError):
        viz.slider(draw, [1])
