"""Tests of diffbook.gan2d: the 2D GAN baseline of the chapter "GANs and diffusion models, measured"."""

import math

import pytest
import torch

from diffbook.nets import gan, gan2d
from diffbook.train.fit import fit_gan



def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def gaussian_data(mean, std):
    mean = torch.tensor(mean)

    def sample(n, g):
        return mean + std * torch.randn(n, 2, generator=g)

    return sample


def small_gan(seed=0, hidden=32, nz=4):
    torch.manual_seed(seed)
    return gan2d.Generator2D(nz=nz, hidden=hidden, depth=2), gan2d.Discriminator2D(hidden=hidden, depth=2)


# ------------------------------------------------------------------------------------------------ networks
def test_shapes():
    G, D = gan2d.Generator2D(nz=5), gan2d.Discriminator2D()
    assert G(torch.randn(7, 5)).shape == (7, 2)
    x = G.sample(11, gen())
    assert x.shape == (11, 2) and x.dtype == torch.float32 and not x.requires_grad
    assert D(x).shape == (11,)
    G3 = gan2d.Generator2D(nz=2, dim=3)
    assert G3.sample(4).shape == (4, 3) and gan2d.Discriminator2D(dim=3)(G3.sample(4)).shape == (4,)


def test_sample_is_seeded():
    G, _ = small_gan()
    assert torch.equal(G.sample(50, gen(3)), G.sample(50, gen(3)))
    assert not torch.equal(G.sample(50, gen(3)), G.sample(50, gen(4)))


def test_sample_keeps_the_networks_dtype():
    G, _ = small_gan()
    assert G.double().sample(3, gen()).dtype == torch.float64


# ------------------------------------------------------------------------------------------------ the loop
def test_losses_start_at_the_value_of_an_undecided_discriminator():
    """With a discriminator that outputs D = 1/2 everywhere, Eq. (gan-objective)'s cross-entropies are
    log 4 (discriminator: log 2 on real + log 2 on fake) and log 2 (generator). We zero D's output layer;
    the generator's loss, taken after one small Adam step of D, is still within 0.02 of log 2."""
    G, D = small_gan()
    with torch.no_grad():
        D.net[-1].weight.zero_()
        D.net[-1].bias.zero_()
    _, hist = fit_gan(G, D, gaussian_data([0.0, 0.0], 1.0), steps=1, batch=512, seed=0)
    assert hist["loss_d"][0] == pytest.approx(math.log(4), abs=1e-6)
    assert hist["loss_g"][0] == pytest.approx(math.log(2), abs=0.02)


def test_history_has_one_finite_entry_per_step():
    G, D = small_gan()
    G_out, hist = fit_gan(G, D, gaussian_data([1.0, 0.0], 0.5), steps=25, batch=64, seed=0)
    assert G_out is G and not G.training and not D.training
    assert set(hist) == {"loss_d", "loss_g"}
    assert len(hist["loss_d"]) == len(hist["loss_g"]) == 25
    assert all(math.isfinite(v) for v in hist["loss_d"] + hist["loss_g"])


def test_callback_sees_every_step_without_changing_the_run():
    seen = []

    def snapshot(step, G):
        seen.append((step, G.sample(5, gen(1))))

    G, D = small_gan()
    _, with_cb = fit_gan(G, D, gaussian_data([0.0, 1.0], 0.5), steps=6, batch=32, seed=2, callback=snapshot)
    G2, D2 = small_gan()
    _, without = fit_gan(G2, D2, gaussian_data([0.0, 1.0], 0.5), steps=6, batch=32, seed=2)
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert not torch.equal(seen[0][1], seen[-1][1])  # the generator changes between steps
    assert with_cb == without


def test_training_is_seeded_and_the_seed_matters():
    runs = []
    for data_seed in (0, 0, 1):
        G, D = small_gan(seed=0)
        _, hist = fit_gan(G, D, gaussian_data([2.0, -1.0], 0.3), steps=40, batch=64, seed=data_seed)
        runs.append((hist, torch.cat([p.detach().flatten() for p in G.parameters()])))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0]["loss_d"] != runs[2][0]["loss_d"] and not torch.equal(runs[0][1], runs[2][1])


