"""Tests of diffbook.metrics against closed forms, brute-force references and known behaviour."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from diffbook.data.toy2d import grid25_mixture, ring8_mixture
from diffbook.eval import metrics
from diffbook.eval.metrics import (
    density_coverage,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    mode_stats,
    precision_recall,
    real_vs_real_floor,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_cov(d, seed):
    a = torch.randn(d, d, generator=gen(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ mode counts


def test_exact_ring8_samples_cover_all_modes_with_the_chi_fraction_high_quality():
    mix = ring8_mixture()
    x = mix.sample(20000, gen(1))
    s = mode_stats(x, mix.centres, mix.std)
    assert s["modes_covered"] == 8 and s["n_modes"] == 8
    # P(|N(0, I_2)| < 3) = 1 - exp(-9/2) = 0.98889; binomial standard error ~ 0.0007
    assert abs(s["high_quality_fraction"] - (1 - math.exp(-4.5))) < 0.004
    assert s["per_mode"].sum() == round(s["high_quality_fraction"] * 20000)
    assert (s["per_mode"] > 2000).all()


def test_samples_from_one_mode_cover_one_and_far_samples_none():
    mix = grid25_mixture()
    one = mix.centres[7] + mix.std * torch.randn(3000, 2, generator=gen(2))
    s = mode_stats(one, mix.centres, mix.std)
    assert s["modes_covered"] == 1 and s["per_mode"][7] == s["per_mode"].sum() > 2900
    between = torch.tensor([[1.0, 1.0]]).expand(100, 2)  # halfway between grid modes: 28 std from each
    s = mode_stats(between, mix.centres, mix.std)
    assert s["modes_covered"] == 0 and s["high_quality_fraction"] == 0.0


def test_mode_stats_threshold_and_min_count():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[2.9, 0.0], [3.1, 0.0], [10.0, 0.5], [10.0, -0.5]])
    s = mode_stats(x, centres, 1.0)
    assert s["per_mode"].tolist() == [1, 2] and s["high_quality_fraction"] == 0.75
    assert mode_stats(x, centres, 1.0, min_count=2)["modes_covered"] == 1
    assert mode_stats(x, centres, 1.0, threshold=3.2)["per_mode"].tolist() == [2, 2]
    # per-mode stds: the normalised distance decides
    assert mode_stats(x, centres, torch.tensor([0.5, 1.0]))["per_mode"].tolist() == [0, 2]


# ------------------------------------------------------------------------------------------ Frechet distance


def test_fd_closed_form_for_diagonal_gaussians():
    d = 6
    f64 = torch.float64
    mu1, mu2 = torch.randn(d, generator=gen(1), dtype=f64), torch.randn(d, generator=gen(2), dtype=f64)
    v1, v2 = torch.rand(d, generator=gen(3), dtype=f64) + 0.1, torch.rand(d, generator=gen(4), dtype=f64) + 0.1
    expected = ((mu1 - mu2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum()
    got = frechet_distance_from_stats(mu1, torch.diag(v1), mu2, torch.diag(v2))
    assert got == pytest.approx(expected.item(), rel=1e-9, abs=1e-12)


def test_fd_matches_the_general_matrix_square_root_formula():
    d = 10
    c1, c2 = random_cov(d, 5), random_cov(d, 6)  # they do not commute
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.3, dtype=torch.float64)
    covmean = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(c1.numpy() + c2.numpy() - 2 * covmean))
    assert frechet_distance_from_stats(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance_from_stats(mu2, c2, mu1, c1) == pytest.approx(expected, rel=1e-8)  # symmetric


def test_fd_of_samples_approaches_the_closed_form_and_is_zero_for_identical_sets():
    d, n = 4, 40000
    mu2 = torch.tensor([0.5, 0.0, -0.5, 1.0])
    s2 = torch.tensor([1.0, 2.0, 0.5, 1.0])
    a = torch.randn(n, d, generator=gen(7))
    b = mu2 + s2 * torch.randn(n, d, generator=gen(8))
    expected = (mu2**2).sum() + ((1 - s2) ** 2).sum()  # = 1.5 + 1.25
    assert frechet_distance(a, b) == pytest.approx(expected.item(), rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    mu, cov = feature_stats(a)
    assert torch.allclose(mu, a.double().mean(0)) and torch.allclose(cov, torch.cov(a.double().T))


def test_real_vs_real_floor_is_the_finite_sample_bias():
    d = 8
    real = torch.randn(6000, d, generator=gen(9))
    floor = real_vs_real_floor(real, 1000, generator=gen(10), repeats=3)
    # E[FD] between two independent N-samples of N(0, I_d) is about d^2/(2N) + d/N (mean and covariance noise)
    assert 0.3 * (d * d / 2000 + d / 1000) < floor < 3 * (d * d / 2000 + d / 1000)
    shifted = frechet_distance(real[:1000], real[1000:2000] + 0.5)
    assert shifted > 10 * floor
    assert real_vs_real_floor(real, 1000, generator=gen(10)) == real_vs_real_floor(real, 1000, generator=gen(10))


# -------------------------------------------------------------------------------- k-NN ball based metrics


def brute_force(real, fake, k_pr, k_dc):
    """Reference: full distance matrices in numpy, strict definitions from the papers."""
    r, f = real.double().numpy(), fake.double().numpy()
    drr = np.linalg.norm(r[:, None] - r[None], axis=2)
    dff = np.linalg.norm(f[:, None] - f[None], axis=2)
    dfr = np.linalg.norm(f[:, None] - r[None], axis=2)  # [fake, real]
    rad_r = np.sort(drr, axis=1)[:, k_pr]  # index 0 is the point itself
    rad_f = np.sort(dff, axis=1)[:, k_pr]
    precision = (dfr <= rad_r[None]).any(1).mean()
    recall = (dfr.T <= rad_f[None]).any(1).mean()
    rad_dc = np.sort(drr, axis=1)[:, k_dc]
    density = (dfr <= rad_dc[None]).sum() / (k_dc * len(f))
    coverage = (dfr.min(0) <= rad_dc).mean()
    return precision, recall, density, coverage


def test_knn_metrics_match_a_brute_force_reference_across_chunks(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK", 7)  # many chunk boundaries
    real = torch.randn(60, 3, generator=gen(11))
    fake = torch.randn(45, 3, generator=gen(12)) * 1.3 + 0.4
    p, r, dens, cov = brute_force(real, fake, 3, 5)
    pr, dc = precision_recall(real, fake, k=3), density_coverage(real, fake, k=5)
    assert pr["precision"] == pytest.approx(p) and pr["recall"] == pytest.approx(r)
    assert dc["density"] == pytest.approx(dens) and dc["coverage"] == pytest.approx(cov)


def test_precision_recall_same_shifted_and_collapsed():
    d, n = 16, 1000
    real = torch.randn(n, d, generator=gen(13))
    same = torch.randn(n, d, generator=gen(14))
    pr = precision_recall(real, same)
    assert pr["precision"] > 0.65 and pr["recall"] > 0.65
    shifted = precision_recall(real, same + 1.5)  # every coordinate moved by 1.5 std
    assert shifted["precision"] < 0.1 and shifted["recall"] < 0.1
    collapsed = real[:1] + 0.01 * torch.randn(n, d, generator=gen(15))  # all samples at one real point
    pr = precision_recall(real, collapsed)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.01


def test_density_coverage_same_and_collapsed():
    d, n = 16, 1000
    real = torch.randn(n, d, generator=gen(16))
    dc = density_coverage(real, torch.randn(n, d, generator=gen(17)))
    # Naeem et al. 2020: E[density] = 1 and E[coverage] ~ 1 - 2^-k for identical distributions
    assert abs(dc["density"] - 1) < 0.15
    assert abs(dc["coverage"] - (1 - 2**-5)) < 0.03
    collapsed = real[:1] + 0.01 * torch.randn(n, d, generator=gen(18))
    assert density_coverage(real, collapsed)["coverage"] < 0.01


# --------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_one_clear_error():
    a = torch.randn(50, 4)
    nan = a.clone()
    nan[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(a, nan)
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(nan, a)
    with pytest.raises(ValueError, match=r"2-D tensor \[N, d\]"):
        density_coverage(a[0], a)
    with pytest.raises(ValueError, match="same dimension"):
        precision_recall(a, torch.randn(50, 5))
    with pytest.raises(ValueError, match="integer >= 1"):
        precision_recall(a, a, k=0)
    with pytest.raises(ValueError, match="more than k samples"):
        density_coverage(a, a, k=50)
    with pytest.raises(ValueError, match="d \\+ 1 = 5 samples"):
        frechet_distance(a[:4], a)
    with pytest.raises(ValueError, match="2 n = 60"):
        real_vs_real_floor(a, 30)
    with pytest.raises(ValueError, match="shape"):
        frechet_distance_from_stats(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))
    with pytest.raises(ValueError, match="std"):
        mode_stats(a[:, :2], torch.zeros(3, 2), -1.0)
    with pytest.raises(ValueError, match="same dimension"):
        mode_stats(a, torch.zeros(3, 2), 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        frechet_distance(torch.ones(10, 2, dtype=torch.long), a[:, :2])