def test_gan_moves_its_samples_to_a_single_gaussian():
    """Trained on N((3, -2), 0.5^2 I), the generator's mean moves from near the origin to near (3, -2),
    and its spread becomes of the order of the data's (neither collapsed to a point nor blown up)."""
    target = torch.tensor([3.0, -2.0])
    G, D = small_gan(seed=0, hidden=64)
    before = G.sample(2000, gen(9)).mean(0)
    G, hist = fit_gan(G, D, gaussian_data(target.tolist(), 0.5), steps=400, batch=128, lr=2e-3, seed=0)
    x = G.sample(2000, gen(9))
    err_before, err_after = (before - target).norm().item(), (x.mean(0) - target).norm().item()
    assert err_before > 3.0
    assert err_after < 0.5 and err_after < 0.15 * err_before
    assert ((x.std(0) > 0.1) & (x.std(0) < 1.5)).all(), x.std(0)


def test_fit_gan_uses_the_non_saturating_losses_of_diffbook_gan():
    """One step by hand (same seed, same draws) gives the losses fit_gan records."""
    G, D = small_gan(seed=1)
    G2, D2 = small_gan(seed=1)
    sample = gaussian_data([0.5, 0.5], 0.2)
    _, hist = fit_gan(G, D, sample, steps=1, batch=32, seed=5)
    g = gen(5)
    x_real = sample(32, g)
    fake = G2(torch.randn(32, G2.nz, generator=g))
    real_logit, fake_logit = D2(x_real), D2(fake)
    by_hand = -torch.nn.functional.logsigmoid(real_logit).mean() - torch.log1p(-torch.sigmoid(fake_logit)).mean()
    assert hist["loss_d"][0] == pytest.approx(by_hand.item(), rel=1e-5)
    assert hist["loss_d"][0] == pytest.approx(gan.discriminator_loss(D2, x_real, fake).item(), rel=1e-6)


def test_non_saturating_generator_loss_keeps_its_gradient_when_the_discriminator_wins():
    """Eq. (gan-nonsaturating): at a confident discriminator (logit -10 on fakes) the gradient of
    -log D with respect to the logit is about -1, where that of log(1 - D) (the minimax form) is about 0."""
    logit = torch.full((4,), -10.0, requires_grad=True)
    gan.generator_loss(lambda x: x, logit).backward()
    assert torch.allclose(logit.grad * 4, torch.full((4,), -1.0), atol=1e-3)
    logit2 = torch.full((4,), -10.0, requires_grad=True)
    torch.log1p(-torch.sigmoid(logit2)).mean().backward()
    assert logit2.grad.abs().max() < 1e-4


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs", [dict(nz=0), dict(hidden=-1), dict(depth=1.5), dict(dim=True)])
def test_bad_widths(kwargs):
    with pytest.raises(ValueError, match="integer >= 1"):
        gan2d.Generator2D(**kwargs)


def test_bad_network_inputs():
    G, D = gan2d.Generator2D(nz=4), gan2d.Discriminator2D()
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        G(torch.randn(3, 5))
    with pytest.raises(ValueError, match="floating-point"):
        G(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="points"):
        D(torch.randn(3, 3))
    with pytest.raises(ValueError, match="points"):
        D([[0.0, 1.0]])
    with pytest.raises(ValueError, match=">= 1"):
        G.sample(0)
    with pytest.raises(TypeError, match="torch.Generator"):
        G.sample(3, generator=0)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(steps=0), ValueError, ">= 1"),
    (dict(batch=2.5), TypeError, "integer"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(betas=(0.5,)), TypeError, "two numbers"),
    (dict(betas=(1.0, 0.9)), ValueError, r"\[0, 1\)"),
    (dict(seed=0.5), TypeError, "seed"),
])
def test_bad_training_arguments(kwargs, err, match):
    G, D = small_gan()
    with pytest.raises(err, match=match):
        fit_gan(G, D, gaussian_data([0.0, 0.0], 1.0), **kwargs)


def test_bad_models_and_data():
    G, D = small_gan()
    with pytest.raises(TypeError, match="nn.Module"):
        fit_gan(lambda z: z, D, gaussian_data([0.0, 0.0], 1.0))
    with pytest.raises(TypeError, match="callable"):
        fit_gan(G, D, torch.zeros(10, 2))
    with pytest.raises(TypeError, match="callback"):
        fit_gan(G, D, gaussian_data([0.0, 0.0], 1.0), callback=3)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        fit_gan(G, D, lambda n, g: torch.zeros(n, 3), steps=2)
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        fit_gan(G, D, lambda n, g: [[0.0, 0.0]] * n, steps=2)
    with pytest.raises(ValueError, match="NaN"):
        fit_gan(G, D, lambda n, g: torch.full((n, 2), float("nan")), steps=2)
